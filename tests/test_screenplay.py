"""Screenplay loading: shorthands, defaults, path resolution, and every kind of bad input."""

import re

import pytest

from conftest import EXAMPLES, run_cli
from talkstudio.checks import load_screenplay
from talkstudio.errors import InputError
from talkstudio.generators import frame_rate

GOOD = """
title: Test
cast:
  ana: {voice: ava}
  ben:
    name: Ben B.
    voice: {id: ben, rate: 1.2}
scenes:
  - id: intro
    lines:
      - ana: Hello there.
      - ben: Hi!
        pause: 0.5
      - speaker: ana
        text: How are you?
        overlap: 0.2
"""


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(example):
    screenplay = load_screenplay(example)
    assert screenplay.scenes and screenplay.cast


def test_shorthands_defaults_and_locations(write_script):
    path = write_script(GOOD)
    s = load_screenplay(path)
    assert s.speakers == ["ana", "ben"]
    assert s.cast["ana"].name == "ana" and s.cast["ben"].name == "Ben B."
    assert s.cast["ben"].voice.rate == 1.2 and s.cast["ben"].voice.engine == "espeak"
    lines = s.scenes[0].lines
    assert [(l.speaker, l.text) for l in lines] == [("ana", "Hello there."), ("ben", "Hi!"), ("ana", "How are you?")]
    assert lines[1].pause == 0.5 and lines[2].overlap == 0.2
    assert lines[0].where == f"{path}:10" and lines[2].where == f"{path}:13"
    assert frame_rate(s.video) == 25 and s.video.size == (832, 480)


def test_voice_defaults_merge_and_yaml_scalars_stay_text(write_script):
    s = load_screenplay(write_script("""
        voice: {engine: espeak, rate: 0.9, pitch: 2}
        video: {size: 640x360, fps: 24}
        cast:
          ana: {voice: {id: clara, pitch: -1}}
        scenes:
          - lines:
              - ana: yes
              - ana: 1.10
    """))
    voice = s.cast["ana"].voice
    assert (voice.id, voice.rate, voice.pitch) == ("clara", 0.9, -1)
    assert [l.text for l in s.scenes[0].lines] == ["yes", "1.10"]
    assert s.scenes[0].id == "scene-1" and frame_rate(s.video) == 24 and s.video.size == (640, 360)


def test_relative_paths_resolve_against_the_screenplay_folder(tmp_path, write_script):
    (tmp_path / "media").mkdir()
    png = tmp_path / "media" / "ana.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    wav = tmp_path / "media" / "take.wav"
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    s = load_screenplay(write_script("""
        cast:
          ana: {image: media/ana.png}
        scenes:
          - lines:
              - speaker: ana
                audio: media/take.wav
                text: a recorded take
    """))
    assert s.cast["ana"].image == png.resolve()
    assert s.scenes[0].lines[0].audio == wav.resolve()
    assert set(s.input_files()) == {png.resolve(), wav.resolve()}


