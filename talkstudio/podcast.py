"""Recorded episodes: one recording per host becomes a talking video.

    cast file + recordings -> speech probability per 32 ms of each (Silero VAD, cached per recording)
      -> speech regions per track: bleed given to its source, short gaps merged, blips dropped
      -> each track gated to its regions (pieces of the recording at the timeline rate, in the cache)
      -> a one-scene Timeline of the gated tracks: they drive the picture (stage, chunks as for a screenplay)
      -> the soundtrack: the recordings whole (default) or the gated tracks at the episode's loudness,
         or the user's mastered file as it is
      -> subtitles only from a transcript (transcript.py); without one, no text at all

Bleed: each microphone also hears the other hosts, a little later and quieter, and the VAD calls
that speech too. Where two tracks are active at once, their level envelopes are compared over a
short neighbourhood: a copy follows its source (correlation at least `bleed_correlation`) at a
steady distance. The quieter track loses those moments when it is more than `bleed_db` quieter;
at a smaller distance the moment stays with the track whose speech began first. Two people
speaking at once are not copies of each other (their envelopes do not follow), so both keep it.

Every recording is read through an ffmpeg pipe, block by block: once at 16 kHz for the VAD, once
at the timeline rate for the gated pieces, and once more for a `recorded` soundtrack. Nothing holds
a whole recording, so memory stays flat however long the episode is (the per-window arrays are
8 bytes per 32 ms).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from talkstudio import manifest
from talkstudio.audio_io import audio_rate, decode_blocks
from talkstudio.cache import Cache, atomic_write, content_key, file_digest
from talkstudio.checks import screenplay_from_data
from talkstudio.errors import InputError, Problem
from talkstudio.generators import frame_rate
from talkstudio.loudness import Loudness
from talkstudio.progress import Reporter
from talkstudio.screenplay import Screenplay
from talkstudio.sourcemap import load_yaml
from talkstudio.speech import Clip, store_clip
from talkstudio.timeline import Cue, FrameClock, Timeline, cues_document, recorded_timeline, write_timeline
from talkstudio.vad import RATE as VAD_RATE, WINDOW, SileroVad, VadUnavailable, model_identity

PODCAST_FORMAT = 1  # bump when stored analyses or pieces change
WINDOW_S = WINDOW / VAD_RATE
SILENT_DB = -100.0  # the level of digital silence
ANALYSIS_BLOCK = 30 * VAD_RATE  # samples decoded at a time for the VAD
PIECE_BLOCK = 1 << 18  # samples decoded at a time at the timeline rate
PIECE_S = 20.0  # longest stored piece: a block of the timeline loads whole pieces
FADE_S = 0.005  # at each region's edges, so the gate does not click
MIN_COMPARED = 4  # windows needed to call two envelopes copies of each other
EPISODE_SCENE = "episode"
SCENE_KEYS = ("stage", "background", "prompt", "faces")  # the cast file's picture settings, a scene's fields
Regions = dict[str, list[tuple[float, float]]]  # host -> detected speech, seconds
RECORDED, GATED = "recorded", "gated"  # the soundtrack: the recordings as they are, or only their detected speech
SOUNDTRACK_MISMATCH_S = 1.0  # a mixed soundtrack this much longer or shorter than the recordings is told
CAST_EXAMPLE = "e.g.\n      cast:\n        ana: {name: Ana, image: ana.png}\n        ben: {name: Ben, image: ben.png}"


class Detection(BaseModel):
    """How speech is found in the recordings (the cast file's `detection:`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    threshold: float = Field(0.5, gt=0, lt=1, description="speech probability at which speech starts")
    release: float = Field(0.35, gt=0, lt=1, description="probability under which speech ends (below threshold)")
    edge_db: float = Field(30.0, ge=0, le=120, description="a region's edges quieter than its loudest 32 ms by "
                                                           "more than this (dB) are trimmed: the VAD lets go late")
    pad: float = Field(0.03, ge=0, le=1, description="seconds added before and after each region")
    min_gap: float = Field(0.3, ge=0, le=10, description="a host's pauses shorter than this (s) do not split a region")
    min_speech: float = Field(0.25, ge=0, le=10, description="regions shorter than this (s) are dropped")
    bleed_db: float = Field(6.0, ge=0, le=60, description="a copy this much quieter (dB) than its source is bleed")
    bleed_correlation: float = Field(0.8, gt=0, le=1, description="envelope correlation at which two tracks hear "
                                                                     "the same sound")
    bleed_window: float = Field(0.5, ge=0.1, le=5, description="seconds of envelope compared around each moment")
    bleed_steady_db: float = Field(3.0, ge=0, le=20, description="next to a copy, a moment whose level difference "
                                                                "stays this close (dB) to the copy's is a copy too")


@dataclass
class Analysis:
    """One recording as the VAD hears it: one value per 32 ms window at 16 kHz."""

    probabilities: np.ndarray
    levels: np.ndarray  # dB RMS
    samples: int  # at 16 kHz

    @property
    def duration(self) -> float:
        return self.samples / VAD_RATE


@dataclass
class PodcastResult:
    target: Path
    work_dir: Path
    cues: dict  # the cues.json document
    regions: Regions
    subtitles: dict[str, Path]  # empty without a transcript
    chunks: int = 0
    chunks_cached: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    up_to_date: bool = False  # nothing was done: the outputs already matched their inputs


def _vad_identity() -> dict | None:
    try:
        return model_identity()
    except VadUnavailable:  # told where the episode is checked
        return None


def _finished_podcast(target: Path, work_dir: Path) -> PodcastResult:
    """The result of an earlier run whose outputs are up to date, read back from its work folder."""
    cues = json.loads((work_dir / "cues.json").read_text())
    regions: Regions = {speaker["id"]: [] for speaker in cues["speakers"]}
    for cue in cues["cues"]:
        regions[cue["speaker"]].append((cue["start"], cue["end"]))
    subtitles = {kind: target.with_suffix(f".{kind}") for kind in ("srt", "vtt", "ass")
                 if target.with_suffix(f".{kind}").exists() and any(cue["text"] for cue in cues["cues"])}
    return PodcastResult(target, work_dir, cues, regions, subtitles, up_to_date=True)


# --- the cast file and the tracks --------------------------------------------------------------

@dataclass
class Episode:
    screenplay: Screenplay  # one scene, the tracks on stage left to right
    detection: Detection
    tracks: list[tuple[str, Path]]  # the command's --track options, else the file's tracks:
    transcript: Path | None  # the command's --transcript, else the file's transcript:
    soundtrack: str | Path = RECORDED  # RECORDED, GATED or a mixed file: what the video's audio is


def load_cast(file: Path, tracks: list[tuple[str, Path]], transcript: Path | None = None,
              soundtrack: str | None = None) -> Episode:
    """The episode from its cast file (which may list its own `tracks:`, `transcript:` and `soundtrack:`,
    paths relative to the file) and the command's options; every problem raised together."""
    file = Path(file)
    data, source = load_yaml(file)
    if not isinstance(data, dict):
        raise InputError(Problem("a cast file is a mapping with cast: (and optionally tracks:, transcript:, soundtrack:, "
                                 "title:, video:, audio:, stage:, background:, detection:)", file=file,
                                 hint=CAST_EXAMPLE))
    if "scenes" in data:
        raise InputError(source.problem(("scenes",), "a podcast's cast file has no scenes: the recordings are "
                                        "the episode", "remove scenes:, or render the file with `talkstudio render`",
                                        prefer_key=True))
    problems: list[Problem] = []
    listed = _gathered(problems, _file_tracks, data.pop("tracks", None), source, file) or []
    tracks = tracks or listed
    written = data.pop("transcript", None)
    if transcript is None and written is not None:
        if not isinstance(written, str):
            problems.append(source.problem(("transcript",), "transcript is a file name", "e.g. transcript: episode.srt"))
        else:
            transcript = (file.parent / written).expanduser()
    written = data.pop("soundtrack", None)
    if soundtrack is None and written is not None and not isinstance(written, str):
        problems.append(source.problem(("soundtrack",), "soundtrack is recorded, gated or an audio file",
                                       "e.g. soundtrack: episode-master.wav"))
    chosen = _soundtrack(soundtrack, Path.cwd()) if soundtrack is not None else (
        _soundtrack(written, file.parent) if isinstance(written, str) else RECORDED)
    detection = _gathered(problems, _detection, data.pop("detection", None) or {}, source)
    _gathered(problems, _check_tracks, tracks, data.get("cast"), file)
    scene = {key: data.pop(key) for key in SCENE_KEYS if key in data}
    _move_places(source, SCENE_KEYS, ("scenes", 0))
    data["scenes"] = [{"id": EPISODE_SCENE, **scene, "cast": [name for name, _ in tracks],
                       "lines": [{"speaker": name, "text": f"(recorded in {path.name})"} for name, path in tracks]}]
    screenplay = _gathered(problems, screenplay_from_data, data, source, file)
    # the made-up scene's cast and lines are the tracks, whose problems _check_tracks has told already
    problems = [_unscened(p) for p in problems if not (p.field or "").startswith(("scenes[0].cast", "scenes[0].lines"))]
    if transcript is not None and not transcript.is_file():
        problems.append(Problem(f"transcript {transcript}: no such file", hint="an SRT, VTT, ASS or 'Name: text' file"))
    if isinstance(chosen, Path) and not chosen.is_file():
        problems.append(Problem(f"soundtrack {chosen}: no such file",
                                hint=f"an audio file (the episode's mix), or {RECORDED} or {GATED}"))
    if problems:
        raise InputError(problems)
    return Episode(screenplay, detection, tracks, transcript, chosen)


def _soundtrack(value: str, folder: Path) -> str | Path:
    return value if value in (RECORDED, GATED) else (folder / value).expanduser()


def _file_tracks(listed, source, file: Path) -> list[tuple[str, Path]]:
    """`tracks: {ana: ana.wav, ...}` of a cast file, paths relative to it."""
    if listed is None:
        return []
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        raise InputError(source.problem(("tracks",), "tracks maps each host's cast id to a recording",
                                        "e.g. tracks: {ana: ana.wav, ben: ben.flac}"))
    return [(str(name), (file.parent / path).expanduser()) for name, path in listed.items()]


def _gathered(problems: list[Problem], check, *args):
    """`check(*args)`, its problems added to `problems` instead of raised."""
    try:
        return check(*args)
    except InputError as error:
        problems += error.problems
        return None


def _detection(values, source) -> Detection:
    try:
        return Detection.model_validate(values)
    except ValidationError as error:
        raise InputError([source.problem(("detection", *item["loc"]), item["msg"].removeprefix("Value error, "),
                                         "see the Podcasts section of the README for the settings")
                          for item in error.errors(include_url=False)]) from None


def _check_tracks(tracks: list[tuple[str, Path]], cast, file: Path) -> None:
    problems = []
    if not tracks:
        problems.append(Problem("no recordings given", hint="add --track NAME=FILE per host (e.g. -t ana=ana.wav), "
                                                            "or tracks: {ana: ana.wav, ...} to the cast file"))
    ids = list(cast) if isinstance(cast, dict) else None
    seen = set()
    for name, path in tracks:
        if ids is not None and name not in ids:
            problems.append(Problem(f"track {name}={path}: '{name}' is not in the cast of {file} "
                                    f"(cast: {', '.join(map(str, ids))})",
                                    hint="name a cast id before '=', or add it under cast: in the cast file"))
        if name in seen:
            problems.append(Problem(f"track {name} is given twice", hint="one recording per cast member"))
        seen.add(name)
        if not path.is_file():
            problems.append(Problem(f"track {name}={path}: " + ("is a folder" if path.is_dir() else "no such file"),
                                    hint="give the recording's path (--track: relative to the current folder; "
                                         "tracks: in the cast file: relative to that file)"))
    if problems:
        raise InputError(problems)


def _move_places(source, keys: tuple[str, ...], to: tuple) -> None:
    """Point a scene's fields at the cast file's top-level keys they came from, so problems name their line."""
    for table in (source.values, source.keys, source.raw):
        for path in [p for p in table if p[:1] and p[0] in keys]:
            table[to + path] = table[path]


def _unscened(problem: Problem) -> Problem:
    """A problem in the made-up scene, named as the cast file's own field."""
    prefix = "scenes[0]."
    if problem.field and problem.field.startswith(prefix):
        return replace(problem, field=problem.field[len(prefix):])
    return problem


def parse_tracks(pairs: list[str]) -> list[tuple[str, Path]]:
    """NAME=FILE options, in order."""
    tracks = []
    for pair in pairs:
        name, equals, file = pair.partition("=")
        if not equals or not name.strip() or not file.strip():
            raise InputError(Problem(f"--track {pair!r} is not NAME=FILE", hint="e.g. --track ana=recordings/ana.wav"))
        tracks.append((name.strip(), Path(file.strip()).expanduser()))
    return tracks


# --- speech detection ------------------------------------------------------------------------

def analyse(path: Path, cache: Cache) -> Analysis:
    """Speech probability and level of every 32 ms of a recording, cached by the recording's content."""
    key = content_key({"format": PODCAST_FORMAT, "recording": file_digest(path), **model_identity()})
    stored = cache.lookup("vad", key, ".npz")
    if stored is not None:
        with np.load(stored) as saved:
            return Analysis(saved["probabilities"], saved["levels"], int(saved["samples"]))
    analysis = _analyse_stream(path)
    buffer = io.BytesIO()
    np.savez(buffer, probabilities=analysis.probabilities, levels=analysis.levels, samples=np.int64(analysis.samples))
    with atomic_write(cache.path("vad", key, ".npz"), sealed=True) as f:
        f.write(buffer.getvalue())
    return analysis


def _analyse_stream(path: Path) -> Analysis:
    vad = SileroVad()
    probabilities, levels, pending, samples = [], [], np.zeros(0, np.float32), 0
    for block in decode_blocks(path, VAD_RATE, ANALYSIS_BLOCK):
        samples += len(block)
        pending = np.concatenate([pending, block])
        whole = len(pending) // WINDOW * WINDOW
        windows = pending[:whole].reshape(-1, WINDOW)
        probabilities.append(vad.probabilities(windows))
        levels.append(_levels_db(windows))
        pending = pending[whole:]
    if len(pending):  # the recording's last few ms, judged as a window padded with silence
        last = np.pad(pending, (0, WINDOW - len(pending)))[None]
        probabilities.append(vad.probabilities(last))
        levels.append(_levels_db(last))
    if not samples:
        raise InputError(Problem("the recording holds no audio", file=path, hint="export it again"))
    return Analysis(np.concatenate(probabilities), np.concatenate(levels), samples)


def _levels_db(windows: np.ndarray) -> np.ndarray:
    power = np.mean(windows.astype(np.float64) ** 2, axis=1)
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), SILENT_DB).astype(np.float32)


