"""The multicam edit: a cut of a rendered video that goes to whoever speaks.

The wide render is the master shot; a close-up of a character is cropped from it around
their face (stages.json) and scaled back to the video size. `decide_shots` chooses the
cameras from the cues (cues.json) under hard rules and soft preferences:

- a frame where exactly one person speaks shows that speaker: their close-up, or the wide shot;
- a frame where two or more speak at once is wide;
- no shot is shorter than `min_shot` (only a whole video shorter than that is one shorter shot);
- preferred: the speaker's close-up; wide for each scene's opening (establishing) and in rapid
  exchanges (`rapid_changes` changes of speaker within `rapid_window` seconds); now and then, by
  the seed, a listener's close-up (a reaction) where a silence is long enough to hold one.

The best cut under those rules is found by dynamic programming over the pieces of the timeline
between cue edges. The decisions are written as a text file (the EDL) that a person can edit and
re-apply: one shot a line, `START END wide` or `START END close NAME`.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from talkstudio.errors import InputError, Problem
from talkstudio.subtitles import timestamp

CLOSE_UP_HEIGHT = 1.7  # a close-up's height in face heights: the face fills more than half of it
MAX_ZOOM = 4.0  # a small face in a wide stage is not enlarged beyond this
FACE_LEVEL = 0.45  # where the face's centre sits from the close-up's top: headroom above it
OWN_ROOM = 1.3  # a close-up zoomed into a person's own columns keeps at least this many face heights of picture
PILLARBOX_LEVEL = 0.6  # the pillarbox: the person's picture's edge colour, darkened to this
FEATHER = 0.04  # the pillarbox blends into the picture over this share of the width
WIDE_COST = 1.0  # per frame, for showing a lone speaker wide instead of close
CLOSE_IN_RAPID_COST = 1.0  # per frame, for a close-up during a rapid exchange or an establishing shot
STRANGER_COST = 1.0  # per frame, for a silence on someone who neither spoke last nor speaks next
EARLY_COST = 0.2  # per frame, for a silence on who speaks next rather than who spoke: cut as they start
REACTION_REWARD = 2.0  # per frame, for a chosen reaction shot
CUT_COST_SECONDS = 0.5  # a cut costs as much as this much time on a less preferred camera


@dataclass(frozen=True)
class EditSettings:
    min_shot: float = 1.5  # seconds
    establish: float = 2.0  # seconds of wide at each scene's start
    rapid_window: float = 5.0  # seconds
    rapid_changes: int = 3  # speaker changes within the window that make an exchange rapid
    reactions: float = 0.5  # chance that a long enough silence gets a listener's close-up
    seed: int = 0
    aspect: tuple[int, int] | None = None  # (9, 16), (1, 1), (4, 5): reframed on whoever speaks, captions burned
    captions: str | None = None  # the burned captions' style in a reframed cut (default: pop)


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: int  # frame, inclusive
    end: int  # frame, exclusive


@dataclass(frozen=True)
class SceneFrames:
    id: str
    start: int
    end: int
    faces: dict  # on-stage character -> face box (x, y, width, height) in video pixels
    regions: dict = field(default_factory=dict)  # character -> their panel (x0, y0, x1, y1); absent: the picture


@dataclass(frozen=True)
class Programme:
    """What the edit needs to know about a render: when who speaks, and who is where."""

    fps: float
    frames: int
    turns: list[Turn]
    scenes: list[SceneFrames]

    def scene_at(self, frame: int) -> int:
        return max(bisect_right([s.start for s in self.scenes], frame) - 1, 0)


@dataclass(frozen=True)
class Shot:
    start: int  # frame, inclusive
    end: int  # frame, exclusive
    close: str | None = None  # whose close-up; None is the wide shot

    @property
    def camera(self) -> str:
        return "wide" if self.close is None else f"close {self.close}"


# --- reading a render ------------------------------------------------------------------------

def work_folder(video: Path) -> Path:
    return Path(video).with_suffix("")


def load_programme(video: Path) -> Programme:
    """The cues and face boxes `talkstudio render` wrote beside `video`."""
    folder = work_folder(video)
    if not Path(video).is_file():
        raise InputError(Problem("video not found", file=Path(video), hint="render it first: talkstudio render SCRIPT"))
    try:
        cues = json.loads((folder / "cues.json").read_text())
        stages = json.loads((folder / "stages.json").read_text())
    except FileNotFoundError as error:
        raise InputError(Problem(f"{error.filename} is missing: the multicam edit needs the render's cues and faces",
                                 file=Path(video), hint="render the video again with `talkstudio render`")) from None
    # a voice heard off screen is nobody to cut to
    turns = [Turn(c["speaker"], c["start_frame"], c["end_frame"]) for c in cues["cues"] if not c.get("offscreen")]
    scenes = [SceneFrames(s["id"], s["start_frame"], s["end_frame"],
                          {name: tuple(face["box"]) for name, face in stages.get(s["id"], {}).items()},
                          {name: tuple(face["region"]) for name, face in stages.get(s["id"], {}).items()
                           if "region" in face})
              for s in cues["scenes"]]
    return Programme(float(cues["fps"]), int(cues["frames"]), turns, scenes)


# --- deciding the shots ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Piece:
    """A stretch of the timeline over which nothing changes: who speaks, which scene."""

    start: int
    end: int
    scene: int
    speaking: frozenset


def decide_shots(programme: Programme, settings: EditSettings = EditSettings()) -> list[Shot]:
    """The cut: contiguous shots from frame 0 to the end, following the rules in the module's doc."""
    min_frames = max(math.ceil(settings.min_shot * programme.fps), 1)
    if programme.frames <= min_frames:
        return [Shot(0, programme.frames)]
    pieces = _pieces(programme, round(settings.establish * programme.fps), min_frames)
    cameras = [None, *sorted({name for scene in programme.scenes for name in scene.faces})]
    costs = _costs(pieces, cameras, programme, settings, min_frames)
    return _best_cut(pieces, cameras, costs, min_frames, CUT_COST_SECONDS * programme.fps)


