"""The screenplay: its schema, and parsing it with every check that needs nothing but the file.

`parse_screenplay(path)` reads the YAML (remembering line numbers), expands the
shorthands (`- ana: Hello`), validates types and ranges with pydantic, then
checks what pydantic cannot: speakers against the cast, files on disk, ids. Each
problem names file, line, column and field, and how to fix it; they are handed
on, not raised, so that `checks.load_screenplay` adds what needs the voice and
backend registries and reports everything at once. This module imports neither.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, WithJsonSchema

from talkstudio.errors import InputError, Problem
from talkstudio.sourcemap import SourceMap, load_yaml

DEFAULT_BACKEND = "puppet"

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
COLOUR_PATTERN = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
TEXT_KEYS = {"title", "name", "id", "prompt", "emotion", "text", "language", "engine", "speaker", "background"}
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")
FONT_SIGNATURES = (b"\x00\x01\x00\x00", b"OTTO", b"true", b"ttcf")
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}


def _parse_size(value: Any) -> Any:
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", value)
        if not match:
            raise ValueError("size must be WIDTHxHEIGHT, e.g. 832x480")
        return int(match[1]), int(match[2])
    return value


def _check_size(value: tuple[int, int]) -> tuple[int, int]:
    width, height = value
    for name, n in (("width", width), ("height", height)):
        if not 64 <= n <= 4096:
            raise ValueError(f"{name} {n} is outside 64..4096")
        if n % 2:
            raise ValueError(f"{name} {n} is odd; H.264 needs even sizes (use {n + 1})")
    return value


def _check_overlap(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("overlap is seconds (e.g. 0.8) or a share of the previous line (e.g. 60%)")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if not match or not 0 < float(match[1]) <= 100:
            raise ValueError("overlap is seconds (e.g. 0.8) or a share of the previous line from 1% to 100% (e.g. 60%)")
        return f"{float(match[1]):g}%"
    if value is not None and not 0 < value <= 30:
        raise ValueError("overlap in seconds must be more than 0 and at most 30")
    return value


def _check_face(value: Any) -> Any:
    if not (isinstance(value, (list, tuple)) and len(value) == 4):
        raise ValueError("a face box is [x, y, width, height] in pixels of the image")
    if value[2] <= 0 or value[3] <= 0 or value[0] < 0 or value[1] < 0:
        raise ValueError("a face box needs x, y >= 0 and width, height > 0")
    return value


Size = Annotated[
    tuple[int, int],
    BeforeValidator(_parse_size),
    AfterValidator(_check_size),
    Field(description="WIDTHxHEIGHT in pixels, e.g. 832x480, or [832, 480]"),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^\d+x\d+$"},
                              {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}]}),
]
FaceBox = Annotated[
    tuple[float, float, float, float],
    BeforeValidator(_check_face),
    Field(description="face box [x, y, width, height] in pixels of the image"),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Voice(_Model):
    """How a character sounds. A plain string is shorthand for `id`."""

    engine: str = Field("espeak", description="TTS engine: see `talkstudio voices`")
    id: str | None = Field(None, description="voice or speaker of the engine, e.g. 'ava' or 'en-gb+m3' for espeak")
    model: Path | None = Field(None, description="model file or folder for neural engines")
    reference: Path | None = Field(None, description="reference recording for voice-cloning engines")
    language: str | None = Field(None, description="language code, e.g. en-us, de, ja")
    rate: float = Field(1.0, ge=0.25, le=4.0, strict=True, description="speaking rate, 1.0 = normal")
    pitch: float = Field(0.0, ge=-24, le=24, strict=True, description="pitch shift in semitones")
    volume: float = Field(1.0, ge=0.0, le=4.0, strict=True, description="gain in the mix, 1.0 = as spoken")
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="engine-specific settings, e.g. piper noise_scale; see `talkstudio voices --engine E`")
    whisper: bool = Field(False, strict=True, description="whisper (natively where the engine can, else softer)")
    emphasis: bool = Field(False, strict=True, description="stress (natively where the engine can, else louder, slower)")


class FaceSettings(_Model):
    insightface_root: Path | None = Field(None, description="InsightFace model root (ROOT/models/buffalo_l); "
                                                            "default: the bundled mediapipe detector")
    det_thresh: float = Field(0.5, ge=0.05, le=0.99, strict=True, description="InsightFace detection threshold")


class Video(_Model):
    size: Size = (832, 480)
    fps: float | None = Field(None, ge=1, le=120, strict=True, description="frame rate; default: the backend's own")
    backend: str = Field(DEFAULT_BACKEND, description="generator: see `talkstudio doctor`")
    seed: int = Field(0, ge=0, le=2**31 - 1, strict=True, description="seed for everything random in the picture")
    faces: FaceSettings = Field(default_factory=FaceSettings, description="how faces are found in images")
    colour_match: bool | None = Field(None, strict=True, description="pull each chunk's colours to the stage image "
                                      "(against drift in long generated videos); default: on for generative backends")
    options: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description="backend settings, e.g. {steps: 20} (null or auto: the backend's choice); `talkstudio doctor` lists them")


class AudioSettings(_Model):
    sample_rate: int | None = Field(None, ge=8000, le=96000, strict=True,
                                    description="timeline sample rate; default: the highest rate of the voices used")
    loudness: float = Field(-16.0, ge=-40, le=-5, strict=True, description="integrated loudness of the mix, LUFS")
    true_peak: float = Field(-1.0, ge=-12, le=0, strict=True, description="ceiling for the mix's true peak, dBTP")


class Timing(_Model):
    lead_in: float = Field(0.3, ge=0, le=60, strict=True, description="silence before a scene's first line, seconds")
    gap: float = Field(0.35, ge=0, le=60, strict=True, description="silence between lines unless a line sets pause")
    tail: float = Field(0.8, ge=0, le=60, strict=True, description="silence after a scene's last line, seconds")


class SubtitleSettings(_Model):
    """How the dialogue is cut into subtitles. Unset limits follow the script's language (README: Subtitles)."""

    captions: Literal["plain", "karaoke", "pop"] = Field(
        "plain", description="plain subtitles; karaoke: each word lit as it is said; pop: one to three words at a time")
    names: Literal["first", "always", "never"] = Field(
        "first", description="name label: at a speaker's first subtitle in each scene, on every one, or never")
    position: Literal["bottom", "speaker"] = Field(
        "bottom", description="burned subtitles at the bottom, or under whoever speaks in a shot of several")
    max_chars: int | None = Field(None, ge=8, le=80, strict=True, description="characters per line "
                                  "(default by language: 42 Latin, 16 Chinese and Korean, 13 Japanese)")
    max_lines: int = Field(2, ge=1, le=3, strict=True, description="lines per subtitle")
    max_cps: float | None = Field(None, ge=2, le=40, strict=True, description="reading speed, characters per second "
                                  "(default by language: 20 English, 17 other alphabets, 9 Chinese, 4 Japanese)")
    min_duration: float = Field(5 / 6, ge=0.2, le=5, strict=True, description="shortest time on screen, seconds")
    max_duration: float = Field(7.0, ge=1, le=20, strict=True, description="longest time on screen, seconds")
    min_gap_frames: int = Field(2, ge=0, le=25, strict=True, description="frames between consecutive subtitles")
    snap_frames: int = Field(12, ge=0, le=50, strict=True, description="gaps shorter than this close to the "
                             "minimum gap, and subtitles this close to a scene cut meet it")
    font: Path | None = Field(None, description="font file for burned subtitles (default: one on this machine that "
                              "has every character)")