def speech_regions(analyses: dict[str, Analysis], settings: Detection) -> Regions:
    """Each track's speech in seconds: the VAD's decisions, bleed given to its source, gaps merged, blips dropped."""
    count = max(len(a.probabilities) for a in analyses.values())
    active = np.stack([_hysteresis(_padded(a.probabilities, count, 0.0), settings.threshold, settings.release)
                       for a in analyses.values()])
    levels = np.stack([_padded(a.levels, count, SILENT_DB) for a in analyses.values()])
    own = active & ~_bleed(active, levels, settings)
    return {name: _regions(own[i], levels[i], settings, analysis.duration)
            for i, (name, analysis) in enumerate(analyses.items())}


def _padded(values: np.ndarray, count: int, fill: float) -> np.ndarray:
    return np.pad(values, (0, count - len(values)), constant_values=fill)


def _hysteresis(probabilities: np.ndarray, on: float, off: float) -> np.ndarray:
    """Speech from a window at `on` until one below `off` (Silero's own rule): no flicker inside a word."""
    speaking, found = False, np.zeros(len(probabilities), bool)
    for i, p in enumerate(probabilities.tolist()):
        speaking = p >= on or (speaking and p >= off)
        found[i] = speaking
    return found


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _onsets(mask: np.ndarray) -> np.ndarray:
    """For every window, where the run of True it belongs to began."""
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    return np.maximum.accumulate(np.where(starts, np.arange(len(mask)), 0))


