"""The orchestrator: wires the stages together and reports progress. No stage logic lives here.

    screenplay.yaml -> Screenplay -> clips (speech) -> Timeline -> tracks/, mix.wav, cues.json
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from talkstudio import manifest
from talkstudio.cache import Cache
from talkstudio.errors import InputError, Problem
from talkstudio.progress import Reporter


@dataclass
class AudioResult:
    out_dir: Path
    cues: dict  # the cues.json document
    up_to_date: bool = False  # nothing was done: the outputs already matched their inputs
    synthesized: int = 0
    cached: int = 0
    recorded: int = 0
    speech_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def render_audio(script: Path, out_dir: Path, cache: Cache, reporter: Reporter) -> AudioResult:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(Problem(f"output path {out_dir} exists and is not a folder",
                                 hint="choose another -o, or remove the file"))
    # 0. nothing to do when the outputs were made from exactly these inputs
    if cache.enabled and manifest.up_to_date(out_dir, "audio", script):
        reporter.info(f"{out_dir}: up to date (inputs unchanged); --no-cache redoes it")
        return AudioResult(out_dir, json.loads((out_dir / "cues.json").read_text()), up_to_date=True)

    from talkstudio.screenplay import load_screenplay
    from talkstudio.speech import speak_all, timeline_rate
    from talkstudio.timeline import build_timeline, cues_document, write_timeline

    # 1. parse and check everything before any work starts
    screenplay = load_screenplay(script)

    # 2. speak every line (cached by content)
    rate = timeline_rate(screenplay)
    started = time.perf_counter()
    clips, stats = speak_all(screenplay, cache, rate, reporter)
    speech_seconds = time.perf_counter() - started

    # 3. lay out the concat-pad timeline and normalise loudness
    timeline = build_timeline(screenplay, clips, rate)
    for warning in timeline.warnings:
        reporter.warn(warning)

    # 4. write tracks, mix and cues, then the manifest that makes a re-run free
    files = write_timeline(timeline, screenplay, out_dir)
    engines = [c.voice.engine for c in screenplay.cast.values()]
    manifest.record(out_dir, "audio", script, screenplay.input_files(), engines, list(files.values()))
    return AudioResult(out_dir, cues_document(timeline, screenplay), False, stats.synthesized, stats.cached,
                       stats.recorded, speech_seconds, timeline.warnings)