def _pieces(programme: Programme, establish: int, min_frames: int) -> list[_Piece]:
    """The timeline cut at every cue's edges, and a shortest shot away from them (where a cut may go so
    that a forced wide shot, around an overlap, is no longer than it must be)."""
    edges = {0, programme.frames}
    edges.update(f for s in programme.scenes for f in (s.start, min(s.start + establish, s.end)))
    cue_edges = {f for t in programme.turns for f in (t.start, t.end)}
    edges.update(f + shift for f in cue_edges for shift in (-min_frames, 0, min_frames))
    edges = sorted(f for f in edges if 0 <= f <= programme.frames)
    speaking: list[set] = [set() for _ in edges[:-1]]
    for turn in programme.turns:
        for k in range(bisect_left(edges, turn.start), bisect_left(edges, turn.end)):
            speaking[k].add(turn.speaker)
    return [_Piece(a, b, programme.scene_at(a), frozenset(who))
            for (a, b), who in zip(pairwise(edges), speaking)]


def _costs(pieces: list[_Piece], cameras: list, programme: Programme, settings: EditSettings,
           min_frames: int) -> list[list[float]]:
    """Per piece and camera: the cost of showing it (math.inf where a rule forbids it), all frames counted."""
    changes = _speaker_changes(programme.turns)
    half_window = settings.rapid_window * programme.fps / 2
    establish = round(settings.establish * programme.fps)
    rng = np.random.default_rng(settings.seed)
    neighbours = _neighbour_speakers(pieces)
    table = []
    for k, piece in enumerate(pieces):
        scene = programme.scenes[piece.scene]
        middle = (piece.start + piece.end) / 2
        rapid = (bisect_right(changes, middle + half_window) - bisect_left(changes, middle - half_window)
                 >= settings.rapid_changes)
        opening = piece.start < scene.start + establish
        last, following = neighbours[k]
        reaction = None
        if not piece.speaking and not opening and piece.end - piece.start >= min_frames:
            listeners = sorted(set(scene.faces) - {last})
            if listeners and rng.random() < settings.reactions:
                reaction = listeners[int(rng.integers(len(listeners)))]
        row = []
        for camera in cameras:
            if camera is None:
                cost = 0.0 if len(piece.speaking) != 1 or rapid or opening else WIDE_COST
            elif camera not in scene.faces or (piece.speaking and piece.speaking != {camera}):
                cost = math.inf
            elif piece.speaking:
                cost = CLOSE_IN_RAPID_COST if rapid or opening else 0.0
            elif camera == reaction:
                cost = -REACTION_REWARD
            else:
                cost = CLOSE_IN_RAPID_COST if opening else (
                    0.0 if camera == last else EARLY_COST if camera == following else STRANGER_COST)
            row.append(cost * (piece.end - piece.start))
        table.append(row)
    return table


def _speaker_changes(turns: list[Turn]) -> list[int]:
    ordered = sorted(turns, key=lambda t: t.start)
    return [b.start for a, b in pairwise(ordered) if a.speaker != b.speaker]


def _neighbour_speakers(pieces: list[_Piece]) -> list[tuple[str | None, str | None]]:
    """For each piece, who spoke last before it and who speaks next after it (a silence's natural cameras)."""
    def last_speakers(ordered):
        found, last = [], None
        for piece in ordered:
            found.append(last)
            last = min(piece.speaking) if piece.speaking else last
        return found

    return list(zip(last_speakers(pieces), reversed(last_speakers(reversed(pieces)))))


