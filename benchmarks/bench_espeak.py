"""espeak-ng synthesis speed against real time, on this machine.

Speaks every line of the example screenplays with their voices, uncached, and
prints seconds of audio per second of work. Target: 50x real time or more.
Run: python benchmarks/bench_espeak.py
"""

import time
from pathlib import Path

from talkstudio.checks import load_screenplay
from talkstudio.voices import get_engine

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    lines = []
    for script in sorted((ROOT / "scripts_examples").glob("*.yaml")):
        s = load_screenplay(script)
        lines += [(line.text, s.cast[line.speaker].voice) for scene in s.scenes for line in scene.lines if line.text]
    engine = get_engine("espeak")
    engine.synthesize("warm up", lines[0][1])
    audio = 0.0
    started = time.perf_counter()
    for text, voice in lines * 3:
        audio += engine.synthesize(text, voice).duration
    work = time.perf_counter() - started
    print(f"espeak: {len(lines) * 3} lines, {audio:.1f} s of speech in {work:.2f} s "
          f"-> {audio / work:.0f}x real time (target 50x)")


if __name__ == "__main__":
    main()
