"""Stage 3: the concat-pad timeline.

Each scene is laid out alone: lines one after another with their pauses, or
starting `overlap` seconds before the previous line ends. Scenes are then
joined, each padded to a whole number of frames so that every scene starts on
a frame boundary. Track i holds speaker i's clips at their places and exact
zeros elsewhere; the mix is the sum of the tracks. One gain curve (target
loudness, EBU R128, plus a true-peak limiter; see loudness.py) is applied to
every track, so mix == sum(tracks) still holds after normalisation.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from math import ceil
from pathlib import Path

import numpy as np

from talkstudio.audio_io import wav_writer
from talkstudio.cache import atomic_write
from talkstudio.generators import SPEECH_LEVEL_DB, frame_rate
from talkstudio.loudness import GainCurve, Loudness, normalise
from talkstudio.screenplay import Screenplay
from talkstudio.speech import Clip
from talkstudio.subtitles.rules import dialogue_language

WRITE_BLOCK = 1 << 18  # samples per block when writing the tracks


@dataclass
class WordCue:
    text: str
    start: float
    end: float
    start_frame: int
    end_frame: int


@dataclass
class Cue:
    scene: str
    line: int  # index within the scene
    speaker: str
    text: str
    start: float  # seconds on the whole timeline
    end: float
    start_sample: int
    end_sample: int
    start_frame: int  # frames of the timeline's fps; end is exclusive
    end_frame: int
    words: list[WordCue] = field(default_factory=list)
    phonemes: list[tuple[str, float, float]] = field(default_factory=list)
    source: str = ""  # file:line in the screenplay
    audio: str | None = None  # recorded file, when the line is not TTS
    prompt: str | None = None
    emotion: str | None = None
    offscreen: bool = False  # heard, not seen: no mouth moves with it


@dataclass
class SceneSpan:
    id: str
    start: float
    end: float
    start_sample: int
    end_sample: int
    start_frame: int
    end_frame: int


@dataclass
class _Placed:
    speaker: int
    start: int  # sample within the scene while laying out; on the whole timeline afterwards
    clip: Clip
    volume: float = 1.0
    seen: bool = True  # drives the picture (False: heard off screen)

    @property
    def end(self) -> int:
        return self.start + self.clip.length


@dataclass
class Timeline:
    """The programme's audio as a layout of clips; samples are made block by block when asked for."""

    rate: int
    fps: float
    speakers: list[str]
    samples: int
    cues: list[Cue]
    scenes: list[SceneSpan]
    placed: list[_Placed]  # every clip on the whole timeline, by start
    loudness: Loudness | None = None
    gain: GainCurve | None = None
    warnings: list[str] = field(default_factory=list)

    def _overlapping(self, start: int, end: int) -> list[_Placed]:
        first = bisect_left(self._starts, start - self._longest)
        return [p for p in self.placed[first:bisect_left(self._starts, end)] if p.end > start]

    def __post_init__(self):
        self._starts = [p.start for p in self.placed]
        self._longest = max((p.clip.length for p in self.placed), default=0)

    def raw_tracks(self, start: int, end: int) -> np.ndarray:
        """(speakers, end - start): each speaker's clips times their volume, before normalisation."""
        block = np.zeros((len(self.speakers), end - start), np.float32)
        for p in self._overlapping(start, end):
            lo, hi = max(p.start, start), min(p.end, end)
            block[p.speaker, lo - start:hi - start] += p.clip.samples[lo - p.start:hi - p.start] * np.float32(p.volume)
        return block

    def raw_mix(self, start: int, end: int) -> np.ndarray:
        return self.raw_tracks(start, end).sum(axis=0, dtype=np.float32)

    def tracks(self, start: int, end: int) -> np.ndarray:
        """(speakers, end - start): the normalised tracks; their sum is the mix."""
        return (self.raw_tracks(start, end) * np.asarray(self.gain.block(start, end), np.float32)).astype(np.float32)

    def voices(self, names: list[str], start: int, end: int) -> dict[str, np.ndarray]:
        """Each named speaker's voice for the picture over [start, end) (zeros past the end), every clip at
        one speech level (SPEECH_LEVEL_DB) and without volume or loudness: a picture depends only on
        the lines near it, and loud or quiet recordings animate alike."""
        voices = {name: np.zeros(end - start, np.float32) for name in names}
        for p in self._overlapping(start, end):
            name = self.speakers[p.speaker]
            if name in voices and p.seen:
                lo, hi = max(p.start, start), min(p.end, end)
                level = p.clip.gain_to(SPEECH_LEVEL_DB)
                voices[name][lo - start:hi - start] += p.clip.samples[lo - p.start:hi - p.start] * level
        return voices

    def scene_phonemes(self, index: int) -> dict[str, list[tuple[str, float, float]]]:
        """Each speaker's phonemes in scene `index`, in seconds from the scene's start."""
        span = self.scenes[index]
        found: dict[str, list[tuple[str, float, float]]] = {}
        for cue in self.cues:
            if cue.scene == span.id and not cue.offscreen:
                found.setdefault(cue.speaker, []).extend(
                    (symbol, start - span.start, end - span.start) for symbol, start, end in cue.phonemes)
        return found

    @property
    def duration(self) -> float:
        return self.samples / self.rate

    @property
    def frames(self) -> int:
        return self.scenes[-1].end_frame if self.scenes else 0


