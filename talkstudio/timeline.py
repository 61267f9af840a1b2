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
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from math import ceil
from pathlib import Path

import numpy as np

from talkstudio.audio_io import write_wav
from talkstudio.cache import atomic_write
from talkstudio.generators import SPEECH_LEVEL_DB
from talkstudio.loudness import Loudness, normalise_curve
from talkstudio.screenplay import Screenplay
from talkstudio.speech import Clip

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
    start: int  # sample within the scene
    clip: Clip


@dataclass
class Timeline:
    rate: int
    fps: float
    speakers: list[str]
    tracks: np.ndarray  # (speakers, samples) float32
    cues: list[Cue]
    scenes: list[SceneSpan]
    loudness: Loudness
    warnings: list[str] = field(default_factory=list)
    layouts: list[list[_Placed]] = field(default_factory=list, repr=False)  # per scene, clips as placed

    def scene_voices(self, index: int) -> dict[str, np.ndarray]:
        """Each speaker's voice in scene `index` for the picture: every clip brought to one speech level
        (SPEECH_LEVEL_DB), before volume and loudness. So a picture depends only on the lines near
        it: an edit elsewhere moves the mix's gain, not this, and loud or quiet recordings animate alike."""
        span = self.scenes[index]
        length = span.end_sample - span.start_sample
        voices: dict[str, np.ndarray] = {}
        for item in self.layouts[index]:
            track = voices.setdefault(self.speakers[item.speaker], np.zeros(length, np.float32))
            track[item.start:item.start + len(item.clip.samples)] += _at_speech_level(item.clip.samples, self.rate)
        return voices

    def scene_phonemes(self, index: int) -> dict[str, list[tuple[str, float, float]]]:
        """Each speaker's phonemes in scene `index`, in seconds from the scene's start."""
        span = self.scenes[index]
        found: dict[str, list[tuple[str, float, float]]] = {}
        for cue in self.cues:
            if cue.scene == span.id:
                found.setdefault(cue.speaker, []).extend(
                    (symbol, start - span.start, end - span.start) for symbol, start, end in cue.phonemes)
        return found

    @property
    def mix(self) -> np.ndarray:
        return self.tracks.sum(axis=0, dtype=np.float32)

    @property
    def duration(self) -> float:
        return self.tracks.shape[1] / self.rate

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


def _at_speech_level(samples: np.ndarray, rate: int) -> np.ndarray:
    """The clip scaled so that its voiced 20 ms blocks have an RMS of SPEECH_LEVEL_DB."""
    block = max(int(0.02 * rate), 1)
    usable = len(samples) // block * block
    if not usable:
        return samples
    rms = np.sqrt(np.mean(samples[:usable].reshape(-1, block).astype(np.float64) ** 2, axis=1))
    voiced = rms[rms > rms.max() * 0.1]
    level = float(np.sqrt(np.mean(voiced ** 2))) if len(voiced) else 0.0
    if level <= 1e-6:
        return samples
    return (samples * np.float32(10 ** (SPEECH_LEVEL_DB / 20) / level)).astype(np.float32)


def build_timeline(screenplay: Screenplay, clips: list[list[Clip]], rate: int) -> Timeline:
    speakers = screenplay.speakers
    clock = FrameClock(rate, screenplay.fps)
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

    tracks = np.zeros((len(speakers), spans[-1].end_sample), dtype=np.float32)
    cues = []
    for scene, span, (placed, _) in zip(screenplay.scenes, spans, laid_out):
        for index, item in enumerate(placed):
            line = scene.lines[index]
            start = span.start_sample + item.start
            volume = screenplay.cast[line.speaker].voice.volume
            tracks[item.speaker, start:start + len(item.clip.samples)] += item.clip.samples * np.float32(volume)
            cues.append(_cue(scene.id, index, line, item, start, rate, clock))

    curve, loudness = normalise_curve(tracks.sum(axis=0, dtype=np.float32), rate,
                                      screenplay.audio.loudness, screenplay.audio.true_peak)
    tracks *= np.asarray(curve, dtype=np.float32)
    if loudness.limited_db < -12:
        warnings.append(f"the limiter took up to {-loudness.limited_db:.1f} dB off peaks to reach "
                        f"{screenplay.audio.loudness:g} LUFS; a lower audio.loudness sounds cleaner")
    return Timeline(rate, screenplay.fps, speakers, tracks, cues, spans, loudness, warnings,
                    [placed for placed, _ in laid_out])


def _layout_scene(scene, clips: list[Clip], screenplay: Screenplay, rate: int, warnings: list[str]):
    """Place a scene's clips in samples from the scene's start; return them and the scene's length."""
    timing = screenplay.timing
    speaker_index = {s: i for i, s in enumerate(screenplay.speakers)}
    placed: list[_Placed] = []
    latest_end = 0
    for i, (line, clip) in enumerate(zip(scene.lines, clips)):
        if line.overlap is not None:
            previous = placed[-1]
            previous_end = previous.start + len(previous.clip.samples)
            start = previous_end - round(line.overlap * rate)
            if start < previous.start:
                warnings.append(f"{line.where}: overlap {line.overlap:g} s is longer than the previous line "
                                f"({len(previous.clip.samples) / rate:.2f} s); the line starts with it instead")
                start = previous.start
        else:
            pause = line.pause if line.pause is not None else (timing.lead_in if i == 0 else timing.gap)
            start = latest_end + round(pause * rate)
        placed.append(_Placed(speaker_index[line.speaker], start, clip))
        latest_end = max(latest_end, start + len(clip.samples))
    return placed, latest_end + round(timing.tail * rate)


def _cue(scene_id: str, index: int, line, item: _Placed, start: int, rate: int, clock: FrameClock) -> Cue:
    end = start + len(item.clip.samples)
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
        prompt=line.prompt, emotion=line.emotion,
    )


def write_timeline(timeline: Timeline, screenplay: Screenplay, out_dir: Path) -> dict[str, Path]:
    """tracks/<speaker>.wav, mix.wav and cues.json under `out_dir`."""
    out_dir = Path(out_dir)
    written = {}
    for speaker, track in zip(timeline.speakers, timeline.tracks):
        written[speaker] = out_dir / "tracks" / f"{speaker}.wav"
        write_wav(written[speaker], track, timeline.rate)
    written["mix"] = out_dir / "mix.wav"
    write_wav(written["mix"], timeline.mix, timeline.rate)
    written["cues"] = out_dir / "cues.json"
    with atomic_write(written["cues"], "w") as f:
        json.dump(cues_document(timeline, screenplay), f, indent=1, ensure_ascii=False)
    return written


def cues_document(timeline: Timeline, screenplay: Screenplay) -> dict:
    return {
        "title": screenplay.title,
        "sample_rate": timeline.rate,
        "fps": timeline.fps,
        "samples": int(timeline.tracks.shape[1]),
        "frames": timeline.frames,
        "duration": timeline.duration,
        "speakers": [{"id": s, "name": screenplay.cast[s].name, "track": f"tracks/{s}.wav"} for s in timeline.speakers],
        "loudness": asdict(timeline.loudness),
        "scenes": [asdict(span) for span in timeline.scenes],
        "cues": [asdict(cue) for cue in timeline.cues],
    }
