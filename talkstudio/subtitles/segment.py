"""Dialogue cues into subtitle events under the timed-text rules (rules.py).

A cue's text is cut into tokens (words, or characters in scripts without spaces), each timed
from the voice's word timings (interpolated inside a word; spread over the line without them).
Each cue is split where the rules force it, at the best places (the end of a sentence, then of a
clause, never leaving one word alone), and each piece laid out in at most `max_lines` lines that
break at phrase boundaries. Then the events are timed as a whole: short ones that would flash
join their neighbour (a dash per speaker when two speak), each stays on for its reading time
into the silence after it, small gaps close, and nothing crosses a scene cut.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

import numpy as np

from talkstudio.subtitles.rules import Rules

SENTENCE_END = ".!?…。！？"
CLAUSE_END = ",;:—–、，；："
CLOSING = "\"'”’)]}»」』）】"
OPENING = "\"'“‘([{«「『（【"
# English words a line should break before (conjunctions, prepositions) and never after
# (articles and determiners, subject pronouns, auxiliaries and negations)
BREAK_BEFORE = set("and but or nor so yet because although though unless until while whereas if when whenever "
                   "where which who whom whose that than as in on at to for with from of about into onto over "
                   "after before under between through without within by against during since across along "
                   "around behind beyond near towards toward upon".split())
KEEP_WITH_NEXT = set("a an the this these those my your his her its our their some any no every each "
                     "i you he she we they it is are was were be been am have has had will would shall should "
                     "can could may might must do does did not don't doesn't didn't isn't aren't wasn't won't "
                     "can't couldn't very too more most much many such".split())
POP_WORDS = 3  # a pop caption shows at most this many words


@dataclass(frozen=True)
class Token:
    text: str  # as written, with its punctuation
    start: float  # seconds, on the whole timeline
    end: float
    spaced: bool  # a space stands before it (not for the first token of a piece)


@dataclass
class Part:
    """What one speaker says in an event."""

    speaker: str
    name: str
    lines: list[str]
    tokens: list[Token]
    label: bool = False  # show the speaker's name before the text
    lead: float = 0.0  # room kept before the first line for the label
    chorus: bool = False  # several speakers saying the same words at once (`name` names them all)

    def line_spans(self) -> list[tuple[float, float]]:
        """When each line is said: the tokens are matched to the lines in order."""
        spans, at = [], 0
        for line in self.lines:
            first = at
            while at < len(self.tokens) and len(joined(_unspaced_first(self.tokens[first:at + 1]))) <= len(line):
                at += 1
            words = self.tokens[first:max(at, first + 1)]
            spans.append((words[0].start, words[-1].end) if words else (0.0, 0.0))
        return spans


@dataclass
class Event:
    start: float
    end: float
    scene: str | None
    parts: list[Part]
    speech_end: float = 0.0  # when the last word ends (the event may stay on after it)
    overlaps: bool = False  # shown beside another speaker's event (speech that overlaps)

    @property
    def speakers(self) -> list[str]:
        return [part.speaker for part in self.parts]

    @property
    def characters(self) -> int:
        return sum(len(" ".join(part.lines)) for part in self.parts)


@dataclass
class Scene:
    id: str | None
    start: float
    end: float


@dataclass
class _Piece:
    tokens: list[Token]
    lines: list[str]


# --- tokens ---------------------------------------------------------------------------------

def tokens_of(cue: dict, rules: Rules) -> list[Token]:
    """The cue's text as timed tokens."""
    text = " ".join(cue["text"].split())
    if not text:
        return []
    spans = _word_spans(text) if rules.spaced else _character_spans(text)
    times = _character_times(text, cue)
    return [Token(text[a:b], float(times[a]), float(times[b]), spaced) for a, b, spaced in spans]


def _word_spans(text: str) -> list[tuple[int, int, bool]]:
    return [(m.start(), m.end(), m.start() > 0) for m in re.finditer(r"\S+", text)]


_UNIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’.,\-]*|\s+|.", re.S)


