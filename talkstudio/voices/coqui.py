"""Coqui TTS (the `coqui-tts` package) from local model folders: XTTS-v2 voice cloning and VITS.

Models are only ever loaded from a folder given as `model:`; nothing is downloaded,
so coqui's model catalogue, its download code and its licence prompt are never
reached. XTTS-v2 weights are under the Coqui Public Model License (CPML), which
coqui asks users to accept on download; talkstudio asks for that agreement as
configuration instead (`settings: {agree_cpml: true}`, COQUI_TOS_AGREED=1, or the
`tos_agreed.txt` coqui leaves in a folder it downloaded) and never reads stdin.

Everything the checks need is read from the folder's config.json, so screenplays
are checked in CI and on machines where coqui-tts cannot be imported; torch is
imported only to list the speakers stored in .pth files.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talkstudio.voices import Speech, VoiceInfo, Word
from talkstudio.voices.common import OUTER_PUNCTUATION

if TYPE_CHECKING:
    from talkstudio.screenplay import Voice

INSTALL_HINT = (
    "install it with `pip install 'talkstudio[coqui]'`; coqui-tts needs torch, torchaudio and torchcodec "
    "builds that load together, e.g. a CUDA torch with its matching torchaudio (PyPI's torchaudio wheels "
    "link CUDA libraries, so they fail to load next to a CPU-only torch)"
)
CPML_HINT = (
    "XTTS-v2 weights are under the Coqui Public Model License (non-commercial, https://coqui.ai/cpml); "
    "if you accept it, set `settings: {agree_cpml: true}` on the voice or COQUI_TOS_AGREED=1"
)
# the names coqui's ModelManager looks for when it unpacks a VITS release
VITS_CHECKPOINTS = ("model.pth", "model_file.pth", "model_file.pth.tar", "checkpoint.pth")
# config keys naming auxiliary files; a downloaded model's config holds absolute paths on the machine it
# was downloaded to, so when one is missing the file of the same name in the model folder is used
AUXILIARY_KEYS = ("speakers_file", "speaker_file", "d_vector_file", "language_ids_file",
                  "speaker_encoder_model_path", "speaker_encoder_config_path")
SETTINGS = {
    "xtts": {"temperature": float, "top_k": int, "top_p": float, "repetition_penalty": float, "length_penalty": float},
    "vits": {"noise_scale": float, "noise_scale_dp": float},
}
COMMON_SETTINGS = {"agree_cpml": bool, "seed": int}
SENTENCE_GAP_S = 0.3
EDGE_MARGIN_S = 0.01
VOICED_BELOW_PEAK_DB = 35  # samples this far under the clip's peak count as silence
FORMAT = 1  # bump when the way text becomes audio here changes


class ModelFolderError(ValueError):
    pass


@dataclass(frozen=True)
class ModelFolder:
    """What config.json and the files beside it say about a coqui model."""

    path: Path
    kind: str  # "xtts" or "vits"
    checkpoint: Path  # what coqui loads: the folder for XTTS, the .pth file for VITS
    rate: int
    languages: tuple[str, ...]  # empty when the model takes no language
    multi_speaker: bool
    config: dict = field(repr=False, compare=False)
    auxiliary: dict[str, str] = field(default_factory=dict, compare=False)  # config key -> resolved file

    @property
    def external_files(self) -> list[Path]:
        """Auxiliary files outside the folder: the folder's own hash does not cover them."""
        return sorted({Path(p) for p in self.auxiliary.values() if not Path(p).is_relative_to(self.path)})

    def speaker_names(self) -> list[str] | None:
        """The speakers the model knows; None where that needs torch and torch cannot be imported."""
        if self.kind == "xtts":
            file = self.path / "speakers_xtts.pth"
            return sorted(_load_keys(file)) if file.is_file() else []
        if names := _setting(self.config, "speakers"):
            return list(names)
        for key in ("speakers_file", "speaker_file"):
            if key in self.auxiliary:
                return _load_keys(Path(self.auxiliary[key]))
        if "d_vector_file" in self.auxiliary:
            embeddings = _load_file(Path(self.auxiliary["d_vector_file"]))
            return None if embeddings is None else sorted({e["name"] for e in embeddings.values()})
        return []


