"""Loading a screenplay: what the file says (`screenplay`), then what needs the registries.

The checks here need to know the installed backends and voice engines: the backend's name
and options, and every character's voice against its engine. They run on whatever part of the
screenplay could be read, and their problems join the parser's, so one run reports them all.
"""

from __future__ import annotations

from pathlib import Path

from talkstudio.errors import InputError, Problem
from talkstudio.generators import GENERATORS
from talkstudio.screenplay import Parsed, Screenplay, Voice, parse_screenplay, parse_screenplay_data, suggest
from talkstudio.sourcemap import SourceMap


def load_screenplay(file: str | Path) -> Screenplay:
    """Parse, validate and resolve a screenplay; raise InputError listing every problem."""
    return _checked(parse_screenplay(file))


def screenplay_from_data(data: dict, source: SourceMap, file: Path) -> Screenplay:
    """Validate and resolve parsed screenplay data (e.g. built around a podcast's cast file); raise
    InputError listing every problem at its place in `source`."""
    return _checked(parse_screenplay_data(data, source, file))


def _checked(parsed: Parsed) -> Screenplay:
    problems = list(parsed.problems)
    if parsed.screenplay is not None:
        problems += backend_problems(parsed.screenplay, parsed.source)
        problems += voice_problems(parsed.screenplay, parsed.source)
    if problems:
        raise InputError(problems)
    return parsed.screenplay


def backend_problems(screenplay: Screenplay, source: SourceMap) -> list[Problem]:
    """The backend is known and `video.options` are its options, in their bounds."""
    name = screenplay.video.backend
    if name not in GENERATORS:
        return [source.problem(("video", "backend"), f"unknown backend '{name}'",
                               suggest(name, list(GENERATORS), "backends"))]
    info = GENERATORS[name]
    known = [option.name for option in info.options]
    problems = []
    for option, value in screenplay.video.options.items():
        try:
            info.parse_options({option: value})
        except ValueError as error:
            hint = None if option in known else suggest(option, known, f"{info.name} options")
            problems.append(source.problem(("video", "options", option), str(error), hint,
                                           prefer_key=option not in known))
    return problems


def voice_problems(screenplay: Screenplay, source: SourceMap) -> list[Problem]:
    """Each character's voice (defaults merged in) is one its engine has and can load."""
    problems = []
    for cast_id, character in screenplay.cast.items():
        problems += _voice_problems(character.voice, ("cast", cast_id, "voice"), source)
    return problems


def _voice_problems(voice: Voice, path: tuple, source: SourceMap) -> list[Problem]:
    from talkstudio.voices import engine_names, get_engine

    if voice.engine not in engine_names():
        return [source.problem(path + ("engine",), f"unknown voice engine '{voice.engine}'",
                               suggest(voice.engine, engine_names(), "installed engines"))]
    try:
        engine = get_engine(voice.engine)
    except ImportError as error:
        return [source.problem(path + ("engine",), f"voice engine '{voice.engine}' cannot load: {error}",
                               f"install its extra: pip install 'talkstudio[{voice.engine}]'")]
    return [source.problem(path + ("id",), message) for message in engine.check(voice)]
