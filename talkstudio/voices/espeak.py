"""espeak-ng through ctypes, from the `espeakng-loader` wheel (library + data, no apt).

Text is sent as SSML with every character escaped, so quotes, `<`, `&`, emoji
and any script are spoken as text and never parsed as markup; an offset map
turns espeak's character positions back into positions in the original text
for word timings.

espeak-ng keeps state from one utterance to the next (pitch flutter, echo
buffers) and seeds its noise from the clock, so the same text spoken twice
differs slightly. To make the audio a pure function of text and voice, each
utterance is synthesised with a fixed seed in a child forked from a process
whose espeak is initialised but has never spoken: every child starts from the
same pristine state.
"""

from __future__ import annotations

import ctypes
import os
import threading
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import numpy as np

from talkstudio.voices import Phoneme, Speech, VoiceInfo, Word
from talkstudio.voices.common import OUTER_PUNCTUATION, SILENCE_FLOOR, TOKEN, in_forked_child, trim_edges

if TYPE_CHECKING:
    from talkstudio.screenplay import Voice

# espeak_AUDIO_OUTPUT / options / flags / event types from speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_PHONEME_IPA = 0x0002
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
SSML = 0x10
POS_CHARACTER = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7
PARAM_RATE = 1
PARAM_PITCH = 3
PARAM_RANGE = 4

DEFAULT_WPM = 175
MIN_WPM, MAX_WPM = 80, 450
# espeak's pitch parameter (0-99, 50 = the voice's own) is close to exponential
# with about 6.2 steps per semitone (measured: benchmarks/espeak_pitch.py), so
# espeak reaches about 8 semitones either way; further shifts are clamped.
PITCH_STEPS_PER_SEMITONE = 6.2
RANDOM_SEED = 1


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters of the input
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),  # samples since the start of this synthesis
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # phoneme name (IPA, UTF-8) for phoneme events
    ]


class _VoiceStruct(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Preset:
    language: str
    variant: str
    description: str
    pitch: float = 0.0  # semitones added to the character's own pitch
    rate: float = 1.0
    range: int = 50  # espeak intonation range, 0-99


# Named voices chosen to be told apart easily: accent, register and tempo differ.
PRESETS: dict[str, Preset] = {
    "ava": Preset("en-us", "f3", "female, US, bright", pitch=1.0),
    "ben": Preset("en-us", "m3", "male, US, mid", pitch=-1.0),
    "clara": Preset("en-gb-x-rp", "f2", "female, British RP, calm", rate=0.95, range=40),
    "dan": Preset("en-gb-scotland", "m2", "male, Scottish, lively", rate=1.05, range=70),
    "eve": Preset("en-us", "f5", "female, US, high and quick", pitch=3.0, rate=1.1, range=65),
    "frank": Preset("en-gb", "m7", "male, British, deep and slow", pitch=-4.0, rate=0.9, range=35),
    "nora": Preset("en-gb-x-rp", "f4", "female narrator, British RP, measured", pitch=-1.0, rate=0.92, range=45),
    "raj": Preset("en-029", "m1", "male, Caribbean English, warm", pitch=-2.0),
}

EMPHASIS_RATE = 0.9
EMPHASIS_RANGE = 30

_lock = threading.Lock()


def _espeak_data() -> tuple[str, str]:
    import espeakng_loader

    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class _Library:
    """The loaded libespeak-ng, initialised once per process."""

    def __init__(self):
        library_path, self.data_path = _espeak_data()
        self.lib = ctypes.CDLL(library_path)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Info.restype = ctypes.c_char_p
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        options = INITIALIZE_DONT_EXIT | INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA
        self.rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), options)
        if self.rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {self.data_path}")
        self.version = self.lib.espeak_Info(None).decode()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _SynthCallback(self._collect)  # kept alive as long as the library
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            self._events.append((e.type, e.text_position, e.length, e.sample, bytes(e.id)))
            i += 1
        return 0

    def synth(self, ssml: str, voice_name: str, wpm: int, pitch: int, pitch_range: int):
        if self.lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice '{voice_name}'")
        self.lib.espeak_SetParameter(PARAM_RATE, wpm, 0)
        self.lib.espeak_SetParameter(PARAM_PITCH, pitch, 0)
        self.lib.espeak_SetParameter(PARAM_RANGE, pitch_range, 0)
        self._chunks, self._events = [], []
        # espeak seeds its noise generator from the clock at initialisation; fix it
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(RANDOM_SEED))
        ctypes.CDLL(None).srand(RANDOM_SEED)
        data = ssml.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | SSML, None, None)
        self.lib.espeak_Synchronize()
        if status != 0:
            raise RuntimeError(f"espeak-ng synthesis failed (error {status})")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return samples, self._events

    def list_voices(self) -> list[tuple[str, str, list[str]]]:
        """(name, identifier, languages) of every voice espeak-ng knows."""
        result = []
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            v = voices[i].contents
            result.append((v.name.decode(), v.identifier.decode(), _languages(v.languages)))
            i += 1
        return result