def read_model(folder: Path) -> ModelFolder:
    """The model in `folder`, checked without coqui; ModelFolderError says what is wrong."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not folder.is_dir():
        raise ModelFolderError(f"coqui models are folders (config.json + checkpoint); '{folder}' is not a folder")
    if not config_file.is_file():
        raise ModelFolderError(f"the coqui model folder '{folder}' has no config.json")
    return _read_model(folder.resolve(), config_file.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _read_model(folder: Path, _config_mtime: int) -> ModelFolder:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelFolderError(f"{folder / 'config.json'} cannot be read: {error}") from None
    kind = str(config.get("model", "")).lower()
    audio = config.get("audio") or {}
    rate = int(audio.get("output_sample_rate") or audio.get("sample_rate") or 0)
    if kind == "xtts":
        _require(folder, ["model.pth"] + ([] if _xtts_tokenizer(folder, config) else ["vocab.json"]))
        return ModelFolder(folder, kind, folder, rate or 24000, tuple(config.get("languages") or ()), True, config)
    if kind == "vits":
        auxiliary = _auxiliary_files(folder, config)
        languages = _vits_languages(config, auxiliary)
        multi = bool(_setting(config, "use_speaker_embedding") or _setting(config, "use_d_vector_file"))
        return ModelFolder(folder, kind, _vits_checkpoint(folder), rate or 22050, languages, multi, config, auxiliary)
    raise ModelFolderError(
        f"{folder / 'config.json'} describes a '{kind or '?'}' model; the coqui engine loads XTTS (model: xtts) "
        "and VITS (model: vits) folders, which need no separate vocoder")


def _require(folder: Path, names: list[str]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise ModelFolderError(f"the XTTS folder '{folder}' lacks {', '.join(missing)} "
                               "(an XTTS-v2 folder holds config.json, model.pth, vocab.json and speakers_xtts.pth)")


def _xtts_tokenizer(folder: Path, config: dict) -> bool:
    tokenizer = _setting(config, "tokenizer_file")
    return (folder / "vocab.json").is_file() or bool(tokenizer and Path(tokenizer).is_file())


def _vits_checkpoint(folder: Path) -> Path:
    for name in VITS_CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.glob("*.pth") if not p.name.startswith(("speaker", "model_se")))
    if len(candidates) == 1:
        return candidates[0]
    found = f" (found {', '.join(p.name for p in candidates)})" if candidates else ""
    raise ModelFolderError(f"the VITS folder '{folder}' needs one checkpoint named {' or '.join(VITS_CHECKPOINTS)}{found}")


def _setting(config: dict, key: str):
    """A value coqui reads from the config or, failing that, from its model_args."""
    value = config.get(key)
    return value if value not in (None, "", []) else (config.get("model_args") or {}).get(key)


def _auxiliary_files(folder: Path, config: dict) -> dict[str, str]:
    found = {}
    for key in AUXILIARY_KEYS:
        named = _setting(config, key)
        named = named[0] if isinstance(named, list) else named
        if not named:
            continue
        given = Path(named)
        for candidate in (given if given.is_absolute() else folder / given, folder / given.name):
            if candidate.is_file():
                found[key] = str(candidate)
                break
        else:
            raise ModelFolderError(f"{folder / 'config.json'} names {key} '{named}', which is neither there "
                                   f"nor in the model folder: copy {given.name} into '{folder}'")
    return found


def _vits_languages(config: dict, auxiliary: dict[str, str]) -> tuple[str, ...]:
    if not _setting(config, "use_language_embedding"):
        return ()
    if "language_ids_file" in auxiliary:
        return tuple(json.loads(Path(auxiliary["language_ids_file"]).read_text(encoding="utf-8")))
    return tuple(config.get("languages") or ())


def _load_file(path: Path):
    """A coqui id or embedding file (.json, or .pth through torch); None when torch is missing."""
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    try:
        import torch
    except (ImportError, OSError):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_keys(path: Path) -> list[str] | None:
    loaded = _load_file(path)
    return None if loaded is None else list(loaded)


def match_language(language: str, languages: tuple[str, ...]) -> str | None:
    """The model's name for `language`: exact, else by its primary subtag (en-us -> en, zh -> zh-cn)."""
    by_lower = {name.lower(): name for name in languages}
    wanted = language.lower().replace("_", "-")
    if wanted in by_lower:
        return by_lower[wanted]
    primary = wanted.split("-")[0]
    return by_lower.get(primary) or next((n for low, n in by_lower.items() if low.split("-")[0] == primary), None)