def _bleed(active: np.ndarray, levels: np.ndarray, settings: Detection) -> np.ndarray:
    """(tracks, windows): the moments each track hears only another track's speech."""
    bleed = np.zeros_like(active)
    onsets = [_onsets(track) for track in active]
    half = max(1, round(settings.bleed_window / 2 / WINDOW_S))
    for i, j in combinations(range(len(active)), 2):
        for lo, hi in _runs(active[i] & active[j]):
            copy, difference = _copies(levels[i, lo:hi], levels[j, lo:hi], half, settings.bleed_correlation)
            copy, difference = _widened(copy, difference, levels[i, lo:hi] - levels[j, lo:hi], settings.bleed_steady_db)
            a, b = onsets[i][lo:hi], onsets[j][lo:hi]
            earlier = (a < b) | ((a == b) & (difference >= 0))
            i_owns = np.where(np.abs(difference) > settings.bleed_db, difference > 0, earlier)
            bleed[j, lo:hi] |= copy & i_owns
            bleed[i, lo:hi] |= copy & ~i_owns
    return bleed


def _copies(a_db: np.ndarray, b_db: np.ndarray, half: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per window, over its neighbourhood inside this stretch: whether the two level envelopes follow each
    other (correlation of amplitudes at least `threshold`), and the mean level difference a - b in dB."""
    a, b = 10 ** (a_db.astype(np.float64) / 20), 10 ** (b_db.astype(np.float64) / 20)
    length = len(a)
    lo = np.maximum(np.arange(length) - half, 0)
    hi = np.minimum(np.arange(length) + half + 1, length)

    def window_sum(values: np.ndarray) -> np.ndarray:
        total = np.concatenate([[0.0], np.cumsum(values)])
        return total[hi] - total[lo]

    n = hi - lo
    sa, sb = window_sum(a), window_sum(b)
    covariance = n * window_sum(a * b) - sa * sb
    spread = np.sqrt(np.maximum(n * window_sum(a * a) - sa * sa, 0) * np.maximum(n * window_sum(b * b) - sb * sb, 0))
    correlation = np.divide(covariance, spread, out=np.zeros(length), where=spread > 0)
    difference = window_sum(a_db.astype(np.float64) - b_db) / n
    return (correlation >= threshold) & (n >= MIN_COMPARED), difference


def _widened(copy: np.ndarray, smooth: np.ndarray, raw: np.ndarray, steady_db: float):
    """Copies found over a neighbourhood stop short of where the other voice really starts: grow each
    stretch window by window while the level difference stays within `steady_db` of the stretch's own."""
    copy, smooth = copy.copy(), smooth.copy()
    for lo, hi in _runs(copy):
        reference = float(np.median(raw[lo:hi]))
        while lo > 0 and not copy[lo - 1] and abs(raw[lo - 1] - reference) <= steady_db:
            lo -= 1
        while hi < len(copy) and not copy[hi] and abs(raw[hi] - reference) <= steady_db:
            hi += 1
        copy[lo:hi], smooth[lo:hi] = True, np.where(copy[lo:hi], smooth[lo:hi], reference)
    return copy, smooth


def _regions(own: np.ndarray, levels: np.ndarray, settings: Detection, duration: float) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for lo, hi in _runs(own):
        lo, hi = _trimmed(levels, lo, hi, settings.edge_db)
        start, end = max(lo * WINDOW_S - settings.pad, 0.0), min(hi * WINDOW_S + settings.pad, duration)
        if merged and start - merged[-1][1] < settings.min_gap:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(round(start, 4), round(end, 4)) for start, end in merged if end - start >= settings.min_speech]


