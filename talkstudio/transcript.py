"""Transcripts of recorded episodes: SRT, WebVTT, ASS (read by pysubs2) or plain `Name: text` lines,
laid over detected speech.

Timed entries (SRT, VTT, ASS) keep their times, each edge moved to the nearest edge of its speaker's
detected speech when one lies within SNAP_S (captioning tools are often a few hundred ms off). An
entry belongs to the speaker its `<v Name>` tag or `Name:` prefix names, else to the speaker whose
detected speech overlaps it most. Plain lines have no times: each speaker's lines are laid over that
speaker's regions in order, grouped so that the time a line gets best matches its length. The text
is only ever the transcript's: without a transcript there is no text at all.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field
from math import ceil
from pathlib import Path

import numpy as np

from talkstudio.errors import InputError, Problem
from talkstudio.subtitles import timestamp

SNAP_S = 0.3
MOST_REGIONS_PER_LINE = 16  # a plain line spans at most this many detected regions (beyond: proportionally more)
HINT = "SRT, WebVTT or ASS with times, or plain lines 'ana: what Ana says' (a line without 'Name:' continues the last)"

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_ARROW = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+([^>]+)>")
_TIMESTAMP = re.compile(r"<(?:\d+:)?\d{2}:\d{2}\.\d{3}>")
_PREFIX = re.compile(r"^\s*(?:-\s*)?([^:\s][^:]{0,39}?)\s*:\s+(\S.*)$")

Regions = dict[str, list[tuple[float, float]]]  # speaker -> detected speech, seconds, in order


@dataclass
class Entry:
    text: str
    speaker: str | None  # named by the transcript
    start: float | None  # seconds; None in plain transcripts
    end: float | None
    line: int  # 1-based, in the transcript file


@dataclass
class Alignment:
    region_texts: dict[str, list[str]]  # per speaker, the text heard in each of their regions
    subtitles: list[dict]  # cues for subtitles.write_subtitles: speaker, text, start, end, words
    warnings: list[str] = field(default_factory=list)


def read_transcript(path: Path, speakers: dict[str, str]) -> list[Entry]:
    """Entries of an SRT, VTT, ASS or plain transcript; `speakers` maps each speaker id to its display name."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(Problem("transcript not found", file=path, hint="check the --transcript path")) from None
    except UnicodeDecodeError:
        raise InputError(Problem("the transcript is not UTF-8 text", file=path, hint="save it as UTF-8")) from None
    lines = text.splitlines()
    names = {key.lower(): speaker for speaker, name in speakers.items() for key in (speaker, name)}
    timed = any(_ARROW.match(line) for line in lines) or Path(path).suffix.lower() in (".ass", ".ssa")
    if not timed and Path(path).suffix.lower() in (".srt", ".vtt"):
        raise InputError(Problem("no timed cues (lines like 00:00:01,000 --> 00:00:02,500) found", file=path,
                                 hint=HINT))
    entries = _timed_entries(text, names, path) if timed else _plain_entries(lines, names, path)
    if not entries:
        raise InputError(Problem("the transcript holds no text", file=path, hint=HINT))
    return entries


