"""Peak memory of `talkstudio audio` with one long recorded line: a 20-minute line against a 2-minute one
(target: within 1.2x; a recorded line is decoded block by block into the cache and read where mixed).
Run: python benchmarks/bench_recorded_line.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEAK_MEMORY = ("import sys, cli; rc = cli.main(sys.argv[1:]);"
               "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]);"
               "sys.exit(rc)")


def recorded_line(folder: Path, minutes: int) -> Path:
    from talkstudio.audio_io import ffmpeg_exe

    audio = folder / f"talk-{minutes}.flac"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=f=180:d={minutes * 60},volume=0.3",
                    "-ar", "22050", "-c:a", "flac", str(audio)], check=True)
    script = folder / f"talk-{minutes}.yaml"
    script.write_text(f"cast: {{ana: {{voice: ava}}}}\nscenes:\n  - lines:\n      - ana: A long talk.\n"
                      f"        audio: {audio.name}\n")
    return script


def peak(script: Path, folder: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, "audio", str(script), "-o", str(folder / script.stem),
                             "--cache", str(folder / f"cache-{script.stem}")], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return time.perf_counter() - started, int(result.stdout.split()[-1]) // 1024


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        short_s, short = peak(recorded_line(tmp, 2), tmp)
        long_s, long = peak(recorded_line(tmp, 20), tmp)
        print(f"2-minute recorded line: {short} MiB ({short_s:.1f} s); 20-minute: {long} MiB ({long_s:.1f} s): "
              f"{long / short:.2f}x the peak")


if __name__ == "__main__":
    main()