def _trimmed(levels: np.ndarray, lo: int, hi: int, edge_db: float) -> tuple[int, int]:
    """The run without its edge windows that are more than `edge_db` under the run's loudest."""
    loud = np.flatnonzero(levels[lo:hi] >= levels[lo:hi].max() - edge_db)
    return lo + int(loud[0]), lo + int(loud[-1]) + 1


def detect_speech(tracks: list[tuple[str, Path]], settings: Detection, cache: Cache,
                  reporter: Reporter) -> tuple[Regions, float]:
    """Each track's speech regions, and the longest recording's duration in seconds."""
    analyses = {}
    with reporter.task("speech detection", len(tracks)) as advance:
        for name, path in tracks:
            analyses[name] = analyse(path, cache)
            advance()
    return speech_regions(analyses, settings), max(a.duration for a in analyses.values())


# --- the gated tracks ------------------------------------------------------------------------

@dataclass
class _Piece:
    start: int  # samples at the timeline rate
    end: int
    fade_in: bool  # begins a region
    fade_out: bool  # ends a region
    path: Path | None = None  # where it is stored


def gated_pieces(path: Path, regions: list[tuple[float, float]], rate: int, cache: Cache) -> list[tuple[int, Clip]]:
    """The recording inside its regions, at `rate`, as (start sample, clip) pieces of at most PIECE_S."""
    digest = file_digest(path)
    pieces, missing = [], []
    for piece in _piece_spans(regions, rate):
        key = content_key({"format": PODCAST_FORMAT, "recording": digest, "rate": rate,
                           "span": [piece.start, piece.end], "fades": [piece.fade_in, piece.fade_out, FADE_S]})
        stored = cache.lookup("recorded", key, ".npz")
        if stored is not None:
            pieces.append((piece.start, Clip(stored, rate, piece.end - piece.start)))
        else:
            missing.append(replace(piece, path=cache.path("recorded", key, ".npz")))
    pieces += _cut_pieces(path, missing, rate)
    return sorted(pieces, key=lambda placed: placed[0])


