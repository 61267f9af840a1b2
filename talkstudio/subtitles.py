"""Subtitles from the cues: SRT and WebVTT sidecars, and ASS with one style and colour per speaker.

A cue becomes one or more events of at most two lines of 42 characters and
at most 7 seconds. With word timings, events break between words and last at
least as long as 20 characters per second needs (when the gap before the next
event allows); without them, a long line is cut into pieces timed by length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkstudio.cache import atomic_write

MAX_LINE = 42
MAX_LINES = 2
MAX_SECONDS = 7.0
MAX_CPS = 20.0
MIN_GAP = 0.04  # between consecutive events of one speaker
COLOURS = ["#ffffff", "#ffe066", "#7fdbff", "#ff9f80", "#b8f28c", "#f5a3ff", "#ffc04d", "#9fb8ff"]


_SPACE = re.compile(r"\s")
_CLOSING = "\"'”’)]»"


@dataclass
class Event:
    start: float
    end: float
    speaker: str
    name: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def wrap(text: str, width: int = MAX_LINE) -> list[str]:
    """Split into lines of at most `width` characters, balancing two lines."""
    words = text.split()
    if len(text) <= width:
        return [" ".join(words)]
    best = None
    for i in range(1, len(words)):
        first, second = " ".join(words[:i]), " ".join(words[i:])
        score = max(len(first), len(second))
        if best is None or score < best[0]:
            best = (score, [first, second])
    if best and best[0] <= width:
        return best[1]
    lines, current = [], ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if len(candidate) > width and current:
            lines.append(current)
            current = word
        else:
            current = candidate
    return lines + ([current] if current else [])


def events_from_cues(cues: list[dict], names: dict[str, str]) -> list[Event]:
    events: list[Event] = []
    for cue in cues:
        if not cue["text"].strip():
            continue
        pieces = _pieces_by_words(cue) if cue["words"] else _pieces_by_length(cue)
        for start, end, text in pieces:
            events.append(Event(start, end, cue["speaker"], names.get(cue["speaker"], cue["speaker"]), wrap(text)))
    _extend_for_reading(events)
    return sorted(events, key=lambda e: (e.start, e.speaker))


def _pieces_by_words(cue: dict) -> list[tuple[float, float, str]]:
    """Cut a cue between words into pieces that fit two lines and seven seconds, at punctuation when possible."""
    text, words = cue["text"], cue["words"]
    # the written text keeps its punctuation: find each word in it, in order
    positions, cursor = [], 0
    for word in words:
        found = text.find(word["text"], cursor)
        positions.append(found if found >= 0 else cursor)
        cursor = found + len(word["text"]) if found >= 0 else cursor
    # a word's piece of text runs to the next space, so it keeps its punctuation and closing quotes
    bounds = [m.start() if (m := _SPACE.search(text, p + len(w["text"]))) else len(text)
              for p, w in zip(positions, words)]

    def fits(first: int, last: int) -> bool:
        piece = text[positions[first]:bounds[last]].strip()
        return len(wrap(piece)) <= MAX_LINES and words[last]["end"] - words[first]["start"] <= MAX_SECONDS

    pieces, first = [], 0
    while first < len(words):
        last = first
        while last + 1 < len(words) and fits(first, last + 1):
            last += 1
        if last + 1 < len(words):
            # prefer to end on punctuation, if that keeps the piece at least half as long
            for j in range(last, first, -1):
                ending = text[positions[j]:bounds[j]].rstrip(_CLOSING)[-1:]
                if ending and ending in ".,;:!?" and (j - first + 1) * 2 >= last - first + 1:
                    last = j
                    break
        start = cue["start"] if first == 0 else words[first]["start"]
        end = cue["end"] if last == len(words) - 1 else words[last]["end"]
        piece_start = 0 if first == 0 else bounds[first - 1]
        pieces.append((start, end, text[piece_start:bounds[last]].strip()))
        first = last + 1
    return pieces


def _pieces_by_length(cue: dict) -> list[tuple[float, float, str]]:
    words = cue["text"].split()
    pieces, current = [], []
    for word in words:
        if current and len(wrap(" ".join(current + [word]))) > MAX_LINES:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    pieces.append(" ".join(current))
    duration = cue["end"] - cue["start"]
    total = sum(len(p) for p in pieces)
    timed, at = [], cue["start"]
    for piece in pieces:
        share = duration * len(piece) / total
        # never longer than MAX_SECONDS on screen: a slow recording repeats the piece in parts
        count = max(1, int(np.ceil(share / MAX_SECONDS)))
        timed.extend((at + k * share / count, at + (k + 1) * share / count, piece) for k in range(count))
        at += share
    return timed


def _extend_for_reading(events: list[Event]) -> None:
    """Keep events on screen long enough to read at 20 characters per second, up to the speaker's next one."""
    by_speaker: dict[str, list[Event]] = {}
    for event in sorted(events, key=lambda e: e.start):
        by_speaker.setdefault(event.speaker, []).append(event)
    for own in by_speaker.values():
        for event, following in zip(own, own[1:] + [None]):
            needed = event.start + len(event.text.replace("\n", " ")) / MAX_CPS
            limit = following.start - MIN_GAP if following else needed
            event.end = max(event.end, min(needed, limit, event.start + MAX_SECONDS))