class FrameClock:
    """Exact sample <-> frame conversion for a sample rate and a (possibly fractional) fps."""

    def __init__(self, rate: int, fps: float):
        self.rate = rate
        self.fps = Fraction(str(fps))

    def frame_of(self, sample: int) -> int:
        """The nearest frame to a sample's time (ties to even, like round())."""
        return round(Fraction(sample) * self.fps / self.rate)

    def sample_of(self, frame: int) -> int:
        return round(Fraction(frame) * self.rate / self.fps)

    def frames_covering(self, samples: int) -> int:
        return ceil(Fraction(samples) * self.fps / self.rate)


def build_timeline(screenplay: Screenplay, clips: list[list[Clip]], rate: int) -> Timeline:
    speakers = screenplay.speakers
    clock = FrameClock(rate, frame_rate(screenplay.video))
    warnings: list[str] = []
    laid_out = [_layout_scene(scene, scene_clips, screenplay, rate, warnings)
                for scene, scene_clips in zip(screenplay.scenes, clips)]

    spans, frame = [], 0
    for scene, (_, content) in zip(screenplay.scenes, laid_out):
        start_sample = clock.sample_of(frame)
        frames = clock.frames_covering(content + 1)
        end_sample = clock.sample_of(frame + frames)
        spans.append(SceneSpan(scene.id, start_sample / rate, end_sample / rate, start_sample, end_sample,
                               frame, frame + frames))
        frame += frames

    placed, cues = [], []
    for scene, span, (scene_placed, _) in zip(screenplay.scenes, spans, laid_out):
        for index, item in enumerate(scene_placed):
            line = scene.lines[index]
            start = span.start_sample + item.start
            character = screenplay.cast[line.speaker]
            volume = character.voice.volume * item.clip.gain
            seen = not (line.offscreen or character.voice_only)
            placed.append(_Placed(item.speaker, start, item.clip, volume, seen))
            cues.append(_cue(scene.id, index, line, item, start, rate, clock, seen))
    placed.sort(key=lambda p: p.start)

    timeline = Timeline(rate, frame_rate(screenplay.video), speakers, spans[-1].end_sample, cues, spans, placed, warnings=warnings)
    return _normalised(timeline, screenplay)


def recorded_timeline(screenplay: Screenplay, speakers: list[str], pieces: list[tuple[int, int, Clip]],
                      cues: list[Cue], samples: int, rate: int) -> Timeline:
    """A timeline of recorded pieces already at their places (speaker index, start sample, clip), as one
    scene (the screenplay's first) of at least `samples`: a podcast's tracks, gated to detected speech,
    or the recordings whole (its soundtrack)."""
    clock = FrameClock(rate, frame_rate(screenplay.video))
    frames = clock.frames_covering(samples)
    end = clock.sample_of(frames)
    scene = SceneSpan(screenplay.scenes[0].id, 0.0, end / rate, 0, end, 0, frames)
    volume = [screenplay.cast[name].voice.volume for name in speakers]
    placed = sorted((_Placed(speaker, start, clip, volume[speaker] * clip.gain) for speaker, start, clip in pieces),
                    key=lambda p: p.start)
    return _normalised(Timeline(rate, frame_rate(screenplay.video), speakers, end, cues, [scene], placed), screenplay)


def _normalised(timeline: Timeline, screenplay: Screenplay) -> Timeline:
    """The timeline with its gain curve: the mix at the screenplay's loudness, under its true-peak ceiling."""
    timeline.gain, timeline.loudness = normalise(timeline.raw_mix, timeline.samples, timeline.rate,
                                                 screenplay.audio.loudness, screenplay.audio.true_peak)
    if timeline.loudness.limited_db < -12:
        timeline.warnings.append(f"the limiter took up to {-timeline.loudness.limited_db:.1f} dB off peaks to reach "
                                 f"{screenplay.audio.loudness:g} LUFS; a lower audio.loudness sounds cleaner")
    return timeline


def _overlap_samples(overlap: float | str, previous: int, rate: int) -> int:
    """A line's `overlap` in samples: seconds, or a share ('60%') of the previous line's length."""
    if isinstance(overlap, str):
        return round(float(overlap.rstrip("%")) / 100 * previous)
    return round(overlap * rate)