def _best_cut(pieces: list[_Piece], cameras: list, costs: list[list[float]], min_frames: int,
              cut_cost: float) -> list[Shot]:
    """Least total cost over every cut whose shots are each at least min_frames long.

    best[i][c]: the cheapest way to show pieces [0, i) ending in a finished shot (at least min_frames)
    on camera c. A finished shot either grows by one more piece, or a new shot on c starts at piece j and
    ends at i where it first reaches min_frames (so every shot is one such start plus growth).
    """
    edges = [p.start for p in pieces] + [pieces[-1].end]
    count, n = len(cameras), len(pieces)
    best = [[math.inf] * count for _ in range(n + 1)]
    came_from: list[list[tuple | None]] = [[None] * count for _ in range(n + 1)]
    for i in range(1, n + 1):
        for c in range(count):
            if best[i - 1][c] < math.inf and costs[i - 1][c] < math.inf:
                best[i][c], came_from[i][c] = best[i - 1][c] + costs[i - 1][c], (i - 1, c)
            run, j = 0.0, i - 1
            while j >= 0 and edges[i - 1] - edges[j] < min_frames and costs[j][c] < math.inf:
                run += costs[j][c]
                if edges[i] - edges[j] >= min_frames:
                    before = [(0.0, None)] if j == 0 else [
                        (best[j][p] + (cut_cost if p != c else 0.0), p) for p in range(count)]
                    total, previous = min(before, key=lambda pair: pair[0])
                    if total + run < best[i][c]:
                        best[i][c], came_from[i][c] = total + run, (j, previous, "new")
                j -= 1
    return _trace(best, came_from, edges, cameras)


def _trace(best, came_from, edges, cameras) -> list[Shot]:
    """The shots of the cheapest cut, walked back from the end; same-camera neighbours become one shot."""
    i = len(edges) - 1
    c = min(range(len(cameras)), key=lambda k: best[i][k])
    starts: list[tuple[int, int]] = []  # (edge index where a shot starts, camera index)
    while i > 0:
        step = came_from[i][c]
        if len(step) == 3:  # a shot started here
            starts.append((step[0], c))
            i, c = step[0], step[1]
        else:
            i = step[0]
    starts.reverse()
    shots: list[Shot] = []
    for (start, camera), following in zip(starts, starts[1:] + [(len(edges) - 1, None)]):
        shot = Shot(edges[start], edges[following[0]], cameras[camera])
        if shots and shots[-1].close == shot.close:
            shots[-1] = Shot(shots[-1].start, shot.end, shot.close)
        else:
            shots.append(shot)
    return shots


# --- the edit decision list ------------------------------------------------------------------

TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)$")


def timecode(frame: int, fps: float) -> str:
    return timestamp(frame / fps)


def edl_text(shots: list[Shot], programme: Programme, video: Path) -> str:
    """The shots as a table a person can read and edit; comments say who speaks in each shot."""
    head = [
        (f"# multicam edit of {video.name}: {programme.frames} frames at {programme.fps:g} fps "
         f"({timecode(programme.frames, programme.fps)})"),
        "# one shot a line: START END CAMERA; CAMERA is `wide` or `close NAME` (a character on stage).",
        "# Shots follow each other without gaps from 00:00:00.000 to the end. Edit, then re-apply with",
        f"#   talkstudio edit {video} --edl THIS_FILE",
        "#",
        "# start       end           camera             who speaks",
    ]
    rows = [f"{timecode(s.start, programme.fps)}  {timecode(s.end, programme.fps)}  {s.camera:<17}  "
            f"# {_who(s, programme)}" for s in shots]
    return "\n".join(head + rows) + "\n"


def _who(shot: Shot, programme: Programme) -> str:
    names = sorted({t.speaker for t in programme.turns if t.start < shot.end and t.end > shot.start},
                   key=lambda n: min(t.start for t in programme.turns if t.speaker == n and t.end > shot.start))
    if shot.close is not None and not any(t.speaker == shot.close and t.start < shot.end and t.end > shot.start
                                          for t in programme.turns):
        return f"{', '.join(names) or 'nobody'}; {shot.close} listens"
    return ", ".join(names) or "nobody"


