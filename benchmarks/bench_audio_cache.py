"""First run of `talkstudio audio` against a second, cached run, per example.

Each example runs as a user would run it (a fresh process): cold (empty cache,
new output folder), then warm into the same folder (up to date), then warm into
a new folder (speech from the cache, timeline rebuilt). Prints wall times and
ratios, and the speech stage's own time as the command reports it.
Run: python benchmarks/bench_audio_cache.py
"""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                            check=True)
    return time.perf_counter() - started, result.stdout


def speech_seconds(stdout: str) -> float:
    match = re.search(r"recorded in ([\d.]+) s", stdout)
    return float(match[1]) if match else float("nan")


def main() -> None:
    for script in sorted((ROOT / "scripts_examples").glob("*.yaml")):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            cache, out = tmp / "cache", tmp / "out"
            cold, cold_out = run("audio", script, "-o", out, "--cache", cache)
            same, _ = run("audio", script, "-o", out, "--cache", cache)
            other, other_out = run("audio", script, "-o", tmp / "other", "--cache", cache)
            cold_speech, warm_speech = speech_seconds(cold_out), speech_seconds(other_out)
            print(f"{script.name:20s} cold {cold:5.2f} s | same folder {same:5.2f} s ({cold / same:4.1f}x) | "
                  f"new folder {other:5.2f} s ({cold / other:4.1f}x) | speech stage {cold_speech:.3f} -> "
                  f"{warm_speech:.3f} s ({cold_speech / warm_speech:.0f}x)")


if __name__ == "__main__":
    main()