def _layout_scene(scene, clips: list[Clip], screenplay: Screenplay, rate: int, warnings: list[str]):
    """Place a scene's clips in samples from the scene's start; return them and the scene's length."""
    timing = screenplay.timing
    speaker_index = {s: i for i, s in enumerate(screenplay.speakers)}
    placed: list[_Placed] = []
    latest_end = 0
    for i, (line, clip) in enumerate(zip(scene.lines, clips)):
        if line.overlap is not None:
            previous = placed[-1]
            start = previous.end - _overlap_samples(line.overlap, previous.clip.length, rate)
            if start < previous.start:
                warnings.append(f"{line.where}: overlap {line.overlap} s is longer than the previous line "
                                f"({previous.clip.length / rate:.2f} s); the line starts with it instead")
                start = previous.start
        else:
            pause = line.pause if line.pause is not None else (timing.lead_in if i == 0 else timing.gap)
            start = latest_end + round(pause * rate)
        placed.append(_Placed(speaker_index[line.speaker], start, clip))
        latest_end = max(latest_end, start + clip.length)
    return placed, latest_end + round(timing.tail * rate)


def _cue(scene_id: str, index: int, line, item: _Placed, start: int, rate: int, clock: FrameClock,
         seen: bool = True) -> Cue:
    end = start + item.clip.length
    offset = start / rate

    def frame(seconds: float) -> int:
        return clock.frame_of(round(seconds * rate))

    words = [WordCue(w.text, offset + w.start, offset + w.end, frame(offset + w.start), frame(offset + w.end))
             for w in item.clip.words]
    return Cue(
        scene=scene_id, line=index, speaker=line.speaker, text=line.text or "",
        start=start / rate, end=end / rate, start_sample=start, end_sample=end,
        start_frame=clock.frame_of(start), end_frame=clock.frame_of(end),
        words=words,
        phonemes=[(p.symbol, round(offset + p.start, 4), round(offset + p.end, 4)) for p in item.clip.phonemes],
        source=line.where, audio=str(line.audio) if line.audio else None,
        prompt=line.prompt, emotion=line.emotion, offscreen=not seen,
    )


def write_timeline(timeline: Timeline, screenplay: Screenplay, out_dir: Path, soundtrack: Timeline | None = None,
                   mastered: Loudness | None = None) -> dict[str, Path]:
    """tracks/<speaker>.wav, mix.wav and cues.json under `out_dir`, written block by block. The mix is
    the sum of the tracks, or of `soundtrack`'s (a timeline as long, heard instead of the tracks); with
    `mastered` (its measured loudness) the mix is a finished file already in `out_dir`, left as it is."""
    out_dir = Path(out_dir)
    heard = soundtrack or timeline
    written = {speaker: out_dir / "tracks" / f"{speaker}.wav" for speaker in timeline.speakers}
    if mastered is None:
        written["mix"] = out_dir / "mix.wav"
    with ExitStack() as stack:
        writers = [stack.enter_context(wav_writer(path, timeline.rate, timeline.samples)) for path in written.values()]
        for start in range(0, timeline.samples, WRITE_BLOCK):
            end = min(start + WRITE_BLOCK, timeline.samples)
            tracks = timeline.tracks(start, end)
            blocks = [*tracks]
            if mastered is None:
                blocks.append((heard.tracks(start, end) if soundtrack else tracks).sum(axis=0, dtype=np.float32))
            for writer, block in zip(writers, blocks):
                writer(block)
    written["cues"] = out_dir / "cues.json"
    with atomic_write(written["cues"], "w") as f:
        json.dump(cues_document(timeline, screenplay, mastered or heard.loudness), f, indent=1, ensure_ascii=False)
    return written


def cues_document(timeline: Timeline, screenplay: Screenplay, loudness: Loudness | None = None) -> dict:
    """The cues.json document; `loudness` is the mix's, when the mix is not the sum of the tracks."""
    return {
        "title": screenplay.title,
        "sample_rate": timeline.rate,
        "fps": timeline.fps,
        "samples": timeline.samples,
        "frames": timeline.frames,
        "duration": timeline.duration,
        "speakers": [{"id": s, "name": screenplay.cast[s].name, "track": f"tracks/{s}.wav"} for s in timeline.speakers],
        # how subtitles are made, for those made later from this file (a vertical edit's captions)
        "language": dialogue_language(screenplay),
        "subtitles": screenplay.subtitles.model_dump(mode="json"),
        "loudness": asdict(loudness or timeline.loudness),
        "scenes": [asdict(span) for span in timeline.scenes],
        "cues": [asdict(cue) for cue in timeline.cues],
    }