def read_edl(file: Path, programme: Programme) -> list[Shot]:
    """The shots of an edited EDL, checked: times, order, no gaps, the whole video, known cameras."""
    try:
        text = (timeline_edl_text(file) if Path(file).suffix.lower() == ".otio"
                else Path(file).read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(Problem("edit decision list not found", file=Path(file), hint="check the --edl path")) from None
    problems: list[Problem] = []
    shots: list[tuple[int, Shot]] = []
    spans: list[tuple[int, Shot]] = []  # every line whose times could be read, for the continuity check
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            shot, span = _parse_shot(line, programme, Path(file), number, problems)
            if shot is not None:
                shots.append((number, shot))
            if span is not None:
                spans.append((number, span))
    # a line with a bad camera still has its times: the lines around it are not blamed for its gap
    problems += _continuity_problems(spans, programme, Path(file))
    if not shots and not problems:
        problems.append(Problem("no shots in the edit decision list", file=Path(file),
                                hint="one shot a line: START END wide|close NAME"))
    if problems:
        raise InputError(problems)
    return [shot for _, shot in shots]


def _parse_shot(line: str, programme: Programme, file: Path, number: int,
                problems: list[Problem]) -> tuple[Shot | None, Shot | None]:
    """The shot on a line (None when it is wrong, with its problem added), and its span whenever its
    times can be read (so a wrong camera does not make its neighbours look wrong)."""
    parts = line.split()

    def fail(message: str, hint: str) -> None:
        problems.append(Problem(message, file=file, line=number, hint=hint))

    times = [_frame(t, programme.fps) for t in parts[:2]] if len(parts) >= 2 else [None, None]
    span = Shot(*times) if None not in times and times[1] > times[0] else None
    if len(parts) not in (3, 4) or (len(parts) == 3) != (parts[2] == "wide"):
        fail(f"cannot read the shot {line!r}", "write START END wide, or START END close NAME")
        return None, span
    for text, frame in zip(parts[:2], times):
        if frame is None:
            fail(f"'{text}' is not a time", "write HH:MM:SS.mmm or seconds, e.g. 00:00:04.250 or 4.25")
    if None in times:
        return None, None
    start, end = times
    if end <= start:
        fail(f"the shot ends ({parts[1]}) before it starts ({parts[0]})", "the end comes after the start")
        return None, None
    if len(parts) == 3:
        return Shot(start, end), span
    if parts[2] != "close":
        fail(f"unknown camera '{parts[2]}'", "cameras are `wide` and `close NAME`")
        return None, span
    name = parts[3]
    missing = [s.id for s in programme.scenes if s.start < end and s.end > start and name not in s.faces]
    if missing:
        on_stage = sorted({n for s in programme.scenes for n in s.faces})
        fail(f"no close-up of '{name}': not on stage in scene {', '.join(missing)} during this shot",
             f"characters on stage: {', '.join(on_stage)}; or cut to wide there")
        return None, span
    return Shot(start, end, name), span


def _frame(text: str, fps: float) -> int | None:
    match = TIME.match(text)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    if minutes is None and hours is not None:
        hours, minutes = None, hours
    total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)
    return round(total * fps)


def _continuity_problems(shots: list[tuple[int, Shot]], programme: Programme, file: Path) -> list[Problem]:
    problems, expected, previous_line = [], 0, None
    for number, shot in shots:
        if shot.start != expected:
            what = "leaves a gap after" if shot.start > expected else "overlaps"
            after = f"the shot on line {previous_line}" if previous_line else "the start of the video"
            problems.append(Problem(f"the shot starts at {timecode(shot.start, programme.fps)} and {what} {after} "
                                    f"(which ends at {timecode(expected, programme.fps)})", file=file, line=number,
                                    hint="each shot starts where the one before it ends"))
        expected, previous_line = shot.end, number
    if shots and expected != programme.frames:
        problems.append(Problem(f"the last shot ends at {timecode(expected, programme.fps)} but the video is "
                                f"{timecode(programme.frames, programme.fps)} long", file=file, line=previous_line,
                                hint="the shots must cover the whole video"))
    return problems


# --- cutting the video ------------------------------------------------------------------------