def _character_spans(text: str) -> list[tuple[int, int, bool]]:
    """Characters (runs of Latin letters and digits kept whole), punctuation kept with its neighbour."""
    spans: list[list] = []
    spaced = False
    for match in _UNIT.finditer(text):
        unit = match.group()
        if unit.isspace():
            spaced = True
            continue
        if spans and (unit in CLOSING or unit in SENTENCE_END or unit in CLAUSE_END) and not spaced:
            spans[-1][1] = match.end()  # closing punctuation never starts a line
        elif spans and spans[-1][3]:
            spans[-1][1] = match.end()  # an opening bracket or quote goes with what follows
            spans[-1][3] = False
        else:
            spans.append([match.start(), match.end(), spaced and bool(spans), unit in OPENING])
        spaced = False
    return [(a, b, s) for a, b, s, _ in spans]


def _character_times(text: str, cue: dict) -> np.ndarray:
    """The time at each character boundary (len(text) + 1 of them), from the word timings."""
    anchors: dict[int, float] = {}
    cursor = 0
    lowered = text.lower()
    for word in cue.get("words") or []:
        spoken = " ".join(str(word["text"]).split())
        if not spoken:
            continue
        at = lowered.find(spoken.lower(), cursor)
        if at < 0:
            continue
        anchors.setdefault(at, float(word["start"]))
        anchors[at + len(spoken)] = float(word["end"])
        cursor = at + len(spoken)
    anchors.setdefault(0, float(cue["start"]))
    anchors.setdefault(len(text), float(cue["end"]))
    positions = np.array(sorted(anchors), dtype=np.float64)
    times = np.maximum.accumulate(np.array([anchors[int(p)] for p in positions]))
    return np.interp(np.arange(len(text) + 1), positions, times)


# --- lines ----------------------------------------------------------------------------------

def joined(tokens: list[Token]) -> str:
    return "".join((" " if token.spaced and i else "") + token.text for i, token in enumerate(tokens))


def width(text: str, rules: Rules) -> float:
    """Characters as the rules count them: in scripts without spaces, half-width ones count half."""
    if rules.spaced:
        return len(text)
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.5 for c in text)


def break_cost(before: Token, after: Token, rules: Rules) -> float:
    """How bad a line or subtitle break between two tokens is (negative: a good place)."""
    tail = before.text.rstrip(CLOSING)
    if tail[-1:] in SENTENCE_END:
        return -3.0
    if tail[-1:] in CLAUSE_END:
        return -2.0
    if not rules.english:
        return 0.0
    word, following = _bare(before.text), _bare(after.text)
    cost = 0.0
    if following in BREAK_BEFORE:
        cost -= 1.0
    if word in KEEP_WITH_NEXT:
        cost += 3.0
    if word in BREAK_BEFORE:  # a preposition stays with its object
        cost += 2.0
    if before.text[:1].isupper() and after.text[:1].isupper() and word not in KEEP_WITH_NEXT:
        cost += 2.0  # a first name and a last name
    return cost


def _bare(text: str) -> str:
    return text.strip(OPENING + CLOSING + SENTENCE_END + CLAUSE_END).lower().replace("’", "'")


def layout(tokens: list[Token], rules: Rules, max_lines: int | None = None,
           lead: float = 0.0) -> tuple[list[str], float] | None:
    """The best lines for the tokens and their cost, or None when they cannot fit; `lead` is the
    width of what goes before the first line (a name label)."""
    max_lines = max_lines or rules.max_lines
    text = joined(tokens)
    if width(text, rules) + lead <= rules.max_chars:
        return [text], 0.0
    if max_lines == 1 or len(tokens) < 2:
        return None
    best = None
    for cut in range(1, len(tokens)):
        head = joined(tokens[:cut])
        if width(head, rules) + lead > rules.max_chars:
            break
        rest = layout(_unspaced_first(tokens[cut:]), rules, max_lines - 1)
        if rest is None:
            continue
        lines, rest_cost = rest
        cost = rest_cost + break_cost(tokens[cut - 1], tokens[cut], rules)
        cost += 4.0 * abs(width(head, rules) + lead - width(lines[0], rules)) / rules.max_chars
        if width(head, rules) + lead > width(lines[0], rules):
            cost += 0.5  # a pyramid (short line on top) reads best
        if (cut == 1 or len(tokens) - cut == 1) and len(tokens) > 2:
            cost += 20.0  # one word alone on a line
        if best is None or cost < best[1]:
            best = ([head] + lines, cost)
    return best


def _unspaced_first(tokens: list[Token]) -> list[Token]:
    return [replace(tokens[0], spaced=False)] + tokens[1:] if tokens else tokens


