"""Stage 7: the mp4. Chunks become partial movie files; the final video joins them with the audio.

Each chunk's frames are piped into ffmpeg and encoded once, as a partial
movie file stored in the cache under the chunk's key (manim's idea, keyed by
inputs). Encoding runs in ffmpeg while Python draws: frame by frame for
backends that stream, chunk by chunk in a background thread for the others. The final
mp4 is the partial files joined without re-encoding (concat demuxer), the mix
as AAC, and the subtitles as a soft mov_text track, with +faststart. Burned
subtitles re-encode the joined video once through libass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkstudio.audio_io import ffmpeg_exe
from talkstudio.cache import remove_abandoned_temps, seal, temp_prefix

# superfast: x264 shares two cores with the drawing, and draft renders favour speed over bytes.
# A constant quantiser with keyframes coded like the other frames: every partial file starts with a
# keyframe, and with rate control (CRF) that keyframe was quantised differently from its neighbours,
# so the still background changed at every chunk start (a pulse every 81 frames). At one quantiser
# still areas are coded alike in every chunk. A fixed thread count keeps the bytes the same everywhere.
VIDEO_CODEC_ARGS = ["-c:v", "libx264", "-preset", "superfast", "-qp", "18", "-x264-params", "ipratio=1.0",
                    "-pix_fmt", "yuv420p", "-profile:v", "high", "-threads", "2"]
# the "fast" coder: 2.3x quicker than the default two-loop search, and speech at 160 kb/s needs no more
AUDIO_CODEC_ARGS = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "160k"]
BURN_ASS = "subtitles-burned.ass"
MAX_IN_FLIGHT = 2  # chunks being encoded while the next is drawn; bounds memory


class EncodeError(RuntimeError):
    pass


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                            capture_output=True, **kwargs)
    if result.returncode != 0:
        raise EncodeError(f"ffmpeg failed: {result.stderr.decode(errors='replace').strip()[-600:]}")
    return result


class _FfmpegFile:
    """One file an ffmpeg process writes under a temporary name of this process's own; it appears
    under its name (flushed, and sealed when it is a cache entry) only when ffmpeg succeeded."""

    def __init__(self, target: Path, arguments: list[str], sealed: bool = False, **popen):
        self.target, self.sealed = Path(target), sealed
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.target.with_name(f"{temp_prefix(self.target)}{threading.get_ident()}.part")
        self.process = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                                         *arguments, str(self.temp)], stderr=subprocess.PIPE, **popen)

    def _complete(self, stderr: bytes, what: str) -> None:
        """Move the finished file into place, or raise EncodeError with ffmpeg's own complaint."""
        if self.process.returncode != 0:
            raise EncodeError(f"ffmpeg failed encoding {what}: {stderr.decode(errors='replace')[-600:]}")
        _flush(self.temp)
        if self.sealed:
            seal(self.target, self.temp)
        os.replace(self.temp, self.target)
        remove_abandoned_temps(self.target)

    def abort(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.temp.unlink(missing_ok=True)


class FrameSink(_FfmpegFile):
    """One partial movie file being encoded: frames go in one at a time; the file appears when closed.

    Frames are converted to yuv420p here (OpenCV's conversion equals ffmpeg's default BT.601
    limited range), which halves what goes through the pipe and spares ffmpeg the work.
    """

    def __init__(self, target: Path, fps: float, size: tuple[int, int], sealed: bool = False):
        width, height = size
        super().__init__(target, ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
                                  "-r", _rate(fps), "-i", "-", *VIDEO_CODEC_ARGS, "-an", "-f", "mp4"],
                         sealed, stdin=subprocess.PIPE)
        _widen_pipe(self.process.stdin)

    def write(self, frame: np.ndarray) -> None:
        import cv2

        try:
            self.process.stdin.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).data)
        except BrokenPipeError:
            self.close()  # raises ffmpeg's own complaint

    def close(self) -> None:
        """Finish encoding and move the file into place; raise EncodeError if ffmpeg failed."""
        try:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            stderr = self.process.stderr.read()
            self.process.wait()
            self._complete(stderr, self.target.name)
        finally:
            self.abort()


def _flush(path: Path) -> None:
    """Make a file another process wrote durable before it is renamed into place."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _widen_pipe(pipe) -> None:
    """A 1 MiB pipe buffer (Linux; 64 KiB by default): the drawing can run a frame or two ahead of
    the encoder instead of waiting on every write while x264 is busy."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


class EncoderPool:
    """Finishes partial movie files in background threads while the next chunk is drawn.

    At most MAX_IN_FLIGHT files are pending at once, which bounds memory and processes.
    """

    def __init__(self, fps: float, size: tuple[int, int]):
        self.fps, self.size = fps, size
        self._slots = threading.Semaphore(MAX_IN_FLIGHT)
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def encode(self, frames: np.ndarray, target: Path, sealed: bool = False) -> None:
        """Encode a whole chunk of frames into `target`, in the background."""
        self._start(lambda: encode_frames(frames, target, self.fps, self.size, sealed))

    def finish(self, sink: FrameSink) -> None:
        """Close a sink whose frames are all written, in the background."""
        self._start(sink.close)

    def _start(self, work) -> None:
        self._slots.acquire()

        def run():
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread by wait()
                self._errors.append(error)
            finally:
                self._slots.release()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._errors:
            raise self._errors[0]


def encode_frames(frames, target: Path, fps: float, size: tuple[int, int], sealed: bool = False) -> None:
    """Encode RGB frames into an H.264 file that appears only when complete (sealed: as a cache entry)."""
    sink = FrameSink(target, fps, size, sealed)
    try:
        for frame in frames:
            sink.write(frame)
    except BaseException:
        sink.abort()
        raise
    sink.close()