# (yaml, expected line, text the message must contain)
BAD = {
    "empty file": ("", None, "empty"),
    "only a comment": ("# nothing here\n", None, "empty"),
    "not a mapping": ("- just\n- a list\n", 1, "mapping"),
    "malformed yaml": ("cast:\n  ana: {voice: ava\nscenes: []\n", 3, "not valid YAML"),
    "unquoted colon": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Note: this breaks\n", 5, "quoted"),
    "tab indentation": ("cast:\n\tana: {}\n", 2, "tab"),
    "no cast": ("scenes:\n  - lines:\n      - ana: Hi\n", 1, "'cast' is required"),
    "no scenes": ("cast:\n  ana: {}\n", 1, "'scenes' is required"),
    "empty scenes": ("cast:\n  ana: {}\nscenes: []\n", 3, "must not be empty"),
    "scene without lines": ("cast:\n  ana: {}\nscenes:\n  - id: a\n", 4, "'lines' is required"),
    "unknown speaker": ("cast:\n  ana: {}\n  ben: {}\nscenes:\n  - id: intro\n    lines:\n      - ana: Hi\n      - bob: Hello\n",
                        8, "unknown speaker 'bob' in scene 'intro': cast has ana, ben"),
    "speaker field unknown": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - speaker: zed\n        text: Hi\n", 5, "unknown speaker 'zed'"),
    "empty text": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: '   '\n", 5, "empty text"),
    "null text": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana:\n", 5, "no text and no audio"),
    "text only": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - Hello there\n", 5, "must name its speaker"),
    "negative pause": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n        pause: -1\n", 6, "greater than or equal to 0"),
    "absurd pause": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n        pause: 5000\n", 6, "less than or equal to 60"),
    "pause not a number": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n        pause: soon\n", 6, "number"),
    "pause is nan": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n        pause: .nan\n", 6, "finite"),
    "pause is boolean": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n        pause: true\n", 6, "number"),
    "pause and overlap": ("cast:\n  ana: {}\n  ben: {}\nscenes:\n  - lines:\n      - ana: Hi\n      - ben: Yo\n        pause: 1\n        overlap: 1\n",
                          9, "not both"),
    "overlap on first line": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n        overlap: 1\n", 6, "no previous line"),
    "overlap on own line": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n      - ana: Again\n        overlap: 1\n", 7, "own previous line"),
    "absurd rate": ("cast:\n  ana:\n    voice: {rate: 40}\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "less than or equal to 4"),
    "rate as text": ("cast:\n  ana:\n    voice: {rate: fast}\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "number"),
    "negative volume": ("cast:\n  ana:\n    voice: {volume: -2}\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "greater than or equal to 0"),
    "unknown field": ("titel: X\ncast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 1, "unknown field 'titel'"),
    "unknown character field": ("cast:\n  ana:\n    imagee: a.png\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "did you mean 'image'"),
    "two speakers in a line": ("cast:\n  ana: {}\n  ben: {}\nscenes:\n  - lines:\n      - ana: Hi\n        ben: Hi\n", 7, "unknown line field"),
    "duplicate cast id": ("cast:\n  ana: {}\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "duplicate key 'ana'"),
    "duplicate scene id": ("cast:\n  ana: {}\nscenes:\n  - id: a\n    lines: [{ana: Hi}]\n  - id: a\n    lines: [{ana: Yo}]\n",
                           6, "duplicate scene id 'a'"),
    "bad scene id": ("cast:\n  ana: {}\nscenes:\n  - id: my scene\n    lines: [{ana: Hi}]\n", 4, "pattern"),
    "bad cast id": ("cast:\n  ana smith: {}\nscenes:\n  - lines:\n      - ana smith: Hi\n", 2, "other than letters"),
    "missing image": ("cast:\n  ana: {image: nowhere.png}\nscenes:\n  - lines:\n      - ana: Hi\n", 2, "does not exist"),
    "image is a folder": ("cast:\n  ana: {image: .}\nscenes:\n  - lines:\n      - ana: Hi\n", 2, "is a folder"),
    "image not an image": ("cast:\n  ana: {image: script.yaml}\nscenes:\n  - lines:\n      - ana: Hi\n", 2, "not a PNG"),
    "missing recording": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - speaker: ana\n        audio: gone.wav\n", 6, "does not exist"),
    "recording not audio": ("cast:\n  ana: {}\nscenes:\n  - lines:\n      - speaker: ana\n        audio: script.yaml\n", 6, "not a recognised audio"),
    "unknown engine": ("cast:\n  ana:\n    voice: {engine: speakomatic}\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "unknown voice engine"),
    "unknown espeak voice": ("cast:\n  ana:\n    voice: xx-nowhere\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "no language 'xx-nowhere'"),
    "unknown espeak variant": ("cast:\n  ana:\n    voice: en-us+zorg\nscenes:\n  - lines:\n      - ana: Hi\n", 3, "no variant 'zorg'"),
    "unknown backend": ("video: {backend: sora}\ncast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 1, "unknown backend"),
    "bad size": ("video: {size: big}\ncast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 1, "WIDTHxHEIGHT"),
    "odd size": ("video: {size: 831x480}\ncast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 1, "odd"),
    "absurd size": ("video: {size: 100000x480}\ncast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 1, "64..4096"),
    "zero fps": ("video: {fps: 0}\ncast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 1, "greater than or equal to 1"),
    "bad face box": ("cast:\n  ana: {face: [1, 2]}\nscenes:\n  - lines:\n      - ana: Hi\n", 2, "face box"),
    "unknown scene cast": ("cast:\n  ana: {}\nscenes:\n  - cast: [ana, zoe]\n    lines: [{ana: Hi}]\n", 4, "'zoe' is not in the cast"),
    "loudness too high": ("audio: {loudness: 3}\ncast:\n  ana: {}\nscenes:\n  - lines:\n      - ana: Hi\n", 1, "less than or equal to -5"),
    "two documents": ("cast: {}\n---\nscenes: []\n", None, "more than one YAML document"),
    "lines not a list": ("cast:\n  ana: {}\nscenes:\n  - lines: hello\n", 4, "list"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_screenplays_are_refused_with_line_and_field(name, write_script):
    text, line, needle = BAD[name]
    path = write_script(text)
    with pytest.raises(InputError) as caught:
        load_screenplay(path)
    rendered = str(caught.value)
    assert needle in rendered, rendered
    if line is not None:
        assert f"{path}:{line}:" in rendered, rendered


def test_every_problem_is_reported_at_once(write_script):
    path = write_script("""
        cast:
          ana: {voice: {rate: 9}}
        scenes:
          - lines:
              - bob: Hi
              - ana: ''
    """)
    with pytest.raises(InputError) as caught:
        load_screenplay(path)
    # pydantic errors stop before the semantic checks, so the second pass is checked separately
    assert any("rate" in (p.field or "") for p in caught.value.problems)
    path.write_text(path.read_text().replace("rate: 9", "rate: 1"))
    with pytest.raises(InputError) as caught:
        load_screenplay(path)
    messages = [p.message for p in caught.value.problems]
    assert len(messages) == 2 and "unknown speaker 'bob'" in messages[0] and messages[1] == "empty text"


def test_unknown_speaker_suggests_the_closest_cast_id(write_script):
    path = write_script("cast:\n  ana: {}\n  benedict: {}\nscenes:\n  - lines:\n      - benedikt: Hi\n")
    with pytest.raises(InputError) as caught:
        load_screenplay(path)
    assert "did you mean 'benedict'" in str(caught.value)


@pytest.mark.parametrize("name", ["malformed yaml", "unknown speaker", "absurd rate", "missing image", "empty file"])
def test_cli_validate_exits_2_without_traceback(name, write_script):
    text, line, needle = BAD[name]
    path = write_script(text)
    result = run_cli("validate", path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert needle in result.stderr
    if line is not None:
        assert re.search(rf"{re.escape(str(path))}:{line}:\d+", result.stderr)


def test_cli_validate_missing_file_and_examples():
    result = run_cli("validate", "no/such/file.yaml")
    assert result.returncode == 2 and "file not found" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("validate", *EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == len(EXAMPLES)
