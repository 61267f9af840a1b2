"""`talkstudio plan`: the timeline and chunk plan of a screenplay, without rendering a picture."""

from __future__ import annotations

from pathlib import Path

from talkstudio.cache import Cache
from talkstudio.checks import load_screenplay
from talkstudio.errors import InputError, Problem
from talkstudio.generators import GENERATORS, frame_rate
from talkstudio.plan import scene_plans
from talkstudio.progress import Reporter
from talkstudio.speech import speak_all, timeline_rate
from talkstudio.stage import on_stage
from talkstudio.timeline import build_timeline


def plan_report(script: Path, cache: Cache, backend: str | None, frame_num: int | None):
    screenplay = load_screenplay(script)
    if backend:
        if backend not in GENERATORS:
            raise InputError(Problem(f"unknown backend '{backend}'", hint=f"backends: {', '.join(GENERATORS)}"))
        screenplay.video.backend = backend
    info = GENERATORS[screenplay.video.backend]
    rate = timeline_rate(screenplay)
    clips, _ = speak_all(screenplay, cache, rate, Reporter(quiet=True))
    timeline = build_timeline(screenplay, clips, rate)
    plans = scene_plans(screenplay, timeline, info, frame_num)
    scenes = [
        {"scene": scene.id, "start_frame": span.start_frame, "end_frame": span.end_frame,
         "seconds": span.end - span.start, "on_stage": on_stage(scene, screenplay),
         "windows": [(c.start, c.frame_num) for c in chunks]}
        for scene, span, chunks in zip(screenplay.scenes, timeline.scenes, plans)
    ]
    totals = {"title": screenplay.title, "backend": info.name, "fps": frame_rate(screenplay.video),
              "frame_num": frame_num or info.frame_num, "motion_frames": info.motion_frames if info.chained else 0,
              "frames": timeline.frames, "chunks": sum(len(p) for p in plans)}
    return scenes, totals