def close_up_rect(face: tuple, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a close-up around a face: the video's aspect ratio, inside the frame."""
    width, height = size
    x, y, w, h = face
    crop_h = min(max(h * CLOSE_UP_HEIGHT, height / MAX_ZOOM), height)
    crop_h = round(crop_h)
    crop_w = min(round(crop_h * width / height), width)
    left = min(max(round(x + w / 2 - crop_w / 2), 0), width - crop_w)
    top = min(max(round(y + h / 2 - FACE_LEVEL * crop_h), 0), height - crop_h)
    return left, top, crop_w, crop_h


@dataclass(frozen=True)
class CloseUp:
    """Where a close-up is cropped from the wide frame, and which part of that crop is its person's."""
    rect: tuple[int, int, int, int]
    own: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the crop; the rest would show a neighbour or the
    # stage between panels, so it becomes the pillarbox


def close_up(face: tuple, size: tuple[int, int], others: tuple = (), region: tuple | None = None) -> CloseUp:
    """The close-up of a face with `others` beside it and `region` its panel (None: the whole picture):
    framed as `close_up_rect` when that shows only this person's part of the picture; else zoomed into
    that part when the face still fits with room around it; else that part, pillarboxed
    (`close_up_frame`). A person's part: their panel, up to halfway to the nearest face either side.
    """
    width, height = size
    lo, hi = _own_span(face, others, width)
    rx0, ry0, rx1, ry1 = region or (0, 0, width, height)
    part = (max(lo, rx0), ry0, min(hi, rx1), ry1)
    rect = close_up_rect(face, size)
    x, y, w, h = rect
    if part[0] <= x and x + w <= part[2] and part[1] <= y and y + h <= part[3]:
        return CloseUp(rect, (0, 0, w, h))
    tighter = _part_rect(face, size, part)
    if tighter is not None:
        return CloseUp(tighter, (0, 0, tighter[2], tighter[3]))
    own = (min(max(math.ceil(part[0]) - x, 0), w), min(max(math.ceil(part[1]) - y, 0), h),
           max(min(math.floor(part[2]) - x, w), 0), max(min(math.floor(part[3]) - y, h), 0))
    return CloseUp(rect, own)


def _part_rect(face: tuple, size: tuple[int, int], part: tuple) -> tuple[int, int, int, int] | None:
    """A frame-shaped crop inside `part` (x0, y0, x1, y1), around the face with at least OWN_ROOM face
    heights of picture, enlarged at most MAX_ZOOM times; None when none fits."""
    width, height = size
    x, y, w, h = face
    x0, y0, x1, y1 = math.ceil(part[0]), math.ceil(part[1]), math.floor(part[2]), math.floor(part[3])
    crop_w = min(x1 - x0, round((y1 - y0) * width / height), width)
    crop_h = round(crop_w * height / width)
    if crop_h < max(h * OWN_ROOM, height / MAX_ZOOM) or crop_h > y1 - y0:
        return None
    left = min(max(round(x + w / 2 - crop_w / 2), x0), x1 - crop_w)
    top = min(max(round(y + h / 2 - FACE_LEVEL * crop_h), y0), y1 - crop_h)
    return left, top, crop_w, crop_h


def _own_span(face: tuple, others: tuple, width: int) -> tuple[float, float]:
    """The columns that belong to this face: up to halfway to the nearest face on either side."""
    x, _, w, _ = face
    lo, hi = 0.0, float(width)
    for ox, _, ow, _ in others:
        if ox >= x + w:
            hi = min(hi, (x + w + ox) / 2)
        elif ox + ow <= x:
            lo = max(lo, (ox + ow + x) / 2)
    return lo, hi


def close_up_frame(frame: np.ndarray, shot: CloseUp, size: tuple[int, int],
                   background: np.ndarray | None = None) -> np.ndarray:
    """The close-up picture at the video size. Parts that would show a neighbour (or the stage between
    panels) are a pillarbox in the `background` colour (default: the person's picture's edge colour,
    darkened), blended into the picture over a few percent of the width: no neighbour, no hard edge."""
    import cv2

    x, y, w, h = shot.rect
    crop = np.ascontiguousarray(frame[y:y + h, x:x + w])
    a0, b0, a1, b1 = shot.own
    if (a0, b0, a1, b1) == (0, 0, w, h):
        return cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC)
    width, height = size
    left, top = round(a0 * width / w), round(b0 * height / h)
    right, bottom = max(round(a1 * width / w), left + 1), max(round(b1 * height / h), top + 1)
    own = np.ascontiguousarray(crop[b0:max(b1, b0 + 1), a0:max(a1, a0 + 1)])
    sharp = cv2.resize(own, (right - left, bottom - top), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    if background is None:
        edge = max(1, min(sharp.shape[:2]) // 20)
        rim = np.concatenate([sharp[:, :edge].reshape(-1, 3), sharp[:, -edge:].reshape(-1, 3)])
        background = rim.mean(axis=0) * PILLARBOX_LEVEL
    picture = np.empty((height, width, 3), np.float32)
    picture[:] = background
    ramp = max(2, round(width * FEATHER))
    weight = np.ones((bottom - top, right - left), np.float32)
    for inner, edges_at, axis in ((left > 0, "start", 1), (right < width, "end", 1),
                                  (top > 0, "start", 0), (bottom < height, "end", 0)):
        if not inner:
            continue
        length = weight.shape[axis]
        fade = np.minimum(np.arange(length, dtype=np.float32) / ramp, 1.0)
        if edges_at == "end":
            fade = fade[::-1]
        weight *= fade[None, :] if axis == 1 else fade[:, None]
    picture[top:bottom, left:right] = weight[..., None] * sharp + (1 - weight[..., None]) * np.asarray(background)
    return np.clip(picture.round(), 0, 255).astype(np.uint8)


def stage_background(frame: np.ndarray, regions: dict) -> np.ndarray | None:
    """The colour of the stage between the panels (the composed stage's background); None when the
    panels cover the picture (a given stage image)."""
    outside = np.ones(frame.shape[:2], bool)
    for x0, y0, x1, y1 in regions.values():
        outside[int(y0):int(y1), int(x0):int(x1)] = False
    if outside.sum() < 0.01 * outside.size:
        return None
    return np.median(frame[outside].astype(np.float32), axis=0)


def video_size(video: Path) -> tuple[int, int]:
    from talkstudio.assemble import probe

    found = re.search(r"Video: .*?, (\d{2,5})x(\d{2,5})", probe(video)["report"])
    if not found:
        raise InputError(Problem("no video stream found", file=Path(video), hint="give an mp4 made by talkstudio render"))
    return int(found[1]), int(found[2])


def cut_video(video: Path, shots: list[Shot], programme: Programme, target: Path,
              aspect: tuple[int, int] | None = None, captions=None) -> None:
    """Write the cut: the wide frames, or close-ups cropped from them, re-encoded; audio and subtitles
    copied. With `aspect`, each shot is reframed to it around whoever it shows or who speaks in it,
    and the `captions` (an ASS file made for that size) are burned in."""
    from talkstudio.assemble import FrameSink, read_frames

    size = video_size(video)
    close_ups = {(k, name): close_up(box, size, tuple(other for who, other in scene.faces.items() if who != name),
                                     scene.regions.get(name))
                 for k, scene in enumerate(programme.scenes) for name, box in scene.faces.items()}
    backgrounds: dict[int, np.ndarray | None] = {}
    width = reframed_width(size, aspect) if aspect else size[0]
    picture = target.with_name(f".{target.stem}.picture.mp4")
    sink = FrameSink(picture, programme.fps, (width, size[1]))
    shown, left, current = 0, 0, None
    try:
        for frame, shot in zip(read_frames(video, size), _shot_per_frame(shots)):
            scene = programme.scene_at(shown)
            if scene not in backgrounds:  # the stage between panels does not move: one look per scene
                backgrounds[scene] = stage_background(frame, programme.scenes[scene].regions)
            if shot.close is not None:
                frame = close_up_frame(frame, close_ups[(scene, shot.close)], size, backgrounds[scene])
            if aspect:
                if shot is not current:
                    left = _reframe_left(shot, programme, close_ups, size, width)
                    current = shot
                frame = np.ascontiguousarray(frame[:, left:left + width])
            sink.write(frame)
            shown += 1
        if shown != programme.frames:
            raise InputError(Problem(f"the video has {shown} frames but its cues.json says {programme.frames}",
                                     file=Path(video), hint="render it again: the video and its folder do not match"))
    except BaseException:
        sink.abort()
        raise
    sink.close()
    try:
        if captions is not None:
            from talkstudio.assemble import burn_in

            burn_in(picture, captions, work_folder(video))
        _mux(picture, video, target)
    finally:
        picture.unlink(missing_ok=True)


def reframed_width(size: tuple[int, int], aspect: tuple[int, int]) -> int:
    """The width of a full-height crop of the given aspect (even, for H.264), at most the video's."""
    width, height = size
    return min(round(height * aspect[0] / aspect[1] / 2) * 2, width - width % 2)


def _reframe_left(shot: Shot, programme: Programme, close_ups: dict, size: tuple[int, int], width: int) -> int:
    """Where a reframed shot's crop starts: centred on the face it shows, or on who speaks in it."""
    scene_index = programme.scene_at(shot.start)
    scene = programme.scenes[scene_index]
    if shot.close is not None:
        x, _, w, _ = close_ups[(scene_index, shot.close)].rect
        fx, _, fw, _ = scene.faces[shot.close]
        centre = (fx + fw / 2 - x) * size[0] / w  # where the face is in the close-up picture
    else:  # the one who speaks most in the shot: two far apart do not fit one narrow picture
        spoken: dict[str, int] = {}
        for turn in programme.turns:
            if turn.speaker in scene.faces:
                spoken[turn.speaker] = spoken.get(turn.speaker, 0) + max(
                    min(turn.end, shot.end) - max(turn.start, shot.start), 0)
        speaker = max(spoken, key=spoken.get) if spoken and max(spoken.values()) > 0 else None
        boxes = [scene.faces[speaker]] if speaker else list(scene.faces.values())
        centre = float(np.mean([x + w / 2 for x, _, w, _ in boxes])) if boxes else size[0] / 2
    return int(min(max(round(centre - width / 2), 0), size[0] - width))


def _shot_per_frame(shots: list[Shot]):
    for shot in shots:
        for _ in range(shot.start, shot.end):
            yield shot


def _mux(picture: Path, source: Path, target: Path) -> None:
    """The cut picture with the source's audio and subtitle tracks, as they are; target appears complete."""
    from talkstudio.assemble import EncodeError
    from talkstudio.audio_io import ffmpeg_exe

    from talkstudio.cache import temp_prefix

    temp = target.with_name(f"{temp_prefix(target)}mux.part")
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(picture),
                             "-i", str(source), "-map", "0:v", "-map", "1:a?", "-map", "1:s?", "-c", "copy",
                             "-movflags", "+faststart", "-f", "mp4", str(temp)], capture_output=True, check=False)
    try:
        if result.returncode != 0:
            raise EncodeError(f"ffmpeg failed: {result.stderr.decode(errors='replace').strip()[-600:]}")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


