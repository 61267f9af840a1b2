"""Stage 2: every line as audio. TTS lines go through the speech cache; recorded lines are decoded.

A clip's cache key holds everything that determines its samples: engine name and
version, the engine's view of the voice (rate, pitch, variant...), the hashes of
any model or reference file, and the text. Volume is applied in the mix, so it is
not part of the key: turning a character up re-synthesises nothing.
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from talkstudio.audio_io import decode_blocks, resample
from talkstudio.cache import Cache, atomic_write, content_key, file_digest
from talkstudio.delivery import apply_lexicon, rendition, restore_words
from talkstudio.errors import InputError, Problem
from talkstudio.progress import Reporter
from talkstudio.screenplay import Line, Screenplay, Voice
from talkstudio.voices import Phoneme, Speech, Word, get_engine

SPEECH_FORMAT = 1  # bump when the stored layout changes


@dataclass(eq=False)
class Clip:
    """One line's audio, kept on disk (in the cache) and loaded when a block of the timeline needs it,
    so memory does not grow with the length of the programme. Timings are relative to the clip."""

    stored: Path  # .npz holding samples and their rate
    rate: int  # the timeline rate the clip is used at
    length: int  # samples at that rate
    words: list[Word] = field(default_factory=list)
    phonemes: list[Phoneme] = field(default_factory=list)
    gain: float = 1.0  # the line's own gain in the mix (delivery), on top of the voice's volume

    @property
    def samples(self) -> np.ndarray:
        return _clip_samples(self.stored, self.rate)

    def gain_to(self, level_db: float) -> np.float32:
        """The gain that brings the clip's voiced 20 ms blocks to an RMS of `level_db`."""
        return _gain_to(self.stored, self.rate, level_db)


@lru_cache(maxsize=4096)
def _gain_to(stored: Path, rate: int, level_db: float) -> np.float32:
    samples = _clip_samples(stored, rate)
    block = max(int(0.02 * rate), 1)
    usable = len(samples) // block * block
    if not usable:
        return np.float32(1.0)
    step = block * 4096  # a long recording is read a few seconds at a time
    rms = np.concatenate([np.sqrt(np.mean(np.asarray(samples[start:min(start + step, usable)], np.float64)
                                          .reshape(-1, block) ** 2, axis=1)) for start in range(0, usable, step)])
    voiced = rms[rms > rms.max() * 0.1]
    level = float(np.sqrt(np.mean(voiced ** 2))) if len(voiced) else 0.0
    return np.float32(10 ** (level_db / 20) / level if level > 1e-6 else 1.0)


CLIPS_HELD_BYTES = 16 << 20  # the loudness passes read the timeline several times: an episode's clips
# stay loaded between passes, a long programme's most recent 16 MiB of them (memory stays bounded)
_held: OrderedDict[tuple[Path, int], np.ndarray] = OrderedDict()


class RecordingOnDisk:
    """A recorded line's samples (float32 at the timeline rate) read from its cache file only where
    sliced: a two-hour recording costs no more memory than the block being mixed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.length = self.path.stat().st_size // 4

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(self.length)
        if step != 1:
            raise ValueError("a recording on disk is read in contiguous runs")
        count = max(stop - start, 0)
        return np.fromfile(self.path, dtype="<f4", count=count, offset=4 * start) if count else np.zeros(0, np.float32)


def _clip_samples(stored: Path, rate: int) -> np.ndarray:
    if Path(stored).suffix == RECORDING_SUFFIX:  # stored at the timeline rate, read where needed
        return RecordingOnDisk(stored)
    key = (stored, rate)
    if key in _held:
        _held.move_to_end(key)
        return _held[key]
    speech = _load_speech(stored)
    samples = resample(speech.samples, speech.rate, rate)
    samples.flags.writeable = False
    _held[key] = samples
    while sum(a.nbytes for a in _held.values()) > CLIPS_HELD_BYTES and len(_held) > 1:
        _held.popitem(last=False)
    return samples


@dataclass
class SpeechStats:
    synthesized: int = 0
    cached: int = 0
    recorded: int = 0


def timeline_rate(screenplay: Screenplay) -> int:
    """The screenplay's sample rate, or the highest native rate among its TTS voices."""
    if screenplay.audio.sample_rate:
        return screenplay.audio.sample_rate
    rates = [get_engine(c.voice.engine).sample_rate(c.voice) for c in screenplay.cast.values()]
    return max(rates)


