"""Voices: the TTS protocol and the registry of engines by name.

An engine turns text into `Speech` (mono float32 samples, their rate, and word
timings within the clip). Engines are plugins: the built-in ones are listed
here, others register under the `talkstudio.voices` entry-point group with a
class that follows `VoiceEngine`. The core knows only the protocol.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from talkstudio.screenplay import Voice


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the clip
    end: float


@dataclass(frozen=True)
class Phoneme:
    symbol: str  # IPA where the engine gives it
    start: float
    end: float


@dataclass
class Speech:
    samples: np.ndarray  # float32, mono, in [-1, 1]
    rate: int
    words: list[Word] = field(default_factory=list)
    phonemes: list[Phoneme] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    description: str
    language: str = ""
    kind: str = "voice"  # "preset", "language", "variant", "speaker"...


class VoiceEngine(Protocol):
    name: str
    native_delivery: frozenset  # delivery hints it renders itself ("whisper", "emphasis"); others are approximated

    def version(self) -> str:
        """Engine and model version: part of every cache key."""

    def voices(self, model: Path | None = None) -> list[VoiceInfo]:
        """What this engine offers (in `model`, for engines with model files), for `talkstudio voices`."""

    def check(self, voice: Voice) -> list[str]:
        """Problems with a voice setting, found without synthesising (empty when fine)."""

    def sample_rate(self, voice: Voice) -> int:
        """The rate `synthesize` returns for this voice."""

    def cache_identity(self, voice: Voice) -> dict:
        """Everything besides the text that determines the audio (model file hashes included)."""

    def synthesize(self, text: str, voice: Voice) -> Speech:
        """Speak `text`; deterministic for the same text and voice."""


BUILTIN_ENGINES = {
    "espeak": "talkstudio.voices.espeak:EspeakEngine",
    "piper": "talkstudio.voices.piper:PiperEngine",
    "coqui": "talkstudio.voices.coqui:CoquiEngine",
}
ENTRY_POINT_GROUP = "talkstudio.voices"

_instances: dict[str, VoiceEngine] = {}


def _engine_targets() -> dict[str, str]:
    from importlib.metadata import entry_points

    targets = dict(BUILTIN_ENGINES)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        targets.setdefault(ep.name, ep.value)
    return targets


def engine_names() -> list[str]:
    return sorted(_engine_targets())


def get_engine(name: str) -> VoiceEngine:
    """The engine registered under `name` (one instance per process); KeyError if none."""
    if name not in _instances:
        target = _engine_targets()[name]
        module_name, _, attr = target.partition(":")
        engine_class = getattr(importlib.import_module(module_name), attr)
        _instances[name] = engine_class()
    return _instances[name]