class Character(_Model):
    name: str | None = Field(None, description="display name (subtitles); default: the id")
    image: Path | None = Field(None, description="portrait image")
    voice: Voice = Field(default_factory=Voice)
    face: FaceBox | None = None
    voice_only: bool = Field(False, strict=True, description="heard, never seen: a narrator, a voice on the phone "
                             "(never on stage; every line off screen)")


def _delivery_words(value: Any) -> Any:
    from talkstudio.delivery import parse_delivery_words

    return parse_delivery_words(value) if isinstance(value, str) else value


class Delivery(_Model):
    """How one line is said. Shorthand: words, e.g. `delivery: whispering, slowly`."""

    rate: float = Field(1.0, ge=0.25, le=4.0, strict=True, description="times the voice's rate")
    pitch: float = Field(0.0, ge=-12, le=12, strict=True, description="semitones over the voice's pitch")
    volume: float = Field(1.0, ge=0.0, le=4.0, strict=True, description="gain of this line in the mix")
    whisper: bool = Field(False, strict=True)
    emphasis: bool = Field(False, strict=True)


class Line(_Model):
    """One line of dialogue. Shorthand: `- ana: Hello there` (plus any other field)."""

    speaker: str = Field(description="cast id of who speaks")
    text: str | None = Field(None, description="what is said (the transcript, for a recorded line)")
    audio: Path | None = Field(None, description="recorded audio used instead of TTS")
    offscreen: bool = Field(False, strict=True, description="heard and subtitled but not seen (V.O., O.S.): "
                            "no mouth moves with it, and the speaker is not put on stage for it")
    pause: float | None = Field(None, ge=0, le=60, strict=True, description="silence before this line, seconds")
    overlap: Annotated[float | str | None, AfterValidator(_check_overlap)] = Field(
        None, description="start this many seconds before the previous line ends, or a share of the previous "
                          "line ('60%': the last 60% of it is spoken over)")
    prompt: str | None = Field(None, description="what the picture shows while this line is spoken")
    emotion: str | None = None
    delivery: Annotated[Delivery | None, BeforeValidator(_delivery_words)] = Field(
        None, description="rate, pitch, volume, whisper, emphasis; or words: 'whispering, slowly'")
    _where: str = PrivateAttr("")

    @property
    def where(self) -> str:
        """file:line of this line in the screenplay."""
        return self._where