def _timed_entries(text: str, names: dict[str, str], path: Path) -> list[Entry]:
    """Cues of a subtitle file, read by pysubs2; the speaker from a `<v Name>` tag, an ASS event's
    Name, or a `Name:` prefix."""
    import pysubs2

    lines = text.splitlines()
    # pysubs2 drops WebVTT voice tags: they become the `Name:` prefix it keeps
    text = _VOICE.sub(lambda m: f"{m[1].strip()}: " if m[1].strip().lower() in names else "", text)
    try:
        known = {".ass": "ass", ".ssa": "ssa"}.get(Path(path).suffix.lower())  # ASS without styles is not detected
        subs = pysubs2.SSAFile.from_string(text, format_=known) if known else pysubs2.SSAFile.from_string(text)
    except (pysubs2.Pysubs2Error, ValueError) as error:
        raise InputError(Problem(f"not a subtitle file pysubs2 can read ({error})", file=path, hint=HINT)) from None
    numbers = [n for n, line in enumerate(lines, 1) if _ARROW.match(line) or line.startswith("Dialogue:")]
    entries = []
    for index, event in enumerate(e for e in subs.events if not e.is_comment):
        number = numbers[index] if index < len(numbers) else 0
        if event.end <= event.start:
            raise InputError(Problem("the cue ends before it starts", file=path, line=number or None,
                                     hint="the second time is the cue's end"))
        said = " ".join(html.unescape(_TIMESTAMP.sub("", event.plaintext)).split())
        entry = Entry(said, names.get(event.name.strip().lower()) if event.name else None,
                      event.start / 1000, event.end / 1000, number)
        prefix = _PREFIX.match(entry.text)
        if entry.speaker is None and prefix and prefix[1].lower() in names:
            entry.speaker, entry.text = names[prefix[1].lower()], prefix[2]
        if entry.text:
            entries.append(entry)
    return entries


def _plain_entries(lines: list[str], names: dict[str, str], path: Path) -> list[Entry]:
    entries: list[Entry] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        prefix = _PREFIX.match(line)
        name = prefix[1].lower() if prefix else None
        if name in names:
            entries.append(Entry(prefix[2].strip(), names[name], None, None, number))
            continue
        close = difflib.get_close_matches(name, list(names), 1, 0.6) if name else []
        if close or not entries:
            shown = f"'{prefix[1]}' is not" if prefix else "the first line names no"
            raise InputError(Problem(f"{shown} speaker with a track ({', '.join(dict.fromkeys(names.values()))})",
                                     file=path, line=number,
                                     hint=(f"did you mean '{close[0]}'? " if close else "") + HINT))
        entries[-1].text += " " + line.strip()
    return entries


def align(entries: list[Entry], regions: Regions) -> Alignment:
    """Texts per detected region and subtitle cues, from timed or plain entries."""
    result = Alignment({speaker: [""] * len(found) for speaker, found in regions.items()}, [])
    if entries and entries[0].start is not None:
        _align_timed(entries, regions, result)
    else:
        _align_plain(entries, regions, result)
    result.subtitles.sort(key=lambda cue: (cue["start"], cue["speaker"]))
    return result


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _closest_region(span: tuple[float, float], found: list[tuple[float, float]]) -> int | None:
    """The region overlapping `span` most, else the nearest one."""
    if not found:
        return None
    return max(range(len(found)), key=lambda i: (_overlap(span, found[i]),
                                                 -min(abs(found[i][0] - span[1]), abs(span[0] - found[i][1]))))


def _align_timed(entries: list[Entry], regions: Regions, result: Alignment) -> None:
    for entry in entries:
        span = (entry.start, entry.end)
        speaker = entry.speaker or max(regions, key=lambda s: (sum(_overlap(span, r) for r in regions[s]),
                                                                -_distance(span, regions[s])))
        index = _closest_region(span, regions[speaker])
        if index is None:
            result.warnings.append(f"transcript line {entry.line}: {speaker} has no detected speech; "
                                   f"the subtitle keeps its own times")
        elif _overlap(span, regions[speaker][index]) == 0:
            result.warnings.append(f"transcript line {entry.line} ({timestamp(entry.start)}) overlaps no detected "
                                   f"speech of {speaker}")
        if index is not None:
            texts = result.region_texts[speaker]
            texts[index] = f"{texts[index]} {entry.text}".strip()
        start, end = _snapped(span, regions[speaker])
        result.subtitles.append(_subtitle(speaker, entry.text, start, end))


def _distance(span: tuple[float, float], found: list[tuple[float, float]]) -> float:
    return min((max(r[0] - span[1], span[0] - r[1], 0.0) for r in found), default=float("inf"))


