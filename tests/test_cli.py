"""The command line as a user meets it: help, version, schema, voices, error exits."""

import json
import re

import jsonschema
import pytest
import yaml

import cli
from conftest import EXAMPLES, ROOT, run_cli, start_cli
from talkstudio import __version__


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"talkstudio {__version__}"


@pytest.mark.parametrize("command", ["validate", "audio", "render", "plan", "voices", "say", "doctor", "schema",
                                     "batch", "podcast", "import", "edit"])
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout
    top = run_cli("--help")
    assert command in top.stdout


def test_usage_errors_exit_2():
    assert run_cli("audio").returncode == 2
    assert run_cli("no-such-command").returncode == 2


def test_schema_is_valid_and_accepts_every_example(tmp_path):
    result = run_cli("schema", "-o", tmp_path / "schema.json")
    assert result.returncode == 0
    schema = json.loads((tmp_path / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for example in EXAMPLES:
        errors = list(validator.iter_errors(yaml.safe_load(example.read_text())))
        assert not errors, (example, errors[:1])
    bad = {"cast": {"ana": {"voice": {"rate": "fast"}}}, "scenes": [{"lines": [{"ana": "hi"}]}]}
    assert list(validator.iter_errors(bad))
    assert "speaker" in schema["$defs"]["LineFields"]["properties"]


def test_voices_lists_presets_and_json():
    table = run_cli("voices")
    assert table.returncode == 0 and "ava" in table.stdout and "espeak-ng 1.52" in table.stdout
    listing = json.loads(run_cli("voices", "--engine", "espeak", "--json").stdout)
    kinds = {v["kind"] for v in listing["espeak"]["voices"]}
    assert {"preset", "language", "variant"} <= kinds
    unknown = run_cli("voices", "--engine", "nope")
    assert unknown.returncode == 2 and "unknown voice engine" in unknown.stderr


def test_output_path_that_is_a_file_is_bad_input(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    result = run_cli("audio", EXAMPLES[0], "-o", blocker, "--cache", tmp_path / "cache")
    assert result.returncode == 2 and "not a folder" in result.stderr and "Traceback" not in result.stderr


def test_internal_errors_exit_1_with_a_log(monkeypatch, tmp_path, capsys):
    import talkstudio.render

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setenv("TALKSTUDIO_CACHE", str(tmp_path))
    monkeypatch.setattr(talkstudio.render, "render_audio", broken)
    assert cli.main(["audio", str(EXAMPLES[0]), "-o", str(tmp_path / "out")]) == 1
    logs = list((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 1 and "simulated bug" in logs[0].read_text()
    assert str(logs[0]) in capsys.readouterr().err


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```")
    first_commands = [b for b in blocks[1::2]][:2]
    assert "talkstudio audio" in first_commands[0] or "talkstudio render" in first_commands[0]
    assert "pytest" in first_commands[1]


def test_doctor_reports_backends_and_why_not(tmp_path):
    result = run_cli("doctor", "--models", tmp_path)
    assert result.returncode == 0
    assert "backend puppet" in result.stdout and "ready (CPU)" in result.stdout
    assert "backend anytalker" in result.stdout and "incomplete" in result.stdout
    assert "voice engine espeak" in result.stdout
    assert "podcast speech detection" in result.stdout and "Silero VAD" in result.stdout  # CI installs [podcast]
    assert "batch on Ray" in result.stdout


def test_ctrl_c_keeps_the_work_and_says_how_to_go_on(tmp_path):
    import signal
    import subprocess
    import time

    script = next(p for p in EXAMPLES if p.stem == "podcast")
    process = start_cli("render", script, "-o", tmp_path / "x.mp4", "--cache", tmp_path / "cache",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "cache" / "chunks").rglob("*.mp4")):  # the first of 11 chunks is done
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr and "run the same command to go on" in stderr
    again = run_cli("render", script, "-o", tmp_path / "x.mp4", "--cache", tmp_path / "cache")
    kept = re.search(r"chunks: 11 \((\d+) from cache\)", again.stdout)
    assert again.returncode == 0 and kept and int(kept[1]) >= 1, again.stdout  # the finished ones were kept