def cpml_agreed(voice: Voice, model: ModelFolder) -> bool:
    return (voice.settings.get("agree_cpml") is True or os.environ.get("COQUI_TOS_AGREED") == "1"
            or (model.path / "tos_agreed.txt").is_file())


def estimate_words(text: str, start: float, end: float) -> list[Word]:
    """Spread the voiced span [start, end] of a sentence over its words by character count.

    Coqui returns audio only: XTTS has no alignment at all, and VITS's alignment indexes the
    cleaned (and usually phonemised) token sequence, not the written words. Spoken length
    follows written length closely enough for captions and mouth timing.
    """
    words = [w for token in text.split() if (w := token.strip(OUTER_PUNCTUATION) or token) and _speakable(w)]
    total = sum(len(w) for w in words)
    timed, elapsed = [], 0
    for word in words:
        begin = start + (end - start) * elapsed / total
        elapsed += len(word)
        timed.append(Word(word, begin, start + (end - start) * elapsed / total))
    return timed


def _speakable(word: str) -> bool:
    return any(c.isalnum() for c in word)


def voiced_span(samples: np.ndarray) -> tuple[int, int] | None:
    """First and one-past-last sample louder than the silence threshold, None for a silent clip."""
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak == 0.0:
        return None
    voiced = np.flatnonzero(np.abs(samples) > peak * 10 ** (-VOICED_BELOW_PEAK_DB / 20))
    return int(voiced[0]), int(voiced[-1]) + 1


def assemble(sentences: list[tuple[str, np.ndarray]], rate: int) -> Speech:
    """Join sentence clips, each cut to its voiced span, with a fixed gap; estimate the word timings."""
    margin, gap = int(EDGE_MARGIN_S * rate), np.zeros(int(SENTENCE_GAP_S * rate), np.float32)
    pieces: list[np.ndarray] = []
    words: list[Word] = []
    offset = 0
    for text, samples in sentences:
        span = voiced_span(samples)
        if span is None:
            continue
        first, last = max(span[0] - margin, 0), min(span[1] + margin, len(samples))
        if pieces:
            pieces.append(gap)
            offset += len(gap)
        words += estimate_words(text, (offset + span[0] - first) / rate, (offset + span[1] - first) / rate)
        pieces.append(samples[first:last].astype(np.float32))
        offset += last - first
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return Speech(np.clip(audio, -1.0, 1.0), rate, words)