def timestamp(seconds: float, separator: str = ".") -> str:
    """HH:MM:SS.mmm (SRT wants a comma before the milliseconds)."""
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def to_srt(events: list[Event], colours: dict[str, str]) -> str:
    blocks = []
    for i, e in enumerate(events, 1):
        text = e.text if len(colours) < 2 else f'<font color="{colours[e.speaker]}">{e.text}</font>'
        blocks.append(f"{i}\n{timestamp(e.start, ',')} --> {timestamp(e.end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(events: list[Event]) -> str:
    blocks = ["WEBVTT\n"]
    for e in events:
        text = e.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{timestamp(e.start, '.')} --> {timestamp(e.end, '.')}\n<v {e.name}>{text}\n")
    return "\n".join(blocks)


def _ass_colour(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"&H00{b:02X}{g:02X}{r:02X}"


def _ass_time(seconds: float) -> str:
    cs = int(round(seconds * 100))
    h, cs = divmod(cs, 360_000)
    m, cs = divmod(cs, 6000)
    s, cs = divmod(cs, 100)
    return f"{h}:{m:02d}:{s:02d}.{cs:02d}"


def to_ass(events: list[Event], speakers: list[tuple[str, str]], colours: dict[str, str], size: tuple[int, int],
           font: str = "DejaVu Sans") -> str:
    width, height = size
    font_size = round(height * 0.055)
    margin = round(height * 0.05)
    head = [
        "[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}",
        "WrapStyle: 2", "ScaledBorderAndShadow: yes", "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
        "MarginL, MarginR, MarginV, Encoding",
    ]
    for speaker, _ in speakers:
        head.append(f"Style: {speaker},{font},{font_size},{_ass_colour(colours[speaker])},&H000000FF,&H00101010,"
                    f"&H80000000,0,0,0,0,100,100,0,0,1,{max(1, font_size // 12)},1,2,{margin},{margin},{margin},1")
    head += ["", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"]
    for e in events:
        text = e.text.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}").replace("\n", "\\N")
        head.append(f"Dialogue: 0,{_ass_time(e.start)},{_ass_time(e.end)},{e.speaker},{_ass_field(e.name)},0,0,0,,{text}")
    return "\n".join(head) + "\n"


def write_subtitles(cues_doc: dict, size: tuple[int, int], stem: Path) -> dict[str, Path]:
    """stem.srt, stem.vtt and stem.ass from a cues.json document."""
    speakers = [(s["id"], s["name"]) for s in cues_doc["speakers"]]
    colours = {sid: COLOURS[i % len(COLOURS)] for i, (sid, _) in enumerate(speakers)}
    events = events_from_cues(cues_doc["cues"], dict(speakers))
    written = {}
    for suffix, text in ((".srt", to_srt(events, colours)), (".vtt", to_vtt(events)),
                         (".ass", to_ass(events, speakers, colours, size))):
        path = stem.with_suffix(suffix)
        with atomic_write(path, "w") as f:
            f.write(text)
        written[suffix[1:]] = path
    return written


def _ass_field(text: str) -> str:
    """A value for a comma-separated ASS field: a comma would end the field early (libass then reads the
    rest of a name as the subtitle's text), so it becomes a low quotation mark that looks like one."""
    return text.replace(",", "\u201a").replace("\n", " ")