class Scene(_Model):
    id: str | None = Field(None, pattern=ID_PATTERN, description="letters, digits, - and _; default scene-N")
    stage: Path | None = Field(None, description="an image holding all the scene's characters")
    background: str | None = Field(None, description="'#rrggbb' colour or image behind composed portraits")
    cast: list[str] | None = Field(None, description="who is on stage, left to right; default: the speakers")
    faces: dict[str, FaceBox] = Field(default_factory=dict, description="face boxes in the stage image, by cast id")
    prompt: str | None = None
    lines: list[Line] = Field(min_length=1)


class Screenplay(_Model):
    title: str | None = None
    language: str | None = Field(None, description="language of the dialogue, e.g. en, de, ja (subtitle rules and "
                                 "the subtitle track's tag); default: the voices' language, else en")
    video: Video = Field(default_factory=Video)
    voice: Voice = Field(default_factory=Voice, description="defaults for every character's voice")
    lexicon: dict[str, str] = Field(default_factory=dict, description="pronunciations for every voice: "
                                    "{NASA: nasa, Siobhan: shiv-awn}; whole words, capitals match exactly")
    audio: AudioSettings = Field(default_factory=AudioSettings)
    timing: Timing = Field(default_factory=Timing)
    subtitles: SubtitleSettings = Field(default_factory=SubtitleSettings)
    cast: dict[str, Character] = Field(min_length=1)
    scenes: list[Scene] = Field(min_length=1)
    _file: Path = PrivateAttr(Path("screenplay.yaml"))

    @property
    def file(self) -> Path:
        return self._file

    @property
    def speakers(self) -> list[str]:
        """Cast ids in the order tracks are laid out."""
        return list(self.cast)

    def input_files(self) -> list[Path]:
        """Every file the screenplay refers to (resolved), for up-to-date checks."""
        voices = [self.voice] + [c.voice for c in self.cast.values()]
        candidates = [c.image for c in self.cast.values()]
        candidates += [v.model for v in voices] + [v.reference for v in voices]
        candidates += [s.stage for s in self.scenes]
        candidates += [Path(s.background) for s in self.scenes if s.background and not COLOUR_PATTERN.match(s.background)]
        candidates += [line.audio for s in self.scenes for line in s.lines]
        return [p for p in candidates if p is not None]