def speech_key(text: str, voice: Voice) -> str:
    engine = get_engine(voice.engine)
    return content_key({
        "format": SPEECH_FORMAT,
        "engine": engine.name,
        "version": engine.version(),
        "voice": engine.cache_identity(voice),
        "model": file_digest(voice.model) if voice.model else None,
        "reference": file_digest(voice.reference) if voice.reference else None,
        "text": text,
    })


def speak_all(screenplay: Screenplay, cache: Cache, rate: int, reporter: Reporter) -> tuple[list[list[Clip]], SpeechStats]:
    """Clips for every line of every scene, in script order."""
    stats = SpeechStats()
    total = sum(len(scene.lines) for scene in screenplay.scenes)
    clips: list[list[Clip]] = []
    with reporter.task("speech", total) as advance:
        for scene in screenplay.scenes:
            clips.append([])
            for line in scene.lines:
                clips[-1].append(_clip(line, screenplay, cache, rate, stats))
                advance()
    return clips, stats


def _clip(line: Line, screenplay: Screenplay, cache: Cache, rate: int, stats: SpeechStats) -> Clip:
    if line.audio is not None:
        stats.recorded += 1
        stored = _recorded_cached(line.audio, rate, cache)
        return Clip(stored, rate, len(_clip_samples(stored, rate)))
    voice = screenplay.cast[line.speaker].voice
    spoken, respellings = apply_lexicon(line.text, screenplay.lexicon)
    said = rendition(voice, line.delivery, getattr(get_engine(voice.engine), "native_delivery", frozenset()))
    stored, speech = synthesize_cached(spoken, said.voice, cache, stats)
    words = restore_words(speech.words, respellings)
    return Clip(stored, rate, len(_clip_samples(stored, rate)), words, speech.phonemes, said.gain)


RECORDING_SUFFIX = ".f32"
RECORDING_BLOCK = 1 << 18  # samples decoded and written at a time


def _recorded_cached(audio: Path, rate: int, cache: Cache) -> Path:
    """A recorded line decoded once at the timeline rate into raw float32 in the cache, block by block
    (memory holds one block however long the recording is)."""
    key = content_key({"format": SPEECH_FORMAT, "recording": file_digest(audio), "rate": rate, "stored": "f32"})
    stored = cache.lookup("recorded", key, RECORDING_SUFFIX)
    if stored is None:
        stored = cache.path("recorded", key, RECORDING_SUFFIX)
        written = 0
        with atomic_write(stored, sealed=True) as f:
            for block in decode_blocks(audio, rate, RECORDING_BLOCK):
                f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
                written += len(block)
            if not written:
                raise InputError(Problem("audio file holds no samples", file=audio,
                                         hint="record or export it again"))
    return stored


def store_clip(path: Path, samples: np.ndarray, rate: int) -> Clip:
    """A clip of samples already at the timeline rate (a piece of a recording), stored like speech."""
    _store_speech(path, Speech(samples, rate))
    return Clip(path, rate, len(samples))


def synthesize_cached(text: str, voice: Voice, cache: Cache, stats: SpeechStats) -> tuple[Path, Speech]:
    """The stored file and the speech for a line, synthesised only when the cache lacks it."""
    key = speech_key(text, voice)
    stored = cache.lookup("speech", key, ".npz")
    if stored is not None:
        stats.cached += 1
        return stored, _load_speech(stored)
    speech = get_engine(voice.engine).synthesize(text, voice)
    stored = cache.path("speech", key, ".npz")
    _store_speech(stored, speech)
    stats.synthesized += 1
    return stored, speech


def _store_speech(path, speech: Speech) -> None:
    timings = {
        "words": [[w.text, w.start, w.end] for w in speech.words],
        "phonemes": [[p.symbol, p.start, p.end] for p in speech.phonemes],
    }
    buffer = io.BytesIO()
    np.savez(buffer, samples=speech.samples.astype(np.float32), rate=np.int64(speech.rate),
             timings=np.frombuffer(json.dumps(timings).encode(), dtype=np.uint8))
    with atomic_write(path, sealed=True) as f:
        f.write(buffer.getvalue())


def _load_speech(path) -> Speech:
    with np.load(path) as stored:
        timings = json.loads(stored["timings"].tobytes())
        return Speech(
            stored["samples"],
            int(stored["rate"]),
            [Word(*w) for w in timings["words"]],
            [Phoneme(*p) for p in timings["phonemes"]],
        )