def _snapped(span: tuple[float, float], found: list[tuple[float, float]]) -> tuple[float, float]:
    starts, ends = [r[0] for r in found], [r[1] for r in found]
    start = min(starts, key=lambda t: abs(t - span[0]), default=span[0])
    end = min(ends, key=lambda t: abs(t - span[1]), default=span[1])
    start = start if abs(start - span[0]) <= SNAP_S else span[0]
    end = end if abs(end - span[1]) <= SNAP_S else span[1]
    return (start, end) if end > start else span


def _align_plain(entries: list[Entry], regions: Regions, result: Alignment) -> None:
    for speaker, found in regions.items():
        lines = [entry.text for entry in entries if entry.speaker == speaker]
        if lines and not found:
            result.warnings.append(f"{speaker} has {len(lines)} transcript lines but no detected speech: "
                                   f"they have no subtitles")
        if not lines or not found:
            continue
        durations = np.array([end - start for start, end in found])
        lengths = np.array([len(text) for text in lines], float)
        if len(lines) <= len(found):
            _lines_over_regions(speaker, lines, found, _cuts(durations, lengths), result)
        else:
            _regions_over_lines(speaker, lines, found, _cuts(lengths, durations), result)


def _lines_over_regions(speaker: str, lines: list[str], found, cuts: list[int], result: Alignment) -> None:
    """Each line over a group of consecutive regions; its words shared among them by duration."""
    for text, first, last in zip(lines, cuts, cuts[1:]):
        group = found[first:last]
        result.subtitles.append(_subtitle(speaker, text, group[0][0], group[-1][1]))
        words = text.split()
        shares = np.cumsum([end - start for start, end in group])
        bounds = [0, *np.round(shares / shares[-1] * len(words)).astype(int)]
        for index, lo, hi in zip(range(first, last), bounds, bounds[1:]):
            result.region_texts[speaker][index] = " ".join(words[lo:hi])


def _regions_over_lines(speaker: str, lines: list[str], found, cuts: list[int], result: Alignment) -> None:
    """Each region holds a group of consecutive lines, timed within it by their lengths."""
    for index, ((start, end), first, last) in enumerate(zip(found, cuts, cuts[1:])):
        group = lines[first:last]
        result.region_texts[speaker][index] = " ".join(group)
        shares = np.concatenate([[0], np.cumsum([len(text) for text in group])]) / sum(len(t) for t in group)
        for text, lo, hi in zip(group, shares, shares[1:]):
            result.subtitles.append(_subtitle(speaker, text, start + lo * (end - start), start + hi * (end - start)))


def _cuts(items: np.ndarray, targets: np.ndarray) -> list[int]:
    """Cut `items` (at least as many as `targets`) into len(targets) consecutive non-empty groups whose sums
    match the targets in proportion, least squared log ratio; return the len(targets) + 1 cut points."""
    m, n = len(items), len(targets)
    share = np.concatenate([[0.0], np.cumsum(items / items.sum())])
    wanted = np.maximum(targets / targets.sum(), 1e-9)
    most = max(MOST_REGIONS_PER_LINE, ceil(m / n))
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    size = np.zeros((n + 1, m + 1), int)
    for k in range(1, n + 1):
        for group in range(1, min(most, m) + 1):
            ends = np.arange(group, m + 1)
            total = cost[k - 1, ends - group] + np.log(np.maximum(share[ends] - share[ends - group], 1e-9)
                                                       / wanted[k - 1]) ** 2
            better = total < cost[k, ends]
            cost[k, ends[better]], size[k, ends[better]] = total[better], group
    cuts = [m]
    for k in range(n, 0, -1):
        cuts.append(cuts[-1] - size[k, cuts[-1]])
    return cuts[::-1]


def _subtitle(speaker: str, text: str, start: float, end: float) -> dict:
    return {"speaker": speaker, "text": text, "start": round(start, 3), "end": round(end, 3), "words": []}