@dataclass
class Parsed:
    """A screenplay as far as it could be read, with where each value was written and what is wrong."""

    screenplay: Screenplay | None  # None when what is wrong leaves nothing to check further
    source: SourceMap
    problems: list[Problem]


def parse_screenplay(file: str | Path) -> Parsed:
    """Read, validate and resolve a screenplay file; a file that is not a screenplay at all raises InputError."""
    file = Path(file)
    data, source = load_yaml(file)
    if data is None:
        raise InputError(Problem("the screenplay is empty", file=file,
                                 hint="start from an example in scripts_examples/ or see `talkstudio schema`"))
    if not isinstance(data, dict):
        raise InputError(source.problem((), "the screenplay must be a mapping with cast: and scenes:",
                                        hint="see scripts_examples/ for the layout"))
    return parse_screenplay_data(data, source, file)


def parse_screenplay_data(data: dict, source: SourceMap, file: Path) -> Parsed:
    """Validate and resolve parsed screenplay data (e.g. built around a podcast's cast file), each
    problem at its place in `source`."""
    problems: list[Problem] = []
    data = _expand_shorthands(data, source, problems)
    screenplay = _validated_without_bad_values(data, source, problems)
    if screenplay is not None:  # what is left is checked too: every problem is reported in one pass
        screenplay._file = file
        checker = _Checker(screenplay, source)
        checker.run()
        problems += checker.problems
    return Parsed(screenplay, source, problems)


def _validated_without_bad_values(data: dict, source: SourceMap, problems: list[Problem]) -> Screenplay | None:
    """The screenplay validated; each invalid value is reported and taken out, and the rest validated
    again, so the checks after validation still see everything that was right. None when what is
    wrong cannot be taken out (a required field)."""
    removed: list[tuple] = []
    for _ in range(MAX_VALIDATION_ROUNDS):
        try:
            return Screenplay.model_validate(data)
        except ValidationError as error:
            errors = [e for e in error.errors(include_url=False)
                      if not any(_within(tuple(e["loc"]), gone) for gone in removed)]  # not caused by a removal
            problems += [p for p in _validation_problems(error, source, errors) if p not in problems]
            locations = [tuple(e["loc"]) for e in error.errors(include_url=False)]
            if not any(_remove(data, loc) for loc in locations):
                return None
            removed += locations
    return None


MAX_VALIDATION_ROUNDS = 8


def _within(loc: tuple, removed: tuple) -> bool:
    """`loc` names the removed value or one of the mappings that held it (a removal can empty those)."""
    return removed[:len(loc)] == loc


def _remove(data: Any, loc: tuple) -> bool:
    """Take the value at `loc` out of a mapping (list items stay, so later places keep their numbers)."""
    *parents, last = [part for part in loc if not (isinstance(part, str) and part.startswith("function-"))] or [None]
    node = data
    for part in parents:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


# --- shorthands -----------------------------------------------------------------------------

LINE_FIELDS = set(Line.model_fields)


def _expand_shorthands(data: dict, source: SourceMap, problems: list[Problem]) -> dict:
    data = _restore_text(data, source, ())
    if isinstance(data.get("voice"), str):
        data["voice"] = {"id": data["voice"]}
    for cast_id, character in (data.get("cast") or {}).items() if isinstance(data.get("cast"), dict) else ():
        if character is None:
            data["cast"][cast_id] = {}
        elif isinstance(character, dict) and isinstance(character.get("voice"), str):
            character["voice"] = {"id": character["voice"]}
    scenes = data.get("scenes")
    cast_ids = set(data["cast"]) if isinstance(data.get("cast"), dict) else set()
    if isinstance(scenes, list):
        for s, scene in enumerate(scenes):
            if isinstance(scene, dict) and isinstance(scene.get("lines"), list):
                scene["lines"] = [
                    _expand_line(line, ("scenes", s, "lines", i), source, problems, cast_ids)
                    for i, line in enumerate(scene["lines"])
                ]
    return data