def condensed(error: BaseException, limit: int = 400) -> str:
    """An exception and its causes on one line: `TypeName: message (cause: ...)`."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(f"{type(error).__name__}: {' '.join(str(error).split())}")
        error = error.__cause__ or error.__context__
    text = parts[0] + "".join(f" (cause: {p})" for p in parts[1:])
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=1)
def coqui_import_problem() -> str | None:
    """Why coqui-tts cannot be used here, or None. Importing TTS.api loads torchaudio, where stacks break."""
    try:
        import TTS.api  # noqa: F401
    except Exception as error:  # noqa: BLE001 - ImportError, OSError from native libraries, and worse
        return f"coqui-tts cannot be imported ({condensed(error)}); {INSTALL_HINT}"
    return None


def _require_coqui() -> None:
    if problem := coqui_import_problem():
        raise ImportError(problem)


@contextmanager
def _no_prompts():
    """Any terms-of-service prompt coqui might show reads an empty stdin and fails, never waits."""
    real = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        yield
    except EOFError:
        raise RuntimeError(f"coqui asked for an answer on stdin, which talkstudio never gives; {CPML_HINT}") from None
    finally:
        sys.stdin = real


_lock = threading.Lock()


class CoquiEngine:
    name = "coqui"

    def __init__(self):
        self._loaded: dict[Path, object] = {}  # checkpoint -> TTS.api.TTS

    def version(self) -> str:
        _require_coqui()
        return f"coqui-tts {importlib.metadata.version('coqui-tts')} torch {importlib.metadata.version('torch')}"

    def voices(self, model: Path | None = None) -> list[VoiceInfo]:
        """The speakers and languages of a model folder; without one, none: offline there is no catalogue."""
        if model is None:
            _require_coqui()
            return []
        try:
            folder = read_model(Path(model))
        except ModelFolderError as error:
            raise ValueError(str(error)) from None
        languages = ", ".join(folder.languages)
        infos = [VoiceInfo(folder.path.name, f"{folder.kind.upper()} model, {folder.rate} Hz"
                           + (f"; languages: {languages}" if languages else ""), "", "model")]
        infos += [VoiceInfo(name, f"speaker of {folder.path.name}", "", "speaker")
                  for name in folder.speaker_names() or []]
        return infos

    def check(self, voice: Voice) -> list[str]:
        problems = [p for p in [coqui_import_problem()] if p]
        if voice.model is None:
            return problems + ["coqui needs `model:` a local model folder (XTTS-v2 or VITS: config.json + checkpoint)"]
        try:
            model = read_model(voice.model)
        except ModelFolderError as error:
            return problems + [str(error)]
        problems += self._check_settings(voice, model)
        if voice.pitch:
            problems.append("coqui models cannot shift pitch; remove `pitch` (rate works: it sets the model's speed)")
        check = self._check_xtts if model.kind == "xtts" else self._check_vits
        return problems + check(voice, model)

    def _check_settings(self, voice: Voice, model: ModelFolder) -> list[str]:
        allowed = {**COMMON_SETTINGS, **SETTINGS[model.kind]}
        problems = []
        for key, value in voice.settings.items():
            kind = allowed.get(key)
            if kind is None:
                problems.append(f"coqui {model.kind.upper()} has no setting '{key}'; settings: {', '.join(allowed)}")
            elif not _is_a(value, kind):
                problems.append(f"coqui setting '{key}' must be {kind.__name__}, not {value!r}")
        return problems

    def _check_xtts(self, voice: Voice, model: ModelFolder) -> list[str]:
        problems = []
        if not voice.language:
            problems.append(f"XTTS needs `language:` for each character; the model speaks {', '.join(model.languages)}")
        elif match_language(voice.language, model.languages) is None:
            problems.append(f"this XTTS model does not speak '{voice.language}'; it speaks {', '.join(model.languages)}")
        if voice.id and voice.reference:
            problems.append("XTTS takes either a built-in speaker (`id`) or a recording to clone (`reference`), not both")
        elif voice.id:
            problems += _unknown_speaker(voice.id, model)
        elif not voice.reference:
            problems.append("XTTS clones a voice: give `reference:` a clean recording of 6-30 s, "
                            "or `id:` one of the model's built-in speakers")
        if not cpml_agreed(voice, model):
            problems.append(CPML_HINT)
        return problems

    def _check_vits(self, voice: Voice, model: ModelFolder) -> list[str]:
        problems = []
        if voice.reference:
            problems.append("this VITS voice speaks as one of the model's speakers (`id`); it clones no `reference`")
        if model.multi_speaker and not voice.id:
            names = model.speaker_names()
            problems.append("this VITS model has several speakers: choose one with `id`"
                            + (f" ({_listing(names)})" if names else ""))
        elif model.multi_speaker:
            problems += _unknown_speaker(voice.id, model)
        elif voice.id:
            problems.append(f"this VITS model has a single speaker; remove `id: {voice.id}`")
        if model.languages and not voice.language:
            problems.append(f"this VITS model is multilingual: set `language` ({', '.join(model.languages)})")
        elif model.languages and match_language(voice.language, model.languages) is None:
            problems.append(f"this VITS model does not speak '{voice.language}'; it speaks {', '.join(model.languages)}")
        return problems

    def sample_rate(self, voice: Voice) -> int:
        return read_model(voice.model).rate

    def cache_identity(self, voice: Voice) -> dict:
        # speech_key already hashes every file in the model folder and the reference recording
        from talkstudio.cache import file_digest

        model = read_model(voice.model)
        return {
            "format": FORMAT,
            "kind": model.kind,
            "checkpoint": model.checkpoint.name,
            "external": {str(p): file_digest(p) for p in model.external_files},
            "language": self._language(voice, model),
            "speaker": voice.id,
            "speed": voice.rate,
            "settings": {k: v for k, v in sorted(voice.settings.items()) if k != "agree_cpml"},
        }

    def synthesize(self, text: str, voice: Voice) -> Speech:
        problems = self.check(voice)
        if problems:
            raise ValueError("; ".join(problems))
        model = read_model(voice.model)
        import torch

        with _lock, _no_prompts():
            tts = self._load(model)
            options = self._options(voice, model, tts)
            clips = []
            for sentence in _sentences(text, options.get("language") or "en"):
                torch.manual_seed(int(voice.settings.get("seed", 0)))  # XTTS samples; VITS adds noise
                clips.append((sentence, np.asarray(tts.tts(sentence, split_sentences=False, **options), np.float32)))
        return assemble(clips, model.rate)

    def _language(self, voice: Voice, model: ModelFolder) -> str | None:
        return match_language(voice.language, model.languages) if model.languages and voice.language else None

    def _options(self, voice: Voice, model: ModelFolder, tts) -> dict:
        """Arguments for TTS.tts; VITS reads speed and noise from attributes of the shared model."""
        options = {"language": self._language(voice, model)}
        settings = {k: v for k, v in voice.settings.items() if k in SETTINGS[model.kind]}
        if model.kind == "xtts":
            clone = {"speaker": voice.id} if voice.id else {"speaker_wav": str(voice.reference)}
            return options | clone | {"speed": voice.rate} | settings
        args = tts.synthesizer.tts_model.args
        network = tts.synthesizer.tts_model
        network.length_scale = args.length_scale / voice.rate
        network.inference_noise_scale = settings.get("noise_scale", args.inference_noise_scale)
        network.inference_noise_scale_dp = settings.get("noise_scale_dp", args.inference_noise_scale_dp)
        return options | ({"speaker": voice.id} if model.multi_speaker else {})

    def _load(self, model: ModelFolder):
        if model.checkpoint not in self._loaded:
            _require_coqui()
            from TTS.api import TTS

            with _config_for_coqui(model) as config:
                self._loaded[model.checkpoint] = TTS(model_path=str(model.checkpoint), config_path=str(config),
                                                     progress_bar=False)
        return self._loaded[model.checkpoint]


@contextmanager
def _config_for_coqui(model: ModelFolder):
    """config.json, or a copy naming the auxiliary files where they really are."""
    config = json.loads(json.dumps(model.config))
    for key, path in model.auxiliary.items():
        for section in (config, config.get("model_args") or {}):
            if section.get(key):
                section[key] = [path] if isinstance(section[key], list) else path
    if config == model.config:
        yield model.path / "config.json"
        return
    with tempfile.TemporaryDirectory(prefix="talkstudio-coqui-") as folder:
        patched = Path(folder) / "config.json"
        patched.write_text(json.dumps(config), encoding="utf-8")
        yield patched


def _sentences(text: str, language: str) -> list[str]:
    """Sentences as written (pysbd, which coqui uses too), synthesised one at a time like coqui does."""
    import pysbd

    primary = language.split("-")[0]
    segmenter = pysbd.Segmenter(language=primary if primary in pysbd.languages.LANGUAGE_CODES else "en", clean=False)
    return [s.strip() for s in segmenter.segment(text) if _speakable(s)]


def _unknown_speaker(speaker: str, model: ModelFolder) -> list[str]:
    names = model.speaker_names()
    if names is None or speaker in names:
        return []
    if not names:
        return [f"this {model.kind.upper()} model has no built-in speakers, so `id: {speaker}` names none"]
    return [f"this {model.kind.upper()} model has no speaker '{speaker}'; speakers: {_listing(names)}"]


def _listing(names: list[str], shown: int = 12) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def _is_a(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)