# --- the command ------------------------------------------------------------------------------

@dataclass
class EditResult:
    target: Path
    edl: Path
    shots: list[Shot]
    decided: bool  # the cut was decided here (else read from the given EDL)
    timelines: list[Path] = field(default_factory=list)  # .otio, CMX 3600 .edl, FCP 7 .xml


def default_edl(video: Path) -> Path:
    return Path(video).with_suffix(".edl.txt")


def default_cut(video: Path) -> Path:
    return Path(video).with_name(f"{Path(video).stem}.cut.mp4")


def edit_video(video: Path, target: Path | None = None, edl: Path | None = None,
               settings: EditSettings = EditSettings(), overwrite: bool = False) -> EditResult:
    """Cut a rendered video: decide the shots and write the EDL beside it, or apply an edited EDL."""
    video = Path(video)
    programme = load_programme(video)
    target = Path(target) if target else default_cut(video)
    from talkstudio.outputs import refuse_inputs_as_outputs, require_suffix

    from talkstudio.outputs import SUBTITLE_KINDS

    require_suffix(target, (".mp4",))
    folder = video.with_suffix("")
    sidecars = {kind: (video.with_suffix(f".{kind}"), target.with_suffix(f".{kind}")) for kind in SUBTITLE_KINDS}
    timeline_paths = [target.with_suffix(suffix) for suffix in TIMELINE_FORMATS]
    if edl is not None:  # an edited timeline applied again is read, never written over
        timeline_paths = [path for path in timeline_paths if path.resolve() != Path(edl).resolve()]
    refuse_inputs_as_outputs([target, *(made for _, made in sidecars.values()), *timeline_paths],
                             [video, edl, default_edl(video), folder / "cues.json", folder / "stages.json",
                              *(source for source, _ in sidecars.values())])
    if edl is not None:
        shots, decided = read_edl(edl, programme), False
    else:
        shots, decided, edl = decide_shots(programme, settings), True, default_edl(video)
        _write_edl(edl, edl_text(shots, programme, video), overwrite)
    captions = None
    if settings.aspect:
        captions = _reframed_captions(video, programme, settings)
    try:
        cut_video(video, shots, programme, target, settings.aspect, captions)
        _write_sidecars(sidecars, captions)
    finally:
        if captions is not None:
            captions.ass.unlink(missing_ok=True)
    timelines = [] if settings.aspect else write_timelines(video, shots, programme, target, timeline_paths)
    return EditResult(target, Path(edl), shots, decided, timelines)


