"""Stage 2: every line as audio. TTS lines go through the speech cache; recorded lines are decoded.

A clip's cache key holds everything that determines its samples: engine name and
version, the engine's view of the voice (rate, pitch, variant...), the hashes of
any model or reference file, and the text. Volume is applied in the mix, so it is
not part of the key: turning a character up re-synthesises nothing.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from talkstudio.audio_io import read_audio, resample
from talkstudio.cache import Cache, atomic_write, content_key, file_digest
from talkstudio.progress import Reporter
from talkstudio.screenplay import Line, Screenplay, Voice
from talkstudio.voices import Phoneme, Speech, Word, get_engine

SPEECH_FORMAT = 1  # bump when the stored layout changes


@dataclass
class Clip:
    """One line's audio at the timeline rate, with timings relative to the clip."""

    samples: np.ndarray
    words: list[Word] = field(default_factory=list)
    phonemes: list[Phoneme] = field(default_factory=list)


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
        return Clip(read_audio(line.audio, rate))
    speech = synthesize_cached(line.text, screenplay.cast[line.speaker].voice, cache, stats)
    return Clip(resample(speech.samples, speech.rate, rate), speech.words, speech.phonemes)


def synthesize_cached(text: str, voice: Voice, cache: Cache, stats: SpeechStats) -> Speech:
    key = speech_key(text, voice)
    stored = cache.lookup("speech", key, ".npz")
    if stored is not None:
        stats.cached += 1
        return _load_speech(stored)
    speech = get_engine(voice.engine).synthesize(text, voice)
    _store_speech(cache.path("speech", key, ".npz"), speech)
    stats.synthesized += 1
    return speech


def _store_speech(path, speech: Speech) -> None:
    timings = {
        "words": [[w.text, w.start, w.end] for w in speech.words],
        "phonemes": [[p.symbol, p.start, p.end] for p in speech.phonemes],
    }
    buffer = io.BytesIO()
    np.savez(buffer, samples=speech.samples.astype(np.float32), rate=np.int64(speech.rate),
             timings=np.frombuffer(json.dumps(timings).encode(), dtype=np.uint8))
    with atomic_write(path) as f:
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