def _restore_text(value: Any, source: SourceMap, path: tuple) -> Any:
    """Give text fields back the text as written where YAML read a number or boolean."""
    if isinstance(value, dict):
        return {
            k: (source.raw.get(path + (k,), v) if k in TEXT_KEYS and not isinstance(v, (str, dict, list, type(None)))
                else _restore_text(v, source, path + (k,)))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_restore_text(v, source, path + (i,)) for i, v in enumerate(value)]
    return value


def _expand_line(line: Any, path: tuple, source: SourceMap, problems: list[Problem], cast_ids: set) -> Any:
    if isinstance(line, str):
        problems.append(source.problem(path, f"a line must name its speaker, got only text {line[:40]!r}",
                                       hint='write it as `- ana: "..."` with the speaker\'s cast id'))
        return line
    if not isinstance(line, dict):
        return line
    speaker_keys = [k for k in line if k not in LINE_FIELDS]
    if not speaker_keys:
        return line
    # the speaker is the key that is a cast id (or the first); any other key is a misspelt field
    in_cast = [k for k in speaker_keys if k in cast_ids]
    key = None if "speaker" in line else (in_cast[0] if len(in_cast) == 1 else speaker_keys[0])
    for unknown in (k for k in speaker_keys if k != key):
        close = difflib.get_close_matches(str(unknown), sorted(LINE_FIELDS), 1)
        problems.append(source.problem(
            path + (unknown,), f"unknown line field '{unknown}'",
            hint=(f"did you mean '{close[0]}'? " if close else "")
            + f"a line has one `speaker: text` pair and fields from {', '.join(sorted(LINE_FIELDS))}",
            prefer_key=True))
    line = {k: v for k, v in line.items() if k == key or k in LINE_FIELDS}
    if key is None:
        return line
    expanded = {k: v for k, v in line.items() if k != key}
    expanded["speaker"] = str(key)
    if "text" in line:
        problems.append(source.problem(path + ("text",), f"text given twice (after '{key}:' and in text:)",
                                       hint="keep one of them", prefer_key=True))
    expanded["text"] = source.raw.get(path + (key,), line[key]) if not isinstance(line[key], (dict, list)) else line[key]
    # errors on the expanded fields point at the shorthand's key and value
    source.keys[path + ("speaker",)] = source.keys[path + (key,)]
    source.values[path + ("speaker",)] = source.keys[path + (key,)]
    source.values[path + ("text",)] = source.values[path + (key,)]
    return expanded


# --- pydantic errors -> problems -------------------------------------------------------------

