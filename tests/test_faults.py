"""Faults and mistakes: nothing a user owns is overwritten, a damaged cache never gives a broken video,
two runs of one output never interleave, and bad input is refused with its line instead of hanging."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ROOT, run_cli, start_cli
from talkstudio.assemble import count_frames

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SMALL = """video: {size: 320x240}
cast:
  ana: {image: ana.png, voice: ava}
  ben: {image: ben.png, voice: dan}
scenes:
  - lines:
      - ana: Good morning, this is a short test of the renderer.
      - ben: And this is the answer, a little longer than the question was.
"""


@pytest.fixture
def small(tmp_path):
    shutil.copy(ROOT / "casts" / "maya.png", tmp_path / "ana.png")
    shutil.copy(ROOT / "casts" / "theo.png", tmp_path / "ben.png")
    script = tmp_path / "small.yaml"
    script.write_text(SMALL)
    return script


def _refused(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def _snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_render_never_writes_over_an_input(small, tmp_path):
    before = _snapshot(tmp_path)
    _refused(run_cli("render", small, "-o", small, "--cache", tmp_path / "c"), "does not end in .mp4")
    odd = tmp_path / "episode.mp4"  # a screenplay under a video's name
    odd.write_text(SMALL)
    before = _snapshot(tmp_path)
    _refused(run_cli("render", odd, "-o", odd, "--cache", tmp_path / "c"), "is the input")
    assert _snapshot(tmp_path) == before


def test_podcast_never_writes_its_subtitles_over_the_transcript(tmp_path):
    pytest.importorskip("silero_vad.data", reason="pip install 'talkstudio[podcast]'")
    episode = tmp_path / "episode"
    shutil.copytree(ROOT / "scripts_examples" / "recorded", episode)
    (episode / "lighthouse-episode.yaml").write_text((episode / "lighthouse-episode.yaml").read_text()
                                                     .replace("../../casts", str(ROOT / "casts")))
    before = _snapshot(episode)
    _refused(run_cli("podcast", "--cast", episode / "lighthouse-episode.yaml", "-o", episode / "episode.mp4",
                     "--cache", tmp_path / "c"), "is the input")
    assert _snapshot(episode) == before


def test_a_users_folder_is_never_written_into(small, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mix.wav").write_bytes(b"my own recording")
    (mine / "cues.json").write_text("my notes")
    before = _snapshot(mine)
    _refused(run_cli("render", small, "-o", tmp_path / "mine.mp4", "--cache", tmp_path / "c"), "not one talkstudio made")
    _refused(run_cli("audio", small, "-o", mine, "--cache", tmp_path / "c"), "not one talkstudio made")
    assert _snapshot(mine) == before and not (tmp_path / "mine.mp4").exists()


def test_import_and_say_never_write_over_their_inputs(tmp_path):
    fountain = tmp_path / "s.fountain"
    fountain.write_text("INT. ROOM - DAY\n\nANA\nHello.\n")
    cast = tmp_path / "cast.yaml"
    cast.write_text("cast:\n  ana: {voice: ava}\n")
    before = _snapshot(tmp_path)
    _refused(run_cli("import", fountain, "--cast", cast, "-o", cast), "is the input")
    _refused(run_cli("import", fountain, "--cast", cast, "-o", fountain), "is the input")
    (tmp_path / "s.yaml").write_text("# my own screenplay\n")
    before = _snapshot(tmp_path)
    _refused(run_cli("import", fountain, "--cast", cast), "was not written by `talkstudio import`")
    assert _snapshot(tmp_path) == before
    (tmp_path / "s.yaml").unlink()
    assert run_cli("import", fountain, "--cast", cast).returncode == 0
    assert run_cli("import", fountain, "--cast", cast).returncode == 0  # its own earlier output is replaced
    script = tmp_path / "s.yaml"
    text = script.read_text()
    _refused(run_cli("say", "Hello", "--script", script, "-c", "ana", "-o", script), "does not end in .wav")
    assert script.read_text() == text


@pytest.mark.parametrize("damage", ["truncate", "zero", "flip"])
def test_a_damaged_cached_chunk_is_rendered_again(small, tmp_path, damage):
    cache, target = tmp_path / "c", tmp_path / "out.mp4"
    assert run_cli("render", small, "-o", target, "--cache", cache, "-q").returncode == 0
    frames = json.loads((tmp_path / "out" / "cues.json").read_text())["frames"]
    chunk = sorted((cache / "chunks").rglob("*.mp4"))[0]
    data = bytearray(chunk.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 3]
    elif damage == "zero":
        data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
    else:
        data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    target.unlink()  # the video must be made again from the cache
    assert run_cli("render", small, "-o", target, "--cache", cache, "-q").returncode == 0
    assert count_frames(target) == frames


def test_damaged_speech_and_face_entries_are_made_again(small, tmp_path):
    cache = tmp_path / "c"
    assert run_cli("render", small, "-o", tmp_path / "a.mp4", "--cache", cache, "-q").returncode == 0
    for kind in ("speech", "faces", "people"):
        for entry in (cache / kind).rglob("*"):
            if entry.is_file() and not entry.name.endswith(".sum"):
                entry.write_bytes(b"garbage")
    (tmp_path / "a" / "cues.json").unlink()
    result = run_cli("render", small, "-o", tmp_path / "a.mp4", "--cache", cache)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "a" / "cues.json").read_text())["frames"] > 0


def test_a_second_render_of_the_same_output_is_refused_while_the_first_runs(small, tmp_path):
    slow = tmp_path / "slow.yaml"
    slow.write_text(SMALL.replace("320x240", "832x480") + "".join(
        f"      - {'ana' if i % 2 else 'ben'}: Line number {i} goes on for a while to take some time.\n"
        for i in range(12)))
    first = start_cli("render", slow, "-o", tmp_path / "same.mp4", "--cache", tmp_path / "c1", "-q",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (tmp_path / "same" / ".talkstudio.lock").exists() or not list((tmp_path / "c1").rglob("*.npz")):
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    second = run_cli("render", slow, "-o", tmp_path / "same.mp4", "--cache", tmp_path / "c2", "-q")
    _refused(second, "is being written by another talkstudio run")
    _, err = first.communicate(timeout=240)
    assert first.returncode == 0, err
    assert count_frames(tmp_path / "same.mp4") == json.loads((tmp_path / "same" / "cues.json").read_text())["frames"]


@pytest.mark.parametrize("case, text, needle", [
    ("nul", 'video: {size: 320x240}\ncast: {ana: {voice: ava}}\nscenes:\n  - lines:\n      - ana: "Hi\\0 there"\n',
     "U+0000"),
    ("surrogate", 'video: {size: 320x240}\ncast: {ana: {voice: ava}}\nscenes:\n  - lines:\n      - ana: "Hi \\ud800"\n',
     "U+D800"),
    ("lexicon", 'lexicon: {"": x}\ncast: {ana: {voice: ava}}\nscenes:\n  - lines:\n      - ana: Hi\n', "no word"),
    ("fps", 'video: {fps: 0.001}\ncast: {ana: {voice: ava}}\nscenes:\n  - lines:\n      - ana: Hi\n', "video.fps"),
    ("aliases", "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)])
     + "\ncast: {ana: {voice: ava}}\nscenes: [{lines: [{ana: *a8}]}]\n", "aliases"),
    ("depth", "video: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
])
def test_bad_input_is_refused_quickly_with_its_place(tmp_path, case, text, needle):
    script = tmp_path / f"{case}.yaml"
    script.write_text(text)
    started = time.monotonic()
    _refused(run_cli("validate", script), needle)
    assert time.monotonic() - started < 20


def test_a_pipe_given_as_audio_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "line.wav")
    script = tmp_path / "s.yaml"
    script.write_text("cast: {ana: {voice: ava}}\nscenes:\n  - lines:\n      - ana: Hi\n        audio: line.wav\n")
    _refused(run_cli("validate", script), "not a regular file")


def test_chunk_length_zero_is_refused(small, tmp_path):
    _refused(run_cli("render", small, "-o", tmp_path / "o.mp4", "--frame-num", "0", "--cache", tmp_path / "c"),
             "chunk length 0")


def test_a_name_with_a_comma_keeps_the_ass_events_whole(small, tmp_path):
    small.write_text(SMALL.replace("ana: {image", 'ana: {name: "Ana, the First", image'))
    assert run_cli("render", small, "-o", tmp_path / "o.mp4", "--cache", tmp_path / "c", "-q").returncode == 0
    events = [line for line in (tmp_path / "o.ass").read_text().splitlines() if line.startswith("Dialogue:")]
    texts = [re.sub(r"^\{\\b1\}[^{]*\{\\b0\} ", "", line.split(",", 9)[9]) for line in events]  # past the label
    assert events and all(text.startswith(("Good", "And")) for text in texts), texts


def test_burned_subtitles_into_a_path_with_quotes_and_colons(small, tmp_path):
    folder = tmp_path / "it's: [a] test"
    folder.mkdir()
    result = run_cli("render", small, "-o", folder / "o'k.mp4", "--burn-subtitles", "--cache", tmp_path / "c", "-q")
    assert result.returncode == 0, result.stderr
    assert count_frames(folder / "o'k.mp4") > 0


def test_environment_faults_are_named_not_crashes(small, tmp_path):
    import errno

    from talkstudio.errors import environment_problem

    full = environment_problem(OSError(errno.ENOSPC, "No space left on device", "/renders/x.mp4"))
    assert full.startswith("the disk is full: /renders/x.mp4")
    (tmp_path / "cachefile").write_text("not a folder")
    result = run_cli("render", small, "-o", tmp_path / "o.mp4", "--cache", tmp_path / "cachefile", "-q")
    assert result.returncode == 1 and "a file is where a folder should be" in result.stderr
    assert "internal error" not in result.stderr


def test_ctrl_c_of_a_locked_render_releases_the_lock(small, tmp_path):
    process = start_cli("render", small, "-o", tmp_path / "o.mp4", "--cache", tmp_path / "c", "-q",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (tmp_path / "o" / ".talkstudio.lock").exists():
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert run_cli("render", small, "-o", tmp_path / "o.mp4", "--cache", tmp_path / "c", "-q").returncode == 0


def test_messages_are_printed_as_written(tmp_path):
    """No emoji codes (':100:' is a place, not an emoji) and no markup read into texts with brackets."""
    script = tmp_path / "long.yaml"
    script.write_text("cast: {ana: {voice: ava}}\nscenes:\n  - lines:\n" + "      - ana: Hi.\n" * 96
                      + "      - bob: Who am I?\n")
    result = run_cli("validate", script)
    assert result.returncode == 2 and f"{script}:100:" in result.stderr and "\U0001f4af" not in result.stderr
    voices = run_cli("voices", "-e", "coqui")
    assert voices.returncode == 0 and "[coqui]" in voices.stdout + voices.stderr


def test_the_timeline_table_is_readable_at_80_columns(tmp_path):
    from rich.console import Console

    import cli

    previous = cli.out
    cli.out = Console(width=80, emoji=False, record=True)
    try:
        assert cli.main(["audio", str(ROOT / "scripts_examples" / "podcast.yaml"), "-o", str(tmp_path / "a"),
                         "--cache", str(tmp_path / "c")]) == 0
        text = cli.out.export_text()
    finally:
        cli.out = previous
    for number in ("0.30", "3.63", "8-91", "cold-open", "Maya"):
        assert number in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_a_face_box_outside_its_image_is_bad_input(small, tmp_path):
    small.write_text(SMALL.replace("ana: {image: ana.png,", "ana: {image: ana.png, face: [900, 900, 100, 100],"))
    _refused(run_cli("render", small, "-o", tmp_path / "o.mp4", "--cache", tmp_path / "c"), "is not inside ana.png",
             "512x512")


def test_validate_reports_every_problem_in_one_pass(tmp_path):
    """Typos in three places, a bad rate beside bad voices, a misspelt field next to a speaker key:
    one run names them all, each at its line, and the speaker key is not called a field."""
    shutil.copy(ROOT / "casts" / "maya.png", tmp_path / "maya.png")
    script = tmp_path / "typos.yaml"
    script.write_text("vidoe: {size: 320x240}\n"
                      "cast:\n"
                      "  ana: {image: maya.png, voice: {id: ava, rate: fast}}\n"
                      "  ben: {voice: nosuchvoice}\n"
                      "  cy: {voice: {id: alsonot, pich: 3}}\n"
                      "scenes:\n"
                      "  - lines:\n"
                      "      - ana: Hello there.\n"
                      "        pauze: 0.3\n"
                      "      - ben: Hi.\n"
                      "      - dan: Who?\n")
    result = run_cli("validate", script)
    _refused(result, ":1:1: vidoe: unknown field", ":3:", "rate", ":4:", "nosuchvoice", ":5:", "pich", "alsonot",
             ":9:", "unknown line field 'pauze'", "did you mean 'pause'", ":11:", "unknown speaker 'dan'")
    assert "field 'ana'" not in result.stderr and "field(s) ana" not in result.stderr


def test_problems_that_need_the_registries_come_in_the_same_pass(tmp_path):
    """A backend typo, a bad backend option and an unknown voice engine beside a schema error and a
    missing file: one run names all five."""
    script = tmp_path / "mixed.yaml"
    script.write_text("video: {backend: pupet}\n"
                      "cast:\n"
                      "  ana: {image: missing.png, voice: {engine: espeek}}\n"
                      "scenes:\n"
                      "  - lines:\n"
                      "      - ana: Hello there.\n"
                      "        pause: -1\n")
    _refused(run_cli("validate", script), "unknown backend 'pupet'", "did you mean 'puppet'", ":3:",
             "missing.png", "unknown voice engine 'espeek'", ":7:", "pause")
    script.write_text("video: {backend: anytalker, options: {stepz: 3, guide: -1}}\n"
                      "cast: {ana: {voice: {engine: espeek}}}\n"
                      "scenes: [{lines: [{ana: Hi}]}]\n")
    _refused(run_cli("validate", script), "stepz", "did you mean 'steps'", "guide", "espeek")


def test_the_screenplay_module_needs_no_registry_and_no_module_imports_in_a_circle():
    import ast

    modules = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
               for f in (ROOT / "talkstudio").rglob("*.py")}

    def imported(module: str) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(modules[module].read_text())):  # at any level, TYPE_CHECKING too
            names = ([node.module] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found |= {name for name in names if name in modules and not module.startswith(name + ".")}
        return found - {module}

    graph = {module: imported(module) for module in modules}
    assert not graph["talkstudio.screenplay"] & {"talkstudio.voices", "talkstudio.generators", "talkstudio.stage"}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module == goal:
                return True
            if module not in seen:
                seen.add(module)
                todo += graph[module]
        return False

    circles = sorted(module for module in graph if reaches(module, module))
    assert not circles, f"modules that import themselves through others: {circles}"


def test_a_decoder_that_gets_no_audio_is_stopped(tmp_path, monkeypatch):
    """A source that never delivers (here a pipe nobody writes to) ends in a clear message, not a hang."""
    from talkstudio import audio_io
    from talkstudio.errors import InputError

    os.mkfifo(tmp_path / "stalled.wav")
    monkeypatch.setattr(audio_io, "STALLED_S", 1.0)
    started = time.monotonic()
    with pytest.raises(InputError, match="gave no audio for 1 s"):
        list(audio_io.decode_blocks(tmp_path / "stalled.wav", 16000, 4096))
    assert time.monotonic() - started < 15