def _piece_spans(regions: list[tuple[float, float]], rate: int) -> list[_Piece]:
    """Spans of at most PIECE_S covering the regions."""
    longest = int(PIECE_S * rate)
    spans = []
    for start_s, end_s in regions:
        start, end = round(start_s * rate), round(end_s * rate)
        cuts = [*range(start, end, longest), end]
        spans += [_Piece(lo, hi, lo == start, hi == end) for lo, hi in zip(cuts, cuts[1:])]
    return spans


def _cut_pieces(path: Path, missing: list[_Piece], rate: int) -> list[tuple[int, Clip]]:
    """Decode the recording once, block by block, storing each missing piece (in order) once it is complete."""
    if not missing:
        return []
    stored, filling, next_piece, position = [], [], 0, 0
    for block in decode_blocks(path, rate, PIECE_BLOCK):
        end = position + len(block)
        while next_piece < len(missing) and missing[next_piece].start < end:
            piece = missing[next_piece]
            filling.append((piece, np.zeros(piece.end - piece.start, np.float32)))
            next_piece += 1
        for piece, samples in filling:
            lo, hi = max(piece.start, position), min(piece.end, end)
            if hi > lo:
                samples[lo - piece.start:hi - piece.start] = block[lo - position:hi - position]
        stored += [_stored(piece, samples, rate) for piece, samples in filling if piece.end <= end]
        filling = [(piece, samples) for piece, samples in filling if piece.end > end]
        position = end
    # pieces past the decoded end (a rounding sample or two) keep their silence
    left = filling + [(piece, np.zeros(piece.end - piece.start, np.float32)) for piece in missing[next_piece:]]
    return stored + [_stored(piece, samples, rate) for piece, samples in left]