# --- pieces of one cue ----------------------------------------------------------------------

def pieces_of(tokens: list[Token], rules: Rules, lead: float = 0.0, lead_each: bool = False) -> list[_Piece]:
    """The cue cut into subtitles: each fits the lines and the longest time, the cuts at the best places.
    `lead` is room kept before the first piece's first line (or every piece's) for a name label."""
    if rules.captions == "pop":
        return _pop_pieces(tokens, rules)
    count = len(tokens)
    best: list[tuple[float, int] | None] = [None] * (count + 1)
    best[0] = (0.0, -1)
    layouts: dict[tuple[int, int], tuple[list[str], float]] = {}
    for end in range(1, count + 1):
        for begin in range(end - 1, -1, -1):
            if best[begin] is None:
                continue
            found = layout(_unspaced_first(tokens[begin:end]), rules, lead=lead if begin == 0 or lead_each else 0.0)
            if found is None:
                break  # longer pieces fit even less
            speech = tokens[end - 1].end - tokens[begin].start
            if speech > rules.max_duration and end - begin > 1:
                break
            cost = best[begin][0] + _piece_cost(tokens, begin, end, found[1], speech, rules)
            if best[end] is None or cost < best[end][0]:
                best[end] = (cost, begin)
                layouts[(begin, end)] = found
    if best[count] is None:  # a single token wider than a line: it stands alone, as written
        return [_Piece([token], [token.text]) for token in tokens]
    cuts, end = [], count
    while end > 0:
        begin = best[end][1]
        cuts.append((begin, end))
        end = begin
    return [_Piece(_unspaced_first(tokens[a:b]), layouts[(a, b)][0]) for a, b in reversed(cuts)]


def _piece_cost(tokens: list[Token], begin: int, end: int, lines_cost: float, speech: float, rules: Rules) -> float:
    cost = 10.0 + lines_cost  # each subtitle costs: no more of them than the rules need
    if end < len(tokens):
        cost += 3.0 * break_cost(tokens[end - 1], tokens[end], rules)
    if end - begin == 1 and len(tokens) > 1:
        cost += 40.0  # an orphan: one word on its own
    inner_sentences = sum(t.text.rstrip(CLOSING)[-1:] in SENTENCE_END for t in tokens[begin:end - 1])
    cost += 4.0 * inner_sentences  # one sentence a subtitle, where the timing allows
    if speech < rules.min_duration and len(tokens) > 1:
        cost += 8.0 * (rules.min_duration - speech)
    return cost


