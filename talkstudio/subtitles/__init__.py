"""Subtitles from the cues: SRT, WebVTT and ASS beside the video, cut and timed by the timed-text
rules (rules.py), segmented in segment.py, written by pysubs2 in formats.py; fonts for burning
them in fonts.py."""

from __future__ import annotations

from pathlib import Path

from talkstudio.cache import atomic_write
from talkstudio.outputs import SUBTITLE_KINDS
from talkstudio.subtitles.formats import Layout, timestamp, to_ass, to_srt, to_vtt
from talkstudio.subtitles.rules import Rules, rules_for, track_language
from talkstudio.subtitles.segment import Event, Scene, events_from_cues

__all__ = ["Layout", "Rules", "events_of", "rules_for", "timestamp", "track_language", "write_subtitles"]
WRITERS = {"srt": to_srt, "vtt": to_vtt, "ass": to_ass}


def events_of(cues_doc: dict, rules: Rules) -> list[Event]:
    """The subtitle events of a cues.json document."""
    names = {s["id"]: s["name"] for s in cues_doc["speakers"]}
    scenes = [Scene(s["id"], s["start"], s["end"]) for s in cues_doc.get("scenes", [])]
    return events_from_cues(cues_doc["cues"], names, scenes, rules)


def write_subtitles(cues_doc: dict, layout: Layout, stem: Path) -> dict[str, Path]:
    """stem.srt, stem.vtt and stem.ass from a cues.json document."""
    events = events_of(cues_doc, layout.rules)
    written = {}
    for kind in SUBTITLE_KINDS:
        path = stem.with_suffix(f".{kind}")
        with atomic_write(path, "w") as f:
            f.write(WRITERS[kind](events, layout))
        written[kind] = path
    return written