# --- the cut for editors: OpenTimelineIO, and through its adapters a CMX 3600 EDL and FCP 7 XML ------

TIMELINE_FORMATS = {".otio": "otio_json", ".edl": "cmx_3600", ".xml": "fcp_xml"}


def write_timelines(video: Path, shots: list[Shot], programme: Programme, target: Path,
                    paths: list[Path]) -> list[Path]:
    """The cut as an OpenTimelineIO timeline beside it (TARGET.otio), and through OTIO's adapters a
    CMX 3600 EDL (TARGET.edl) and an FCP 7 XML (TARGET.xml) that Resolve and Premiere import. Its
    sources are the wide render and one video per close-up camera (TARGET/close-NAME.mp4: that
    character's close-up wherever they are on stage, the wide shot elsewhere), so an editor can
    move every cut."""
    import opentimelineio as otio

    from talkstudio.outputs import claim_folder

    folder = target.with_suffix("")
    claim_folder(folder, "edit", [video])
    sources = {None: Path(video).resolve()}
    for name in sorted({n for shot in shots if shot.close for n in [shot.close]}):
        sources[name] = (folder / f"close-{name}.mp4").resolve()
        camera_video(video, programme, name, sources[name])
    timeline = _timeline(video, shots, programme, sources, otio)
    for path in paths:
        otio.adapters.write_to_file(timeline, str(path), adapter_name=TIMELINE_FORMATS[path.suffix])
    return paths


def _timeline(video: Path, shots: list[Shot], programme: Programme, sources: dict, otio):
    rate = programme.fps
    whole = otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(programme.frames, rate))
    timeline = otio.schema.Timeline(name=Path(video).stem, global_start_time=otio.opentime.RationalTime(0, rate))
    pictures = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for shot in shots:
        reel = "WIDE" if shot.close is None else f"CU_{shot.close}".upper()[:8]  # CMX 3600: 8 characters
        pictures.append(otio.schema.Clip(
            name=shot.camera,
            media_reference=otio.schema.ExternalReference(target_url=sources[shot.close].as_uri(), available_range=whole),
            source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(shot.start, rate),
                                                 otio.opentime.RationalTime(shot.end - shot.start, rate)),
            metadata={"talkstudio": {"camera": shot.camera}, "cmx_3600": {"reel": reel}}))
    sound = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    sound.append(otio.schema.Clip(name="mix", source_range=whole, metadata={"cmx_3600": {"reel": "WIDE"}},
                                  media_reference=otio.schema.ExternalReference(target_url=sources[None].as_uri(),
                                                                                available_range=whole)))
    timeline.tracks.extend([pictures, sound])
    return timeline