def _languages(pointer: int) -> list[str]:
    """Decode espeak's list of (priority byte, NUL-terminated language) pairs."""
    names, offset = [], 0
    while True:
        priority = ctypes.c_ubyte.from_address(pointer + offset).value
        if priority == 0:
            return names
        name = ctypes.string_at(pointer + offset + 1).decode()
        names.append(name)
        offset += 2 + len(name)


_library: _Library | None = None


def _lib() -> _Library:
    global _library
    if _library is None:
        _library = _Library()
    return _library


def to_ssml(text: str) -> tuple[str, list[int]]:
    """Escape `text` into an SSML document and map each SSML character to its text offset."""
    head, tail = "<speak>", "</speak>"
    parts, offsets = [head], [0] * len(head)
    for i, char in enumerate(text):
        if char in "\n\r\t":
            char = " "
        elif ord(char) < 32 or 0xD800 <= ord(char) <= 0xDFFF:
            continue  # control characters and lone surrogates cannot be spoken or encoded
        piece = escape(char, {'"': "&quot;", "'": "&apos;"})
        parts.append(piece)
        offsets.extend([i] * len(piece))
    parts.append(tail)
    offsets.extend([len(text)] * len(tail))
    return "".join(parts), offsets




class EspeakEngine:
    name = "espeak"
    native_delivery = frozenset({"whisper", "emphasis", "pitch"})

    def version(self) -> str:
        return f"espeak-ng {_lib().version}"

    @cached_property
    def _variants(self) -> list[str]:
        return sorted(os.listdir(Path(_espeak_data()[1]) / "voices" / "!v"))

    @cached_property
    def _languages(self) -> dict[str, tuple[str, str]]:
        """language code -> (voice file to load, voice name); a voice's first language wins."""
        known: dict[str, tuple[str, str]] = {}
        voices = in_forked_child("espeak-ng", _lib().list_voices)  # listing loads voice files: keep that out of this process
        for rank in range(4):
            for name, identifier, languages in voices:
                if rank < len(languages):
                    known.setdefault(languages[rank], (identifier.split("/")[-1], name))
        return known

    def voices(self, model=None) -> list[VoiceInfo]:
        if model is not None:
            raise ValueError("espeak has no model files; `talkstudio voices --engine espeak` lists its voices")
        infos = [VoiceInfo(name, p.description, p.language, "preset") for name, p in PRESETS.items()]
        infos += [VoiceInfo(lang, name, lang, "language") for lang, (_, name) in sorted(self._languages.items())]
        infos += [VoiceInfo(f"+{v}", "variant: add to a language, e.g. en-us+" + v, "", "variant") for v in self._variants]
        return infos

    def _resolve(self, voice: Voice) -> tuple[str, Preset]:
        """The voice as 'language+variant' and its preset, for a voice setting."""
        voice_id = voice.id or "ava"
        if voice_id in PRESETS:
            preset = PRESETS[voice_id]
            return f"{voice.language or preset.language}+{preset.variant}", preset
        language, _, variant = voice_id.partition("+")
        language = voice.language or language
        return (f"{language}+{variant}" if variant else language), Preset(language, variant, "")

    def _voice_file(self, name: str) -> str:
        """espeak loads voices by file name: 'en-gb+m7' -> 'en+m7'."""
        language, _, variant = name.partition("+")
        file = self._languages.get(language.lower(), (language, ""))[0]
        return f"{file}+{variant}" if variant else file

    def check(self, voice: Voice) -> list[str]:
        name, _ = self._resolve(voice)
        language, _, variant = name.partition("+")
        problems = []
        if voice.model or voice.reference:
            problems.append("espeak uses no model or reference recording; remove 'model'/'reference' or pick another engine")
        if voice.settings:
            problems.append(f"espeak has no settings ({', '.join(voice.settings)}); use rate and pitch instead")
        if (voice.id or "ava") in PRESETS and not voice.language:
            return problems
        if language.lower() not in self._languages:
            close = [k for k in self._languages if k.split("-")[0] == language.split("-")[0]][:6]
            problems.append(
                f"espeak has no language '{language}'"
                + (f" (close: {', '.join(close)})" if close else "")
                + f"; presets: {', '.join(PRESETS)}; see `talkstudio voices --engine espeak`"
            )
        if variant and variant not in self._variants:
            problems.append(f"espeak has no variant '{variant}'; variants include {', '.join(self._variants[:12])}, ...")
        return problems

    def sample_rate(self, voice: Voice) -> int:
        return _lib().rate

    def _parameters(self, voice: Voice) -> tuple[str, int, int, int]:
        name, preset = self._resolve(voice)
        rate, pitch_range = preset.rate * voice.rate, preset.range
        if voice.whisper:  # espeak's whisper variant replaces the preset's timbre: breath has no pitch
            name = name.partition("+")[0] + "+whisper"
        if voice.emphasis:  # stress as a speaker does it: wider intonation, a little slower
            rate, pitch_range = rate * EMPHASIS_RATE, min(pitch_range + EMPHASIS_RANGE, 99)
        wpm = round(DEFAULT_WPM * rate)
        pitch = round(50 + PITCH_STEPS_PER_SEMITONE * (preset.pitch + voice.pitch))
        return name, min(max(wpm, MIN_WPM), MAX_WPM), min(max(pitch, 0), 99), pitch_range

    def cache_identity(self, voice: Voice) -> dict:
        name, wpm, pitch, pitch_range = self._parameters(voice)
        return {"voice": name, "wpm": wpm, "pitch": pitch, "range": pitch_range}

    def synthesize(self, text: str, voice: Voice) -> Speech:
        name, wpm, pitch, pitch_range = self._parameters(voice)
        ssml, offsets = to_ssml(text)
        with _lock:
            library = _lib()
            pcm, events = in_forked_child("espeak-ng", library.synth, ssml, self._voice_file(name), wpm, pitch, pitch_range)
        rate = library.rate
        samples = pcm.astype(np.float32) / 32768.0
        words, phonemes = _timings(text, offsets, events, samples, rate)
        return trim_edges(Speech(samples, rate, words, phonemes))