def _stored(piece: _Piece, samples: np.ndarray, rate: int) -> tuple[int, Clip]:
    length = min(int(FADE_S * rate), len(samples) // 2)
    ramp = np.linspace(0.0, 1.0, length, endpoint=False, dtype=np.float32)
    if piece.fade_in:
        samples[:length] *= ramp
    if piece.fade_out and length:
        samples[-length:] *= ramp[::-1]
    return piece.start, store_clip(piece.path, samples, rate)


# --- the episode -----------------------------------------------------------------------------

def episode_timeline(screenplay: Screenplay, tracks: list[tuple[str, Path]], regions: Regions,
                     region_texts: dict[str, list[str]], duration: float, rate: int, cache: Cache,
                     reporter: Reporter) -> Timeline:
    """The concat-pad timeline of the recordings gated to their speech, with one cue per region."""
    names = [name for name, _ in tracks]
    pieces = []
    with reporter.task("tracks", len(tracks)) as advance:
        for index, (name, path) in enumerate(tracks):
            pieces += [(index, start, clip) for start, clip in gated_pieces(path, regions[name], rate, cache)]
            advance()
    cues = _cues(screenplay, tracks, regions, region_texts, rate)
    return recorded_timeline(screenplay, names, pieces, cues, round(duration * rate), rate)


def recorded_soundtrack(screenplay: Screenplay, tracks: list[tuple[str, Path]], samples: int, rate: int,
                        cache: Cache, reporter: Reporter) -> Timeline:
    """The recordings whole, summed at the episode's loudness, over its `samples`: what the video is
    heard with by default (the gated tracks drive the picture)."""
    whole = [(0.0, samples / rate)]
    pieces = []
    with reporter.task("soundtrack", len(tracks)) as advance:
        for index, (_, path) in enumerate(tracks):
            pieces += [(index, start, clip) for start, clip in gated_pieces(path, whole, rate, cache)]
            advance()
    return recorded_timeline(screenplay, [name for name, _ in tracks], pieces, [], samples, rate)


def write_master(soundtrack: Path, mix: Path, rate: int, samples: int) -> list[str]:
    """The user's mixed soundtrack as the mix, as mastered: its channels and levels kept, only resampled
    to `rate` and cut or padded with silence to the episode's `samples`. Returns warnings."""
    from talkstudio.assemble import EncodeError, probe
    from talkstudio.audio_io import ffmpeg_exe

    temp = mix.with_name(f".{mix.name}.part")
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(soundtrack),
                             "-vn", "-af", f"aresample={rate},apad=whole_len={samples},atrim=end_sample={samples}",
                             "-c:a", "pcm_f32le", "-f", "wav", str(temp)], capture_output=True, check=False)
    try:
        if result.returncode != 0:
            raise EncodeError(f"ffmpeg could not read the soundtrack {soundtrack}: "
                              f"{result.stderr.decode(errors='replace').strip()[-600:]}")
        os.replace(temp, mix)
    finally:
        temp.unlink(missing_ok=True)
    length = probe(soundtrack)["duration"]
    if length is not None and abs(length - samples / rate) > SOUNDTRACK_MISMATCH_S:
        return [f"soundtrack {soundtrack} lasts {length:.1f} s and the recordings {samples / rate:.1f} s: "
                f"the video follows the recordings"]
    return []


