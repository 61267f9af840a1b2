"""Audio in and out: float32 mono everywhere inside, one real resampler, ffmpeg for decoding."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from functools import lru_cache
from math import gcd
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from talkstudio.cache import atomic_write
from talkstudio.errors import InputError, Problem


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The system ffmpeg when there is one, else the binary shipped by imageio-ffmpeg."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def read_audio(path: Path, rate: int) -> np.ndarray:
    """Decode any audio file ffmpeg reads to mono float32 at `rate` (channels averaged)."""
    import ffmpeg

    stream = ffmpeg.input(str(path)).output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=rate)
    try:
        out, _ = stream.global_args("-nostdin", "-loglevel", "error").run(
            cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as e:
        detail = e.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        raise InputError(Problem(f"cannot decode audio: {detail[0]}", file=path,
                                 hint="convert it to WAV or another format ffmpeg reads")) from None
    samples = np.frombuffer(out, dtype=np.float32).copy()
    if not len(samples):
        raise InputError(Problem("audio file holds no samples", file=path, hint="record or export it again"))
    return samples


def audio_rate(path: Path) -> int:
    """The sample rate of the first audio stream of any file ffmpeg reads (from its stream listing)."""
    import re
    import subprocess

    try:
        listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                                 text=True, errors="replace", timeout=STALLED_S).stderr
    except subprocess.TimeoutExpired:
        raise InputError(Problem(f"could not be read within {STALLED_S:g} s", file=path,
                                 hint="copy the recording to a local disk and try again")) from None
    found = re.search(r"Stream #\S+.*?: Audio: .*?(\d+) Hz", listing)
    if found is None:
        detail = listing.strip().splitlines()[-1:] or ["no audio stream"]
        raise InputError(Problem(f"no audio stream ffmpeg can read ({detail[0]})", file=path,
                                 hint="give a recording: WAV, FLAC, MP3, Ogg, M4A... (any format ffmpeg reads)"))
    return int(found[1])


def decode_blocks(path: Path, rate: int, block: int) -> Iterator[np.ndarray]:
    """Decode any audio file ffmpeg reads to mono float32 at `rate`, `block` samples at a time (the last may
    be shorter), through a pipe: memory holds one block however long the recording is."""
    import subprocess
    import tempfile

    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate),
               "-f", "f32le", "-acodec", "pcm_f32le", "pipe:"]
    # errors go to a file: a damaged recording can log more than a pipe holds while we read the samples
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
    watchdog = _Watchdog(process, STALLED_S)
    try:
        while chunk := process.stdout.read(4 * block):
            watchdog.poke()
            yield np.frombuffer(chunk, dtype=np.float32)
        if process.wait() != 0:
            if watchdog.fired:
                raise InputError(Problem(f"gave no audio for {STALLED_S:g} s: is it a file that is still being "
                                         "written, or on a drive that stopped answering?", file=path,
                                         hint="copy the recording to a local disk and try again"))
            log.seek(0)
            errors = log.read().decode(errors="replace").strip()
            raise InputError(Problem(f"cannot decode audio: {(errors.splitlines() or ['unknown error'])[-1]}",
                                     file=path, hint="convert it to WAV or another format ffmpeg reads"))
    finally:
        watchdog.stop()
        if process.poll() is None:  # the consumer stopped early: ffmpeg must not wait on a full pipe
            process.kill()
        process.wait()
        process.stdout.close()
        log.close()


STALLED_S = 60.0  # a decoder that delivers nothing for this long is stopped


class _Watchdog:
    """Kills a process that makes no progress for `seconds` (each `poke` is progress)."""

    def __init__(self, process, seconds: float):
        self.process, self.seconds, self.fired = process, seconds, False
        self.timer = None
        self.poke()

    def poke(self) -> None:
        import threading

        if self.timer is not None:
            self.timer.cancel()
        self.timer = threading.Timer(self.seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        if self.process.poll() is None:
            self.process.kill()

    def stop(self) -> None:
        self.timer.cancel()


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (Kaiser-windowed FIR); returns the input when the rates match."""
    if source_rate == target_rate:
        return samples
    from scipy.signal import resample_poly

    common = gcd(source_rate, target_rate)
    return resample_poly(samples, target_rate // common, source_rate // common).astype(np.float32)


def median_f0(samples: np.ndarray, rate: int, low_hz: float = 60, high_hz: float = 400) -> float:
    """Median fundamental frequency of the voiced 40 ms frames (autocorrelation); NaN if none."""
    frame, shortest, longest = int(0.04 * rate), int(rate / high_hz), int(rate / low_hz)
    estimates = []
    for start in range(0, len(samples) - frame, frame // 2):
        segment = samples[start:start + frame] - samples[start:start + frame].mean()
        if np.sqrt(np.mean(segment ** 2)) < 0.02:
            continue
        correlation = np.correlate(segment, segment, "full")[frame - 1:]
        lag = shortest + int(np.argmax(correlation[shortest:longest]))
        if correlation[lag] > 0.5 * correlation[0]:
            estimates.append(rate / lag)
    return float(np.median(estimates)) if estimates else float("nan")


@contextmanager
def wav_writer(path: Path, rate: int, total: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield `write(block)` for a mono 32-bit float WAV of `total` samples, written block by block
    (exact zeros and levels survive the round trip); the file appears only when complete."""
    import struct

    data_bytes = 4 * total
    header = (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
              + b"data" + struct.pack("<I", data_bytes))
    written = [0]
    with atomic_write(Path(path)) as f:
        f.write(header)

        def write(block: np.ndarray) -> None:
            f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
            written[0] += len(block)

        yield write
        if written[0] != total:
            raise ValueError(f"{path}: wrote {written[0]} samples, announced {total}")