def _timings(text, offsets, events, samples, rate) -> tuple[list[Word], list[Phoneme]]:
    """Word and phoneme spans from espeak's events; a span ends where the next one starts."""
    boundaries = sorted({e[3] for e in events if e[0] in (EVENT_WORD, EVENT_END, EVENT_PHONEME)} | {len(samples)})

    def next_boundary(sample: int) -> int:
        return boundaries[min(bisect_right(boundaries, sample), len(boundaries) - 1)]

    phonemes = [
        Phoneme(symbol, sample / rate, next_boundary(sample) / rate)
        for kind, _, _, sample, name in events
        if kind == EVENT_PHONEME and (symbol := name.split(b"\0")[0].decode("utf-8", "replace")).strip()
    ]
    # a word spelled out letter by letter comes as several events at one text position
    starts: dict[int, int] = {}
    for kind, position, _, sample, _ in events:
        if kind == EVENT_WORD:
            starts.setdefault(position, sample)
    positions = list(starts)
    words = []
    for index, position in enumerate(positions):
        word = _word_text(text, offsets, position)
        sample = starts[position]
        following = starts[positions[index + 1]] if index + 1 < len(positions) else len(samples)
        end = _last_voiced(samples, sample, following)
        if word:
            words.append(Word(word, sample / rate, max(end, sample) / rate))
    return words, phonemes


def _word_text(text: str, offsets: list[int], position: int) -> str:
    """The written word espeak's event points at: its whole token, outer punctuation stripped."""
    index = position - 1
    if not 0 <= index < len(offsets):
        return ""
    match = TOKEN.match(text, offsets[index])
    token = match.group(0) if match else ""
    return token.strip(OUTER_PUNCTUATION) or token


def _last_voiced(samples: np.ndarray, start: int, stop: int) -> int:
    voiced = np.flatnonzero(np.abs(samples[start:stop]) > SILENCE_FLOOR)
    return start + int(voiced[-1]) + 1 if len(voiced) else start