def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `loc` (walking field annotations)."""
    annotation: Any = Screenplay
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _validation_problems(error: ValidationError, source: SourceMap, errors: list | None = None) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False) if errors is None else errors:
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        kind, message, hint = item["type"], item["msg"], None
        given = item.get("input")
        if kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = sorted(model.model_fields) if model else []
            message = f"unknown field '{loc[-1]}'"
            hint = suggest(str(loc[-1]), allowed, "allowed fields")
            problems.append(source.problem(loc, message, hint, prefer_key=True))
            continue
        if kind == "missing":
            message = f"'{loc[-1]}' is required"
            hint = _missing_hint(loc)
        elif kind == "too_short":
            message = f"'{loc[-1]}' must not be empty"
            hint = _missing_hint(loc)
        elif kind in TYPE_MESSAGES:
            message, hint = TYPE_MESSAGES[kind]
            if not isinstance(given, (dict, list)) and given is not None:
                message += f" (got {given!r})"
            if kind in ("model_type", "dict_type") and loc[:1] == ("scenes",) and loc[-2:-1] == ("lines",):
                hint = "write a line as `- ana: what Ana says` or with speaker: and text:"
        else:
            message = message[0].lower() + message[1:]
            if message.startswith("value error, "):
                message = message[len("value error, "):]
            if not isinstance(given, (dict, list)) and given is not None:
                message += f" (got {given!r})"
            hint = _range_hint(loc)
        problems.append(source.problem(loc, message, hint))
    return problems


TYPE_MESSAGES = {
    "model_type": ("should be a mapping of fields (name: value)", "indent the fields under this key"),
    "dict_type": ("should be a mapping (name: value)", "indent the entries under this key"),
    "list_type": ("should be a list (items starting with '- ')", "put each item on its own line starting with '- '"),
    "string_type": ("should be text", "quote it if it looks like something else"),
}


def _range_hint(loc: tuple) -> str | None:
    """'use a number from 0.25 to 4' for a field with bounds."""
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model and isinstance(loc[-1], str) else None
    if field is None:
        return None
    bounds = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if low is None or high is None:
        return None
    return f"use a number from {low:g} to {high:g}" + (f" ({field.description})" if field.description else "")


def _missing_hint(loc: tuple) -> str:
    hints = {
        "cast": "add a cast: mapping, e.g.\n      cast:\n        ana: {voice: ava}",
        "scenes": "add scenes: with at least one scene holding lines:, e.g.\n      scenes:\n        - lines:\n            - ana: Hello!",
        "lines": "give the scene a lines: list, e.g. `- ana: Hello!`",
        "speaker": "start the line with the speaker's cast id, e.g. `- ana: Hello!`",
    }
    return hints.get(str(loc[-1]), f"add '{loc[-1]}:'")


def suggest(word: str, choices: list[str], label: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    listing = f"{label}: {', '.join(choices)}" if choices else ""
    return (f"did you mean '{close[0]}'? " if close else "") + listing


# --- checks beyond types ---------------------------------------------------------------------

class _Checker:
    def __init__(self, screenplay: Screenplay, source: SourceMap):
        self.s = screenplay
        self.source = source
        self.base = screenplay.file.parent
        self.problems: list[Problem] = []

    def fail(self, path: tuple, message: str, hint: str | None = None, prefer_key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, hint, prefer_key=prefer_key))

    def run(self) -> None:
        s = self.s
        if s.title is None:
            s.title = s.file.stem
        self._check_language()
        if s.subtitles.font is not None:
            s.subtitles.font = self._file(("subtitles", "font"), s.subtitles.font, "font")
        if s.video.faces.insightface_root is not None:
            s.video.faces.insightface_root = self._file(("video", "faces", "insightface_root"),
                                                        s.video.faces.insightface_root, "model", folder_ok=True)
        for word in s.lexicon:
            if not any(c.isalnum() for c in word):
                self.fail(("lexicon", word), f"the lexicon entry '{word}' has no word to match",
                          "give a word (or name) and how to say it, e.g. NASA: nasa", prefer_key=True)
        self._check_cast()
        self._check_scenes()

    def _check_language(self) -> None:
        from talkstudio.subtitles.rules import language_problem

        places = [(("language",), self.s.language)] + [(("cast", cast_id, "voice", "language"), c.voice.language)
                                                       for cast_id, c in self.s.cast.items()]
        for path, language in places:
            problem = language_problem(language) if language else None
            if problem:
                self.fail(path, problem, "use a BCP 47 language tag, e.g. en, en-GB, de, ja, zh-Hans")

    def _check_cast(self) -> None:
        defaults = self.s.voice
        self._resolve_voice_files(defaults, ("voice",))
        for cast_id, character in self.s.cast.items():
            path = ("cast", cast_id)
            if not re.match(ID_PATTERN, cast_id):
                self.fail(path, f"cast id '{cast_id}' has characters other than letters, digits, - and _",
                          "ids name files (tracks/<id>.wav): rename it, and put the display name in name:", prefer_key=True)
            character.name = character.name or cast_id
            if character.image is not None:
                character.image = self._file(path + ("image",), character.image, "image")
            self._resolve_voice_files(character.voice, path + ("voice",))
            character.voice = _merge_voices(defaults, character.voice)

    def _resolve_voice_files(self, voice: Voice, path: tuple) -> None:
        if voice.model is not None:
            voice.model = self._file(path + ("model",), voice.model, "model", folder_ok=True)
        if voice.reference is not None:
            voice.reference = self._file(path + ("reference",), voice.reference, "audio")

    def _check_scenes(self) -> None:
        seen: dict[str, int] = {}
        cast = list(self.s.cast)
        for n, scene in enumerate(self.s.scenes):
            path = ("scenes", n)
            scene.id = scene.id or f"scene-{n + 1}"
            if scene.id in seen:
                self.fail(path + ("id",), f"duplicate scene id '{scene.id}' (also scene {seen[scene.id] + 1})",
                          "give every scene its own id")
            seen.setdefault(scene.id, n)
            if scene.stage is not None:
                scene.stage = self._file(path + ("stage",), scene.stage, "image")
            if scene.background is not None and not COLOUR_PATTERN.match(scene.background):
                scene.background = str(self._file(path + ("background",), Path(scene.background), "image"))
            for i, member in enumerate(scene.cast or []):
                if member not in self.s.cast:
                    self.fail(path + ("cast", i), f"'{member}' is not in the cast", suggest(member, cast, "cast"))
                elif self.s.cast[member].voice_only:
                    self.fail(path + ("cast", i), f"'{member}' is voice_only: heard, never on stage",
                              f"take '{member}' out of the scene's cast (their lines are still heard)")
            for member in scene.faces:
                if member not in self.s.cast:
                    self.fail(path + ("faces", member), f"'{member}' is not in the cast",
                              suggest(member, cast, "cast"), prefer_key=True)
            for i, line in enumerate(scene.lines):
                self._check_line(scene, i, path + ("lines", i))

    def _check_line(self, scene: Scene, i: int, path: tuple) -> None:
        line = scene.lines[i]
        line_no, _ = self.source.locate(path)
        line._where = f"{self.s.file}:{line_no}"
        if line.speaker not in self.s.cast:
            close = difflib.get_close_matches(line.speaker, list(self.s.cast), 1)
            self.fail(path + ("speaker",), f"unknown speaker '{line.speaker}' in scene '{scene.id}': "
                      f"cast has {', '.join(self.s.cast)}",
                      (f"did you mean '{close[0]}'? " if close else "")
                      + f"add '{line.speaker}' under cast: or use one of the cast ids", prefer_key=True)
        if line.text is not None and not line.text.strip():
            self.fail(path + ("text",), "empty text", f"write what '{line.speaker}' says, or remove the line")
        if line.text is None and line.audio is None:
            self.fail(path, "line has no text and no audio", f"write what '{line.speaker}' says after '{line.speaker}:'")
        if line.audio is not None:
            line.audio = self._file(path + ("audio",), line.audio, "audio")
        if line.pause is not None and line.overlap is not None:
            self.fail(path + ("overlap",), "a line has either pause (silence before it) or overlap, not both",
                      "remove one of them", prefer_key=True)
        if line.overlap is not None:
            if i == 0:
                self.fail(path + ("overlap",), "the first line of a scene has no previous line to overlap",
                          "remove overlap, or use pause", prefer_key=True)
            elif scene.lines[i - 1].speaker == line.speaker:
                self.fail(path + ("overlap",), f"'{line.speaker}' cannot overlap their own previous line",
                          "overlap starts a line before another speaker's line ends", prefer_key=True)

    def _file(self, path: tuple, value: Path, kind: str, folder_ok: bool = False) -> Path:
        """Resolve a path against the screenplay's folder and check it can be read as `kind`."""
        resolved = (self.base / value.expanduser()).resolve() if not value.is_absolute() else value
        shown = f"'{value}'" + (f" (looked at {resolved})" if not value.is_absolute() else "")
        if not resolved.exists():
            self.fail(path, f"{kind} file {shown} does not exist",
                      "paths are relative to the screenplay's folder; check the spelling")
        elif resolved.is_dir():
            if not folder_ok:
                self.fail(path, f"{kind} path {shown} is a folder, not a file")
        elif not folder_ok and not resolved.is_file():  # reading a pipe or a device would wait forever
            self.fail(path, f"{kind} path {shown} is not a regular file (a pipe, socket or device)",
                      "point it at a file")
        elif not os.access(resolved, os.R_OK):
            self.fail(path, f"{kind} file {shown} cannot be read", "check its permissions")
        else:
            problem = _content_problem(resolved, kind)
            if problem:
                self.fail(path, f"{kind} file {shown} {problem}")
        return resolved