def _rate(fps: float) -> str:
    from fractions import Fraction

    fraction = Fraction(str(fps)).limit_denominator(1001)
    return f"{fraction.numerator}/{fraction.denominator}"


class AudioEncoding(_FfmpegFile):
    """The mix encoded to AAC in a background ffmpeg while the picture is drawn, so that joining
    the video at the end only copies streams. The file appears (atomically) when `wait` returns."""

    def __init__(self, mix: Path, target: Path):
        super().__init__(target, ["-i", str(mix), *AUDIO_CODEC_ARGS, "-f", "mp4"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def wait(self) -> Path:
        try:
            _, stderr = self.process.communicate()
            self._complete(stderr, "the mix")
            return self.target
        finally:
            self.abort()


@dataclass(frozen=True)
class Burn:
    """Subtitles to draw into the picture: the ASS file, and the font folders libass searches
    (the chosen font's first)."""

    ass: Path
    font_folders: list[Path]


def assemble(partials: list[Path], mix: Path, subtitles_srt: Path | None, target: Path, language: str = "und",
             burn: Burn | None = None, work_dir: Path | None = None) -> None:
    """Join partial movie files, add the mix and a soft subtitle track (tagged with the ISO 639-2
    `language`); write `target` atomically.

    `mix` is a WAV (encoded to AAC here) or an AAC file from `AudioEncoding` (copied)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # names of this process's own: a second writer of the same target never shares them
    listing = target.with_name(f"{temp_prefix(target)}chunks.part")
    listing.write_text("".join(f"file '{_concat_escape(p)}'\n" for p in partials))
    temp = target.with_name(f"{temp_prefix(target)}{threading.get_ident()}.part")
    inputs = ["-f", "concat", "-safe", "0", "-i", str(listing.resolve()), "-i", str(Path(mix).resolve())]
    maps = ["-map", "0:v", "-map", "1:a"]
    codecs = ["-c:v", "copy", *(["-c:a", "copy"] if Path(mix).suffix == ".m4a" else AUDIO_CODEC_ARGS)]
    env, cwd = None, None
    if subtitles_srt is not None:
        inputs += ["-i", str(Path(subtitles_srt).resolve())]
        maps += ["-map", "2:s"]
        codecs += ["-c:s", "mov_text", "-metadata:s:s:0", f"language={language}"]
    if burn is not None:
        cwd = Path(work_dir or target.parent)
        env, drawn = _burning(burn, cwd)
        codecs = [*drawn, *codecs[2:]]
    try:
        _run([*inputs, *maps, *codecs, "-movflags", "+faststart", "-f", "mp4", str(temp.resolve())], env=env, cwd=cwd)
        _flush(temp)
        os.replace(temp, target)
        remove_abandoned_temps(target)
    finally:
        temp.unlink(missing_ok=True)
        listing.unlink(missing_ok=True)


def burn_in(picture: Path, burn: Burn, work_dir: Path) -> None:
    """Draw the subtitles into a video file that has only a picture, in place."""
    temp = picture.with_name(f"{temp_prefix(picture)}burned.part")
    env, drawn = _burning(burn, work_dir)
    try:
        _run(["-i", str(picture.resolve()), *drawn, "-f", "mp4", str(temp.resolve())], env=env, cwd=work_dir)
        os.replace(temp, picture)
    finally:
        temp.unlink(missing_ok=True)


def _burning(burn: Burn, work_dir: Path) -> tuple[dict, list[str]]:
    """ffmpeg's environment and video arguments to draw `burn` with libass, run from `work_dir`.

    The filter reads a copy under a plain name in the work folder: any path (quotes, colons, commas)
    then reaches libass without filter-graph escaping; a fontconfig file names the font folders."""
    shutil.copyfile(burn.ass, work_dir / BURN_ASS)
    env = {**os.environ, "FONTCONFIG_FILE": str(fontconfig_file(work_dir, burn.font_folders).resolve())}
    return env, [*VIDEO_CODEC_ARGS, "-vf", f"subtitles=filename={BURN_ASS}"]


def _concat_escape(path: Path) -> str:
    return str(Path(path).resolve()).replace("'", "'\\''")


def fontconfig_file(folder: Path, font_folders: list[Path]) -> Path:
    """A fontconfig file naming the font folders, so the static ffmpeg's libass finds the fonts anywhere."""
    from xml.sax.saxutils import escape

    conf = folder / ".talkstudio-fonts.conf"
    cache = folder / ".talkstudio-fontcache"
    conf.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
                    + "".join(f"  <dir>{escape(str(d))}</dir>\n" for d in font_folders)
                    + f"  <cachedir>{escape(str(cache))}</cachedir>\n</fontconfig>\n")
    return conf


def probe(path: Path) -> dict:
    """Streams and duration of a media file, read from ffmpeg's own report (no ffprobe needed)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True)
    report = result.stderr.decode(errors="replace")
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", report)
    streams = re.findall(r"Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: (\w+): (\w+)", report)
    seconds = None
    if duration:
        h, m, s = duration.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    return {"duration": seconds, "streams": [(kind.lower(), codec) for kind, codec in streams], "report": report}


def count_frames(path: Path) -> int:
    """Frames in the first video stream, by decoding it."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
                             "-f", "null", "-"], capture_output=True)
    found = re.findall(r"frame=\s*(\d+)", result.stderr.decode(errors="replace"))
    return int(found[-1]) if found else 0


def read_frames(path: Path, size: tuple[int, int]):
    """Yield the frames of a video as RGB arrays, one at a time."""
    width, height = size
    process = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                                "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    frame_bytes = width * height * 3
    try:
        while True:
            data = process.stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
    finally:
        process.stdout.close()
        process.wait()
