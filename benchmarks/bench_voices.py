"""Real-time factor of every voice engine that can speak on this machine, on the same lines.

Speaks the first 20 lines of the example screenplays with each registered engine's default
voice (espeak, piper, coqui, ... whichever load and pass their checks), uncached, and prints
seconds of audio per second of synthesis. The first utterance, which loads the model, is
timed apart. Run: python benchmarks/bench_voices.py
"""

import time
from pathlib import Path

from talkstudio.checks import load_screenplay
from talkstudio.screenplay import Voice
from talkstudio.voices import engine_names, get_engine

ROOT = Path(__file__).resolve().parent.parent
LINES = 20


def example_lines() -> list[str]:
    lines = []
    for script in sorted((ROOT / "scripts_examples").glob("*.yaml")):
        lines += [line.text for scene in load_screenplay(script).scenes for line in scene.lines if line.text]
    return lines[:LINES]


def usable_engine(name: str):
    """The engine and its default voice, or None and why it cannot speak here."""
    try:
        engine = get_engine(name)
        voice = Voice(engine=name)
        problems = engine.check(voice)
    except ImportError as error:
        return None, None, f"not loadable: {error}"
    return (engine, voice, None) if not problems else (None, None, "; ".join(problems))


def main() -> None:
    lines = example_lines()
    print(f"{len(lines)} lines, {sum(len(t.split()) for t in lines)} words")
    for name in engine_names():
        engine, voice, reason = usable_engine(name)
        if engine is None:
            print(f"{name}: skipped ({reason})")
            continue
        started = time.perf_counter()
        engine.synthesize("warm up", voice)
        load = time.perf_counter() - started
        audio = 0.0
        started = time.perf_counter()
        for text in lines:
            audio += engine.synthesize(text, voice).duration
        work = time.perf_counter() - started
        print(f"{name} ({engine.version()}): {audio:.1f} s of speech in {work:.2f} s "
              f"-> {audio / work:.1f}x real time (first call, loading: {load:.2f} s)")


if __name__ == "__main__":
    main()