def _content_problem(file: Path, kind: str) -> str | None:
    try:
        with open(file, "rb") as f:
            head = f.read(16)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if kind == "image":
        if head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            return _image_size_problem(file)
        return "is not a PNG, JPEG, WebP, GIF or BMP image"
    if kind == "font":
        if head[:4] in FONT_SIGNATURES:
            return None
        return "is not a TrueType or OpenType font (.ttf, .otf, .ttc)"
    if kind == "audio":
        if not head:
            return "is empty"
        if head[:4] == b"RIFF" and head[8:12] != b"WAVE":
            return "is a RIFF file but not WAVE audio"
        if head[:4] == b"RIFF" or file.suffix.lower() in AUDIO_SUFFIXES:
            return None
        return f"is not a recognised audio file ({', '.join(sorted(AUDIO_SUFFIXES))})"
    return None


MAX_IMAGE_PIXELS = 64_000_000


def _image_size_problem(file: Path) -> str | None:
    """Images too large to decode (or claiming to be: a decompression bomb), read from the header only."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as opened:
                width, height = opened.size
    except Image.DecompressionBombError:
        return f"claims more pixels than can be decoded safely (over {MAX_IMAGE_PIXELS // 1_000_000} megapixels)"
    except (OSError, ValueError):
        return None  # a damaged image is reported when it is loaded, with what the decoder says
    if width * height > MAX_IMAGE_PIXELS:
        return (f"is {width}x{height} pixels, over {MAX_IMAGE_PIXELS // 1_000_000} megapixels: "
                "scale it down (a portrait needs about 1000x1000)")
    return None


def _merge_voices(defaults: Voice, own: Voice) -> Voice:
    values = {name: getattr(defaults, name) for name in defaults.model_fields_set}
    values.update({name: getattr(own, name) for name in own.model_fields_set})
    return Voice.model_validate(values)


# --- JSON Schema ------------------------------------------------------------------------------

def json_schema(backends: list[str]) -> dict:
    """JSON Schema of the screenplay, shorthands included, for editors' autocompletion."""
    schema = Screenplay.model_json_schema()
    defs = schema["$defs"]
    defs["Video"]["properties"]["backend"]["enum"] = backends
    line = defs.pop("Line")
    defs["LineFields"] = line
    defs["Line"] = {
        "description": line.get("description", ""),
        "anyOf": [
            {"$ref": "#/$defs/LineFields"},
            {
                "type": "object",
                "description": "shorthand: `speaker_id: text`, plus any line field",
                "minProperties": 1,
                "properties": {k: v for k, v in line["properties"].items() if k not in ("speaker", "text")},
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
        ],
    }
    voice = defs.pop("Voice")
    defs["VoiceFields"] = voice
    defs["Voice"] = {"anyOf": [{"type": "string", "description": "voice id"}, {"$ref": "#/$defs/VoiceFields"}]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "talkstudio screenplay"
    delivery = defs["LineFields"]["properties"]["delivery"]
    delivery["anyOf"].insert(1, {"type": "string", "description": "delivery words, e.g. 'whispering, slowly'"})
    return schema
