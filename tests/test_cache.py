"""Speech cache and up-to-date outputs: a second run does no synthesis; edits redo only what changed."""

import os

import pytest

from conftest import EXAMPLES, run_cli
from talkstudio.cache import Cache, atomic_write, content_key, file_digest
from talkstudio.progress import Reporter
from talkstudio.render import render_audio
from talkstudio.screenplay import Voice
from talkstudio.speech import speech_key

SCRIPT = """
cast:
  ana: {voice: ava}
  ben: {voice: ben}
scenes:
  - lines:
      - ana: One from Ana.
      - ben: One from Ben.
      - ana: Two from Ana.
"""


def render(script, out, cache_dir, enabled=True):
    return render_audio(script, out, Cache(cache_dir, enabled=enabled), Reporter(quiet=True))


def test_second_run_synthesises_nothing_and_gives_the_same_bytes(write_script, tmp_path):
    script = write_script(SCRIPT)
    first = render(script, tmp_path / "a", tmp_path / "cache")
    second = render(script, tmp_path / "b", tmp_path / "cache")
    assert (first.synthesized, first.cached) == (3, 0)
    assert (second.synthesized, second.cached) == (0, 3)
    for name in ("mix.wav", "tracks/ana.wav", "tracks/ben.wav", "cues.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_uncached_runs_are_identical_too(write_script, tmp_path):
    script = write_script(SCRIPT)
    render(script, tmp_path / "a", tmp_path / "c1")
    render(script, tmp_path / "b", tmp_path / "c2")
    assert (tmp_path / "a" / "mix.wav").read_bytes() == (tmp_path / "b" / "mix.wav").read_bytes()


def test_changing_one_voice_resynthesises_only_that_characters_lines(write_script, tmp_path):
    script = write_script(SCRIPT)
    render(script, tmp_path / "out", tmp_path / "cache")
    script.write_text(SCRIPT.replace("ben: {voice: ben}", "ben: {voice: {id: ben, rate: 1.3}}"))
    again = render(script, tmp_path / "out", tmp_path / "cache")
    assert (again.synthesized, again.cached) == (1, 2)


def test_outputs_up_to_date_until_an_input_or_output_changes(write_script, tmp_path):
    script = write_script(SCRIPT)
    out = tmp_path / "out"
    render(script, out, tmp_path / "cache")
    assert render(script, out, tmp_path / "cache").up_to_date
    (out / "mix.wav").write_bytes(b"tampered")
    redo = render(script, out, tmp_path / "cache")
    assert not redo.up_to_date and redo.cached == 3
    assert render(script, out, tmp_path / "cache").up_to_date
    script.write_text(SCRIPT.replace("Two from Ana.", "Three from Ana."))
    edited = render(script, out, tmp_path / "cache")
    assert not edited.up_to_date and (edited.synthesized, edited.cached) == (1, 2)
    assert not render(script, out, tmp_path / "cache", enabled=False).up_to_date


def test_speech_key_covers_what_determines_the_audio(tmp_path):
    base = speech_key("Hello.", Voice(id="ava"))
    assert speech_key("Hello.", Voice(id="ava")) == base
    assert speech_key("Hello!", Voice(id="ava")) != base
    assert speech_key("Hello.", Voice(id="ava", rate=1.1)) != base
    assert speech_key("Hello.", Voice(id="ava", pitch=1)) != base
    assert speech_key("Hello.", Voice(id="eve")) != base
    assert speech_key("Hello.", Voice(id="ava", volume=0.5)) == base  # volume is applied in the mix


def test_file_digest_follows_content(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"a" * 10)
    first = file_digest(f)
    f.write_bytes(b"b" * 10)
    os.utime(f, ns=(1, 1))
    assert file_digest(f) != first
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "sub" / "artefact.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []
    with atomic_write(target) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole"


def test_cli_second_run_is_a_cache_hit(tmp_path):
    example = EXAMPLES[0]
    args = ("audio", example, "-o", tmp_path / "out", "--cache", tmp_path / "cache")
    first = run_cli(*args)
    second = run_cli(*args)
    assert first.returncode == second.returncode == 0
    assert "synthesized, 0 from cache" in first.stdout
    assert "up to date" in second.stdout + second.stderr
    third = run_cli("audio", example, "-o", tmp_path / "other", "--cache", tmp_path / "cache")
    assert " 0 synthesized" in third.stdout


def test_completing_a_file_removes_what_killed_writers_left_of_it_and_nothing_else(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from talkstudio.cache import ABANDONED_ELSEWHERE_S

    target = tmp_path / "chunk.mp4"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    killed = tmp_path / f".chunk.mp4~{here}~{gone.pid}~abc123.part"
    live = tmp_path / f".chunk.mp4~{here}~{os.getpid()}~def456.part"  # another writer still at work
    elsewhere_now = tmp_path / ".chunk.mp4~other-host.local~42~x1.part"
    elsewhere_old = tmp_path / ".chunk.mp4~other-host.local~43~x2.part"
    not_ours = tmp_path / ".chunk.mp4.part"
    other_file = tmp_path / f".chunk.mp4~extra~{here}~{gone.pid}~q.part"  # belongs to `chunk.mp4~extra`
    for leftover in (killed, live, elsewhere_now, elsewhere_old, not_ours, other_file):
        leftover.write_bytes(b"half")
    old = time.time() - ABANDONED_ELSEWHERE_S - 60
    os.utime(elsewhere_old, (old, old))
    with atomic_write(target) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert not killed.exists() and not elsewhere_old.exists()
    assert live.exists() and elsewhere_now.exists() and not_ours.exists() and other_file.exists()