def camera_video(video: Path, programme: Programme, name: str, target: Path) -> None:
    """The close-up camera on one character for the whole video: their close-up where they are on stage,
    the wide shot elsewhere."""
    shots = []
    for scene in programme.scenes:
        shots.append(Shot(scene.start, scene.end, name if name in scene.faces else None))
    if shots and shots[-1].end < programme.frames:  # frames past the last scene (padding): wide
        shots.append(Shot(shots[-1].end, programme.frames))
    cut_video(video, [shot for shot in shots if shot.end > shot.start], programme, target)


def timeline_edl_text(file: Path) -> str:
    """An OpenTimelineIO timeline (.otio) read back as our decision list, one shot a line."""
    import opentimelineio as otio

    try:
        timeline = otio.adapters.read_from_file(str(file))
    except Exception as error:  # noqa: BLE001 - whatever the adapter raises, the file is not a timeline
        raise InputError(Problem(f"not an OpenTimelineIO timeline: {error}", file=Path(file),
                                 hint="give the .otio written by `talkstudio edit`, or a decision list")) from None
    rows = []
    for clip in timeline.video_tracks()[0].find_clips() if timeline.video_tracks() else []:
        placed = clip.range_in_parent()
        rate = placed.start_time.rate
        camera = clip.metadata.get("talkstudio", {}).get("camera", clip.name)
        start, end = placed.start_time.value / rate, placed.end_time_exclusive().value / rate
        rows.append(f"{start:.6f}  {end:.6f}  {camera}")
    return "\n".join(rows) + "\n"


def _write_sidecars(sidecars: dict, captions) -> None:
    """The render's subtitles beside the cut (its timeline is the render's); a reframed cut's .ass is
    the captions laid out for its shape."""
    from talkstudio.cache import atomic_write

    for kind, (source, made) in sidecars.items():
        chosen = captions.ass if kind == "ass" and captions is not None else source
        if chosen.is_file():
            with atomic_write(made, "wb") as f:
                f.write(chosen.read_bytes())


# captions' distance from the top: below the apps' tabs, above the faces (a reframed close-up has the face
# from about 16% to 74% of the height, and the bottom fifth holds the apps' buttons and descriptions)
ASPECT_TOP = {(9, 16): 0.11, (4, 5): 0.06, (1, 1): 0.05}


def _reframed_captions(video: Path, programme: Programme, settings: EditSettings):
    """The subtitles as captions to burn at the reframed size, in the safe area (assemble.Burn);
    None without subtitles."""
    from dataclasses import replace

    from talkstudio.assemble import Burn
    from talkstudio.subtitles import Layout, events_of
    from talkstudio.subtitles.fonts import burn_font, font_folders
    from talkstudio.subtitles.formats import to_ass
    from talkstudio.subtitles.rules import rules_from

    cues = json.loads((work_folder(video) / "cues.json").read_text())
    if not cues.get("cues") or "subtitles" not in cues:
        return None
    size = video_size(video)
    height, width = size[1], reframed_width(size, settings.aspect)
    rules = rules_from(cues["subtitles"], cues["language"], programme.fps)
    # as many characters a line as fit the narrower picture at the same size of letters
    rules = replace(rules, captions=settings.captions or "pop",
                    max_chars=max(12, min(rules.max_chars, round(rules.max_chars * width / (height * 16 / 9)))))
    text = " ".join(c["text"] for c in cues["cues"]) + " " + " ".join(s["name"] for s in cues["speakers"])
    font = burn_font(text, rules.font)
    layout = Layout([(s["id"], s["name"]) for s in cues["speakers"]], (width, height), rules, font.family,
                    top=ASPECT_TOP.get(tuple(settings.aspect), 0.05))
    path = work_folder(video) / f"captions-{settings.aspect[0]}x{settings.aspect[1]}.ass"
    path.write_text(to_ass(events_of(cues, rules), layout), encoding="utf-8")
    return Burn(path, font_folders(font))


def _write_edl(path: Path, text: str, overwrite: bool) -> None:
    """Write the decided EDL, unless that would throw away a different one (perhaps edited by hand)."""
    if path.exists() and path.read_text(encoding="utf-8") != text and not overwrite:
        raise InputError(Problem("an edit decision list with other shots is already here (edited by you?)",
                                 file=path, hint=f"apply it with --edl {path}, or --overwrite to replace it "
                                                 f"with a fresh automatic edit"))
    path.write_text(text, encoding="utf-8")
