"""How a line is said: delivery hints, and the pronunciation lexicon, for every voice engine.

A line's `delivery` (rate, pitch, volume, whisper, emphasis) is folded into the voice the
engine receives. Engines that can whisper, stress or shift pitch say so in `native_delivery`;
for the others the hint becomes what every engine can do (loudness in the mix and pace), so a
script sounds as intended, if less finely, whichever voices it is cast with.

The lexicon respells words before any engine sees them (`NASA: nasa`, `Siobhan: shiv-awn`);
subtitles keep the written text, and word timings are mapped back to the written words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

# words a writer puts in a parenthetical or a `delivery:` string, and what they set
VOCABULARY: dict[str, dict] = {
    "whisper": {"whisper": True}, "whispering": {"whisper": True}, "whispered": {"whisper": True},
    "emphasis": {"emphasis": True}, "emphatic": {"emphasis": True}, "stressed": {"emphasis": True},
    "fast": {"rate": 1.25}, "quickly": {"rate": 1.25}, "rushed": {"rate": 1.35},
    "slow": {"rate": 0.8}, "slowly": {"rate": 0.8},
    "loud": {"volume": 1.6}, "shouting": {"volume": 1.8, "emphasis": True},
    "quiet": {"volume": 0.6}, "quietly": {"volume": 0.6}, "softly": {"volume": 0.6},
    "high": {"pitch": 2.0}, "low": {"pitch": -2.0},
}

# what a hint becomes for an engine that cannot do it itself: gain in the mix, pace
WHISPER_FALLBACK = {"gain": 0.5, "rate": 0.95}
EMPHASIS_FALLBACK = {"gain": 1.3, "rate": 0.92}


def parse_delivery_words(text: str) -> dict:
    """'whispering, slowly' -> {'whisper': True, 'rate': 0.8}; ValueError naming an unknown word."""
    fields: dict = {}
    for word in re.split(r"[,\s]+", text.strip().lower()):
        if not word:
            continue
        if word not in VOCABULARY:
            raise ValueError(f"unknown delivery word {word!r}; known: {', '.join(sorted(VOCABULARY))} "
                             f"(or a mapping: rate, pitch, volume, whisper, emphasis)")
        fields.update(VOCABULARY[word])
    return fields


@dataclass(frozen=True)
class Rendition:
    voice: object  # the Voice the engine gets
    gain: float  # extra gain of this line in the mix


def rendition(voice, delivery, native: frozenset) -> Rendition:
    """The voice and mix gain for one line with its delivery hints, as far as the engine can go."""
    if delivery is None:
        return Rendition(voice, 1.0)
    rate, gain = voice.rate * delivery.rate, delivery.volume
    # an engine without pitch control (Piper, Coqui) says the line at the voice's own pitch
    pitch = voice.pitch + delivery.pitch if "pitch" in native else voice.pitch
    whisper, emphasis = voice.whisper or delivery.whisper, voice.emphasis or delivery.emphasis
    for wanted, name, fallback in ((whisper, "whisper", WHISPER_FALLBACK), (emphasis, "emphasis", EMPHASIS_FALLBACK)):
        if wanted and name not in native:
            gain, rate = gain * fallback["gain"], rate * fallback["rate"]
    update = {"rate": min(max(rate, 0.25), 4.0), "pitch": min(max(pitch, -24.0), 24.0),
              "whisper": whisper and "whisper" in native, "emphasis": emphasis and "emphasis" in native}
    return Rendition(voice.model_copy(update=update), gain)


@dataclass(frozen=True)
class Respelling:
    written: str
    spoken: str


def apply_lexicon(text: str, lexicon: dict[str, str]) -> tuple[str, list[Respelling]]:
    """The text to speak, and each respelling made, in order. Whole words only; a key with capitals
    (an acronym, a name) matches exactly, an all-lowercase key in any case."""
    if not lexicon:
        return text, []
    made: list[Respelling] = []
    pattern = _lexicon_pattern(tuple(sorted(lexicon, key=len, reverse=True)))  # "New York" before "New"

    def respell(match: re.Match) -> str:
        word = match.group(0)
        key = word if word in lexicon else word.lower()
        if key not in lexicon or (key != word and not key.islower()):
            return word
        made.append(Respelling(word, lexicon[key]))
        return lexicon[key]

    return pattern.sub(respell, text), made


@lru_cache(maxsize=8)
def _lexicon_pattern(keys: tuple[str, ...]) -> re.Pattern:
    """One pattern per lexicon, compiled once for all its lines."""
    return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, keys)) + r")(?!\w)", re.IGNORECASE)


def restore_words(words: list, respellings: list[Respelling]) -> list:
    """Word timings of the spoken text with each respelling's words merged back into the written word."""
    if not respellings:
        return words
    restored, pending = [], list(respellings)
    i = 0
    while i < len(words):
        if pending:
            spoken = _tokens(pending[0].spoken)
            found = [_token(w.text) for w in words[i:i + len(spoken)]]
            if spoken and found == spoken:
                restored.append(replace(words[i], text=pending.pop(0).written, end=words[i + len(spoken) - 1].end))
                i += len(spoken)
                continue
        restored.append(words[i])
        i += 1
    return restored


def _tokens(text: str) -> list[str]:
    return [_token(t) for t in text.split() if _token(t)]


def _token(text: str) -> str:
    return re.sub(r"[^\w]", "", text.lower())
