"""Memory and time of `talkstudio podcast` on a 6-minute and a 60-minute two-track episode.

The episodes are made here: espeak lines taking turns (one in five talks over the end of the
previous one), each also on the other track 20 dB down (bleed), with a little noise; one host
recorded at 44.1 kHz (WAV), the other at 48 kHz (FLAC). Tracks are written block by block
through ffmpeg, so the generator itself holds no whole track either.

Prints, each measured in this run, for each length: wall seconds of the whole command (speech
detection, gated tracks, mix, puppet chunks at 160x96, assembly), the process's peak memory
(VmHWM), and the ratio of the peaks (target: flat, within 1.2x).
Run: python benchmarks/bench_podcast.py [--minutes 6 60] [--size 160x96]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "So tell me what happened after the storm.",
    "Well, the harbour was full of driftwood, and nobody could get a boat out until noon.",
    "That sounds like a long morning.",
    "It was. But the bakery stayed open, so we all sat there and waited with coffee.",
    "Of course they did. Nothing closes that bakery.",
    "Not even the flood of ninety two, if you believe the owner.",
]
HOSTS = {"ana": ("ava", 44100, "wav"), "ben": ("dan", 48000, "flac")}
BLEED = 0.1  # -20 dB
BLOCK_S = 10


def spoken(rate_of: dict) -> dict:
    """Every sentence in every host's voice, at every track's rate: {(host, sentence, track): samples}."""
    from talkstudio.audio_io import resample
    from talkstudio.screenplay import Voice
    from talkstudio.voices import get_engine

    found = {}
    for host, (voice, _, _) in HOSTS.items():
        for n, text in enumerate(SENTENCES):
            speech = get_engine("espeak").synthesize(text, Voice(id=voice))
            for track, rate in rate_of.items():
                found[host, n, track] = resample(speech.samples, speech.rate, rate)
    return found


def schedule(minutes: float, clips: dict) -> list[tuple[str, int, float]]:
    """(host, sentence, start s): turns with gaps, every fifth one starting before the previous ends."""
    turns, at, n = [], 1.0, 0
    while True:
        host = "ana" if n % 2 == 0 else "ben"
        length = len(clips[host, n % len(SENTENCES), host]) / HOSTS[host][1]
        if at + length > minutes * 60 - 1:
            return turns
        turns.append((host, n % len(SENTENCES), at))
        at += length + (-0.4 if n % 5 == 4 else 0.5)
        n += 1


def write_track(track: str, turns, clips, minutes: float, path: Path) -> None:
    from talkstudio.audio_io import ffmpeg_exe

    rate = HOSTS[track][1]
    total = int(minutes * 60 * rate)
    noise = np.random.default_rng(len(track))
    encoder = subprocess.Popen([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", "1",
                                "-i", "pipe:", str(path)], stdin=subprocess.PIPE)
    for lo in range(0, total, BLOCK_S * rate):
        hi = min(lo + BLOCK_S * rate, total)
        block = noise.normal(0, 3e-4, hi - lo).astype(np.float32)
        for host, n, start in turns:
            samples = clips[host, n, track]
            first = int(start * rate) + (0 if host == track else int(0.003 * rate))
            a, b = max(first, lo), min(first + len(samples), hi)
            if b > a:
                block[a - lo:b - lo] += samples[a - first:b - first] * (1.0 if host == track else BLEED)
        encoder.stdin.write(block.astype("<f4").tobytes())
    encoder.stdin.close()
    if encoder.wait():
        raise SystemExit(f"ffmpeg failed writing {path}")


PEAK_MEMORY = ("import sys, cli; rc = cli.main(sys.argv[1:]);"
               "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]);"
               "sys.exit(rc)")


def render(folder: Path, size: str) -> tuple[float, int, str]:
    cast = folder / "cast.yaml"
    cast.write_text(f"title: bench\nvideo: {{size: {size}}}\ncast:\n  ana: {{name: Ana, image: {ROOT / 'casts/maya.png'}}}\n"
                    f"  ben: {{name: Ben, image: {ROOT / 'casts/theo.png'}}}\n")
    tracks = [arg for host, (_, _, suffix) in HOSTS.items() for arg in ("--track", f"{host}={folder / f'{host}.{suffix}'}")]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, "podcast", "--cast", str(cast), *tracks,
                             "-o", str(folder / "episode.mp4"), "--cache", str(folder / "cache")],
                            cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(result.stderr)
    lines = result.stdout.strip().splitlines()
    return seconds, int(lines[-1]) // 1024, "\n".join(lines[:-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[6, 60])
    parser.add_argument("--size", default="160x96")
    args = parser.parse_args()
    clips = spoken({host: rate for host, (_, rate, _) in HOSTS.items()})
    peaks = []
    for minutes in args.minutes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            turns = schedule(minutes, clips)
            made = time.perf_counter()
            for host, (_, _, suffix) in HOSTS.items():
                write_track(host, turns, clips, minutes, folder / f"{host}.{suffix}")
            print(f"{minutes:g} minutes: {len(turns)} lines, tracks written in {time.perf_counter() - made:.0f} s")
            seconds, peak, report = render(folder, args.size)
            print("   " + report.replace("\n", "\n   "))
            print(f"   podcast command: {seconds:.0f} s ({minutes * 60 / seconds:.1f}x real time), peak memory {peak} MiB")
            peaks.append(peak)
    if len(peaks) > 1:
        print(f"peak memory, longest vs shortest: {peaks[-1] / peaks[0]:.2f}x")


if __name__ == "__main__":
    main()
