"""`talkstudio say`: hear a voice before casting it, or a character as the screenplay casts it.

The sample goes through the same path as a screenplay line (lexicon, delivery, engine checks,
speech cache), so what is auditioned is what the render will say.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from talkstudio.errors import InputError, Problem

# players tried in order; the first one installed plays the sample
PLAYERS = (("ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet"), ("paplay",), ("aplay", "-q"), ("afplay",),
           ("play", "-q"))


@dataclass
class Sample:
    path: Path
    seconds: float
    took: float  # seconds of synthesis (0 when the cache had it)
    voice: object
    from_cache: bool


def cast_voice(script: Path | None, character: str | None, overrides: dict):
    """The voice to audition and the lexicon to use: a character's from a screenplay, or one built from
    the command's options alone; `overrides` (only the options given) win either way."""
    from pydantic import ValidationError

    from talkstudio.checks import load_screenplay
    from talkstudio.screenplay import Voice

    if character and not script:
        raise InputError(Problem("--character needs --script, the screenplay that casts it"))
    lexicon: dict = {}
    if script:
        screenplay = load_screenplay(script)
        lexicon = screenplay.lexicon
        if character is None:
            voice = screenplay.voice
        elif character not in screenplay.cast:
            raise InputError(Problem(f"no character '{character}' in {script}",
                                     hint=f"cast: {', '.join(screenplay.cast)}"))
        else:
            voice = screenplay.cast[character].voice
        values = voice.model_dump(exclude_unset=False)
    else:
        values = {}
    try:
        voice = Voice.model_validate({**values, **overrides})
    except ValidationError as error:
        raise InputError([Problem(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}") for e in error.errors()]) from None
    for name in ("model", "reference"):
        path = getattr(voice, name)
        if name in overrides and path is not None and not Path(path).exists():
            raise InputError(Problem(f"--{name} {path}: no such file or folder"))
    _check(voice)
    return voice, lexicon


def delivery_hints(words: str | None):
    """`--delivery 'whispering, slowly'` as a Delivery; None for none."""
    from talkstudio.delivery import parse_delivery_words
    from talkstudio.screenplay import Delivery

    if not words:
        return None
    try:
        return Delivery.model_validate(parse_delivery_words(words))
    except ValueError as error:
        raise InputError(Problem(f"--delivery: {error}")) from None


def _check(voice) -> None:
    from talkstudio.voices import engine_names, get_engine

    if voice.engine not in engine_names():
        raise InputError(Problem(f"unknown voice engine '{voice.engine}'", hint=f"engines: {', '.join(engine_names())}"))
    problems = get_engine(voice.engine).check(voice)
    if problems:
        raise InputError([Problem(message, hint=f"`talkstudio voices --engine {voice.engine}` lists its voices")
                          for message in problems])


def say(text: str, voice, lexicon: dict, delivery, output: Path, cache) -> Sample:
    """Speak `text` into `output` (WAV, 32-bit float) exactly as a screenplay line would be spoken."""
    from talkstudio.audio_io import wav_writer
    from talkstudio.delivery import apply_lexicon, rendition
    from talkstudio.speech import SpeechStats, synthesize_cached
    from talkstudio.voices import get_engine

    if not text.strip():
        raise InputError(Problem("nothing to say: the text is empty"))
    spoken, _ = apply_lexicon(text, lexicon)
    said = rendition(voice, delivery, getattr(get_engine(voice.engine), "native_delivery", frozenset()))
    stats = SpeechStats()
    started = time.perf_counter()
    _, speech = synthesize_cached(spoken, said.voice, cache, stats)
    took = time.perf_counter() - started
    samples = (speech.samples * said.gain * voice.volume).clip(-1.0, 1.0)
    output.parent.mkdir(parents=True, exist_ok=True)
    with wav_writer(output, speech.rate, len(samples)) as write:
        write(samples)
    return Sample(output, len(samples) / speech.rate, took, said.voice, stats.cached == 1)


def play(path: Path) -> str | None:
    """Play the file with the first player found; its name, or None when none is installed."""
    for command in PLAYERS:
        if shutil.which(command[0]):
            subprocess.run([*command, str(path)], check=False)
            return command[0]
    return None