def measured_loudness(mix: Path, target_lufs: float, ceiling_dbtp: float) -> Loudness:
    """Integrated loudness and true peak of a finished mix (ffmpeg's EBU R128 meter, every channel),
    which was left as it is: no gain, no limiting."""
    from talkstudio.audio_io import ffmpeg_exe

    report = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(mix),
                             "-af", "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True,
                            errors="replace").stderr
    summary = report[report.rfind("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    return Loudness(target_lufs, ceiling_dbtp, 0.0, 0.0,
                    float(integrated[1]) if integrated and integrated[1] != "-70.0" else None,
                    float(peak[1]) if peak and peak[1] != "-inf" else None)


def _cues(screenplay: Screenplay, tracks, regions, region_texts, rate: int) -> list[Cue]:
    clock = FrameClock(rate, frame_rate(screenplay.video))
    files = dict(tracks)
    found = sorted((start, end, name, index) for name, spans in regions.items()
                   for index, (start, end) in enumerate(spans))
    cues = []
    for line, (start, end, name, index) in enumerate(found):
        first, last = round(start * rate), round(end * rate)
        cues.append(Cue(scene=EPISODE_SCENE, line=line, speaker=name, text=region_texts[name][index],
                        start=first / rate, end=last / rate, start_sample=first, end_sample=last,
                        start_frame=clock.frame_of(first), end_frame=clock.frame_of(last),
                        source=f"{files[name]}@{start:.2f}s", audio=str(files[name])))
    return cues


def render_podcast(cast_file: Path, tracks: list[tuple[str, Path]], transcript: Path | None, target: Path,
                   cache: Cache, reporter: Reporter, options=None, soundtrack: str | None = None) -> PodcastResult:
    """Recordings (one per host) -> speech regions -> timeline -> picture -> mp4, plus subtitles from a transcript."""
    from talkstudio.assemble import Burn, assemble
    from talkstudio.chunks import render_chunks
    from talkstudio.generators import GENERATORS, get_generator
    from talkstudio.outputs import check_output_folder, claim_video_outputs, require_suffix
    from talkstudio.render import (RenderOptions, load_generator, render_settings, subtitle_font, subtitle_layout,
                                   write_stages)
    from talkstudio.stage import build_stage
    from talkstudio.subtitles import track_language, write_subtitles
    from talkstudio.subtitles.fonts import font_folders
    from talkstudio.transcript import Alignment, align, read_transcript

    options = options or RenderOptions()
    target = Path(target)
    work_dir = target.with_suffix("")
    check_output_folder(work_dir)
    require_suffix(target, (".mp4",))
    timings, clock = {}, time.perf_counter()
    settings = {**render_settings(options), "tracks": [[name, str(Path(path).resolve())] for name, path in tracks],
                "transcript": str(Path(transcript).resolve()) if transcript else None, "vad": _vad_identity(),
                "soundtrack": soundtrack if soundtrack in (None, RECORDED, GATED) else str(Path(soundtrack).resolve())}

    # 0. nothing to do when the video was made from exactly these recordings, cast file and settings
    if (cache.enabled and target.exists() and (work_dir / "cues.json").is_file()
            and manifest.up_to_date(work_dir, "podcast", cast_file, settings)):
        reporter.info(f"{target}: up to date (inputs unchanged); --no-cache redoes it")
        return _finished_podcast(target, work_dir)

    # 1. check everything before any work: cast file, recordings, transcript, backend, the VAD
    episode = load_cast(cast_file, tracks, transcript, soundtrack)
    screenplay, detection, tracks, transcript = episode.screenplay, episode.detection, episode.tracks, episode.transcript
    rates = [audio_rate(path) for _, path in tracks]
    if isinstance(episode.soundtrack, Path):
        audio_rate(episode.soundtrack)  # bad input (exit 2) when it holds no audio
    entries = read_transcript(transcript, {n: screenplay.cast[n].name for n, _ in tracks}) if transcript else None
    generator = load_generator(screenplay, options, GENERATORS, get_generator)
    seed = options.seed if options.seed is not None else screenplay.video.seed
    burning = options.burn_subtitles and entries
    font = subtitle_font(screenplay, " ".join(entry.text for entry in entries)) if burning else None
    try:
        model_identity()
    except VadUnavailable as error:
        raise InputError(Problem(str(error))) from None

    inputs = [cast_file, *(path for _, path in tracks), transcript,
              episode.soundtrack if isinstance(episode.soundtrack, Path) else None, *screenplay.input_files()]
    with claim_video_outputs(target, inputs, "podcast"):
        # 2. the stage: the hosts' picture, and whose face is where
        stage = build_stage(screenplay, screenplay.scenes[0], cache)
        write_stages(work_dir / "stages.json", screenplay, [stage])
        timings["stages"] = time.perf_counter() - clock

        # 3. who speaks when, each track's bleed given back to its source
        clock = time.perf_counter()
        regions, duration = detect_speech(tracks, detection, cache, reporter)
        timings["detection"] = time.perf_counter() - clock

        # 4. the transcript over the regions; the gated tracks, mix and cues
        clock = time.perf_counter()
        aligned = align(entries, regions) if entries else Alignment({n: [""] * len(r) for n, r in regions.items()}, [])
        for warning in aligned.warnings:
            reporter.warn(warning)
        rate = screenplay.audio.sample_rate or max(rates)
        timeline = episode_timeline(screenplay, tracks, regions, aligned.region_texts, duration, rate, cache, reporter)
        heard = (recorded_soundtrack(screenplay, tracks, timeline.samples, rate, cache, reporter)
                 if episode.soundtrack == RECORDED else None)
        warnings = timeline.warnings + (heard.warnings if heard else [])
        loudness = heard.loudness if heard else timeline.loudness
        mastered = None
        if isinstance(episode.soundtrack, Path):
            warnings += write_master(episode.soundtrack, work_dir / "mix.wav", rate, timeline.samples)
            loudness = mastered = measured_loudness(work_dir / "mix.wav", screenplay.audio.loudness,
                                                    screenplay.audio.true_peak)
        write_timeline(timeline, screenplay, work_dir, heard, mastered)
        for warning in warnings:
            reporter.warn(warning)
        timings["audio"] = time.perf_counter() - clock

        # 5. the picture, chunk by chunk (partial movie files in the cache)
        clock = time.perf_counter()
        partials, rendered = render_chunks(screenplay, timeline, [stage], generator, cache, reporter,
                                           frame_num=options.frame_num, seed=seed)
        timings["chunks"] = time.perf_counter() - clock

        # 6. subtitles (only from a transcript), then the mp4
        clock = time.perf_counter()
        subtitles, layout = {}, None
        if entries:
            document = {"speakers": [{"id": name, "name": screenplay.cast[name].name} for name, _ in tracks],
                        "scenes": [{"id": EPISODE_SCENE, "start": 0.0, "end": timeline.duration}],
                        "cues": [{**cue, "scene": EPISODE_SCENE} for cue in aligned.subtitles], "fps": timeline.fps}
            layout = subtitle_layout(screenplay, document, font, options, [stage])
            subtitles = write_subtitles(document, layout, target)
        with reporter.task("assemble", 1) as advance:
            assemble(partials, work_dir / "mix.wav", subtitles.get("srt"), target,
                     track_language(layout.rules.language) if layout else "und",
                     burn=Burn(subtitles["ass"], font_folders(font)) if font else None, work_dir=work_dir)
            advance()
        timings["assemble"] = time.perf_counter() - clock
        mixed = [episode.soundtrack] if isinstance(episode.soundtrack, Path) else []
        manifest.record(work_dir, "podcast", cast_file, [path for _, path in tracks] + mixed
                        + ([transcript] if transcript else []) + screenplay.input_files(),
                        [], [target, *subtitles.values()], settings)
        cues = cues_document(timeline, screenplay, loudness)
        return PodcastResult(target, work_dir, cues, regions, subtitles, len(partials),
                             len(partials) - rendered, timings, aligned.warnings + warnings)