def _pop_pieces(tokens: list[Token], rules: Rules) -> list[_Piece]:
    """One to three words at a time, ending at punctuation where it falls."""
    pieces, current = [], []
    limit = max(rules.max_chars // 2, 8)
    for i, token in enumerate(tokens):
        current.append(token)
        text = joined(_unspaced_first(current))
        ends_phrase = token.text.rstrip(CLOSING)[-1:] in SENTENCE_END + CLAUSE_END
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        too_long = following is not None and width(f"{text} {following.text}", rules) > limit
        if ends_phrase or len(current) == POP_WORDS or too_long or following is None:
            pieces.append(_Piece(_unspaced_first(current), [text]))
            current = []
    return pieces


# --- events ---------------------------------------------------------------------------------

def events_from_cues(cues: list[dict], names: dict[str, str], scenes: list[Scene], rules: Rules) -> list[Event]:
    """Subtitle events for the cues, timed by the rules, sorted by start."""
    events = []
    labelled: set[tuple] = set()
    for cue in sorted(cues, key=lambda c: c["start"]):
        tokens = tokens_of(cue, rules)
        if not tokens:
            continue
        name = names.get(cue["speaker"], cue["speaker"])
        key = (cue.get("scene"), cue["speaker"])
        lead = width(f"{name}: ", rules) if _labels_shown(rules, len(names)) and (
            rules.names == "always" or key not in labelled) else 0.0
        labelled.add(key)
        pieces = pieces_of(tokens, rules, lead, lead_each=rules.names == "always")
        for i, piece in enumerate(pieces):
            start = float(cue["start"]) if i == 0 else piece.tokens[0].start
            speech_end = float(cue["end"]) if i == len(pieces) - 1 else piece.tokens[-1].end
            part = Part(cue["speaker"], name, piece.lines, piece.tokens, lead=lead if i == 0 or rules.names == "always" else 0.0)
            events.append(Event(start, speech_end, cue.get("scene"), [part], speech_end))
    events.sort(key=lambda e: (e.start, e.speakers))
    scene_of = {scene.id: scene for scene in scenes}
    whole = Scene(None, min((e.start for e in events), default=0.0), max((e.end for e in events), default=0.0))
    timed = []
    for scene_id in dict.fromkeys(e.scene for e in events):
        own = [e for e in events if e.scene == scene_id]
        timed += _timed(own, scene_of.get(scene_id, whole), rules)
    _label(timed, rules, len(names))
    return sorted(timed, key=lambda e: (e.start, e.speakers))


def _timed(events: list[Event], scene: Scene, rules: Rules) -> list[Event]:
    """One scene's events under the timing rules."""
    _mark_overlaps(events)
    if rules.captions != "pop":
        events = _joined_where_they_would_flash(events, rules)
    for i, event in enumerate(events):
        following = _next_after(events, i)
        wanted = max(rules.min_duration, event.characters / rules.max_cps)
        if rules.captions == "pop":
            wanted = 0.0  # a pop caption is on while its words are said
        limit = min(following.start - rules.min_gap if following else scene.end,
                    scene.end - rules.min_gap, event.start + rules.max_duration)
        event.end = max(event.end, min(event.start + wanted, limit))
        if following and 0 < following.start - event.end < rules.snap:
            event.end = max(event.end, following.start - rules.min_gap)  # close a small gap
        if 0 < scene.end - event.end < rules.snap and not following:
            event.end = scene.end - rules.min_gap  # out at the cut
    if events and 0 < events[0].start - scene.start < rules.snap:
        events[0].start = scene.start  # in at the cut
    for i, event in enumerate(events):
        if event.end - event.start < rules.min_duration and rules.captions != "pop":
            before = max((e.end for e in events[:i] if not e.overlaps), default=scene.start - rules.min_gap)
            event.start = max(min(event.start, event.end - rules.min_duration), before + rules.min_gap,
                              event.start - rules.snap, scene.start)
    _keep_gaps(events, rules)
    return events


def _keep_gaps(events: list[Event], rules: Rules) -> None:
    """At least the minimum gap between subtitles shown one after the other: the earlier one goes
    off a moment before its last word ends rather than the next coming late."""
    for i, event in enumerate(events):
        following = _next_after(events, i)
        if following is not None and following.start - event.end < rules.min_gap:
            event.end = max(following.start - rules.min_gap, event.start + rules.min_gap)

def _next_after(events: list[Event], i: int) -> Event | None:
    """The next event that does not overlap this one's speech (those are shown beside it)."""
    for following in events[i + 1:]:
        if following.start >= events[i].speech_end - 1e-6 or set(following.speakers) & set(events[i].speakers):
            return following
    return None


def _mark_overlaps(events: list[Event]) -> None:
    for i, event in enumerate(events):
        for other in events[i + 1:]:
            if other.start >= event.speech_end - 1e-6:
                break
            if not set(other.speakers) & set(event.speakers):
                event.overlaps = other.overlaps = True


def _joined_where_they_would_flash(events: list[Event], rules: Rules) -> list[Event]:
    """Two neighbours become one event where the first could not stay on long enough, or where
    two speakers overlap: a dash per speaker, one line each (the convention for dialogue)."""
    joined_events: list[Event] = []
    for event in events:
        last = joined_events[-1] if joined_events else None
        if last is not None and _should_join(last, event, rules):
            joined_events[-1] = _join(last, event, rules)
        else:
            joined_events.append(event)
    return joined_events


def _should_join(first: Event, second: Event, rules: Rules) -> bool:
    if len(first.parts) + len(second.parts) > rules.max_lines:
        return False
    if any(len(part.lines) > 1 for part in first.parts + second.parts):
        return False
    if second.start - first.end > rules.snap:  # far enough apart to be read one by one
        return False
    room = second.start - rules.min_gap - first.start
    overlapping = first.overlaps and second.overlaps and second.start < first.speech_end
    if not (overlapping or room < rules.min_duration):
        return False
    if second.speech_end - first.start > rules.max_duration:
        return False
    if first.speakers == second.speakers:
        return layout(first.parts[-1].tokens + second.parts[0].tokens, rules, 1, first.parts[-1].lead) is not None
    # a dash (and a label) goes before each speaker's line
    return all(width(part.lines[0], rules) + part.lead + 2 <= rules.max_chars for part in first.parts + second.parts)


def _join(first: Event, second: Event, rules: Rules) -> Event:
    if _in_chorus(first, second):  # the same words, said together: once, with both names
        part = replace(first.parts[0], name=f"{first.parts[0].name} & {second.parts[0].name}", chorus=True)
        return Event(first.start, max(first.end, second.end), first.scene, [part],
                     max(first.speech_end, second.speech_end), overlaps=False)
    if first.speakers == second.speakers:  # one speaker: one line
        tokens = first.parts[-1].tokens + [replace(second.parts[0].tokens[0], spaced=True)] + second.parts[0].tokens[1:]
        part = replace(first.parts[-1], lines=[joined(tokens)], tokens=tokens)
        parts = first.parts[:-1] + [part]
    else:
        parts = first.parts + second.parts
    return Event(first.start, max(first.end, second.end), first.scene, parts,
                 max(first.speech_end, second.speech_end), overlaps=False)


def _labels_shown(rules: Rules, speakers: int) -> bool:
    return rules.names == "always" or (rules.names == "first" and speakers > 1)


def _in_chorus(first: Event, second: Event) -> bool:
    return (len(first.parts) == len(second.parts) == 1 and first.parts[0].lines == second.parts[0].lines
            and abs(first.start - second.start) < 0.1)


def _label(events: list[Event], rules: Rules, speakers: int) -> None:
    """Name labels: on a speaker's first subtitle in each scene, on all, or on none."""
    if not _labels_shown(rules, speakers):
        return
    seen: set[tuple] = set()
    for event in events:
        for part in event.parts:
            key = (event.scene, part.speaker)
            part.label = rules.names == "always" or key not in seen or part.chorus
            seen.add(key)


def flattened(events: list[Event], rules: Rules) -> list[Event]:
    """Events that never overlap (for SRT and the mp4's mov_text track, whose players show one at a
    time): where two are on at once, one event holds both, a dash per speaker, each showing the
    line being said when all lines would be too many."""
    bounds = sorted({t for e in events for t in (e.start, e.end)})
    flat: list[Event] = []
    for start, end in zip(bounds, bounds[1:]):
        on = [e for e in events if e.start <= start and e.end >= end]
        if not on or end - start < rules.min_gap / 2:
            continue
        parts = [part for e in on for part in e.parts]
        if len(parts) > 1 and sum(len(part.lines) for part in parts) > rules.max_lines:
            parts = [_line_said(part, start) for part in parts]
        if flat and flat[-1].end == start and _same(flat[-1].parts, parts):
            flat[-1].end = end
        else:
            flat.append(Event(start, end, on[0].scene, parts, max(e.speech_end for e in on)))
    return _without_flashes(flat, rules)


def _without_flashes(flat: list[Event], rules: Rules) -> list[Event]:
    """A piece of an overlap too short to read stays with the piece before it (or after it), and
    pieces that follow each other directly are kept apart by the minimum gap."""
    def short(event: Event) -> bool:
        return event.end - event.start < rules.min_duration - 0.001

    kept: list[Event] = []
    for event in flat:
        touching = kept and event.start - kept[-1].end < rules.min_gap
        if touching and short(event) and set(event.speakers) <= set(kept[-1].speakers):
            kept[-1].end = event.end  # nobody's words are lost: the piece before shows the same speakers
            continue
        if touching and short(kept[-1]) and set(kept[-1].speakers) <= set(event.speakers):
            event.start = kept[-1].start
            kept[-1] = event
            continue
        kept.append(event)
    for event, following in zip(kept, kept[1:]):
        if following.start - event.end < rules.min_gap:
            event.end = following.start - rules.min_gap
    return kept


def _line_said(part: Part, at: float) -> Part:
    """The part reduced to the line being said at `at` (the last one begun)."""
    spans = part.line_spans()
    index = max([i for i, (begin, _) in enumerate(spans) if begin <= at] or [0])
    return replace(part, lines=[part.lines[index]])


def _same(first: list[Part], second: list[Part]) -> bool:
    return len(first) == len(second) and all(a.speaker == b.speaker and a.lines == b.lines
                                             for a, b in zip(first, second))
