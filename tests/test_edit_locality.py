"""What an edit re-renders on a backend that hears each voice over its whole scene (AnyTalker, tiny official
folder on the CPU).

wav2vec runs once over a scene's track, normalised over the whole track and with attention across it, as
the original does; a window's features therefore depend on every sample of its scene. So an edit re-renders
the chunks of its own scene and nothing of any other scene (measured here), and a chunk's key holds its scene
track's digest rather than its window's.
"""

import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from anytalker_layout import build_tiny_layout, tiny_configs  # noqa: E402

SCRIPT = """\
video: {size: 96x64, backend: anytalker, options: {steps: 1, max_area: 1536}}
timing: {lead_in: 0.05, gap: 0.05, tail: 0.05}
cast:
  ana: {voice: ava}
  ben: {voice: ben}
scenes:
  - prompt: two people talk in a warm room
    lines: [{ana: Hello there.}, {ben: Hi.}]
  - prompt: two people talk in a warm room
    lines: [{ben: Good morning to you.}, {ana: LINE}]
"""


def _chunks(capsys) -> tuple[int, int]:
    found = re.search(r"chunks: (\d+) \((\d+) from cache\)", capsys.readouterr().out)
    assert found, "the render reports its chunks"
    return int(found[1]), int(found[2])


def test_an_edit_re_renders_its_own_scene_and_nothing_of_another(tmp_path, write_script, monkeypatch, capsys):
    import json
    import math

    from cli import main
    from talkstudio import generators

    tiny_configs(monkeypatch)
    monkeypatch.setattr(generators, "_instances", {})
    models = build_tiny_layout(tmp_path / "models")

    def render(line: str, out: str):
        script = write_script(SCRIPT.replace("LINE", line))
        assert main(["render", str(script), "--models", str(models), "--frame-num", "9", "-o",
                     str(tmp_path / out), "--cache", str(tmp_path / "cache")]) == 0
        return _chunks(capsys), json.loads((tmp_path / out.replace(".mp4", "") / "cues.json").read_text())

    (_, cached), _ = render("Yes.", "first.mp4")
    assert cached == 0
    (again, cached), edited = render("Yes indeed I do.", "second.mp4")
    first, second = (scene["end_frame"] - scene["start_frame"] for scene in edited["scenes"])
    # 9-frame chunks carrying 5 frames: the first draws 9 new frames, each later one 4
    first_chunks, second_chunks = (1 + math.ceil(max(frames - 9, 0) / 4) for frames in (first, second))
    assert again == first_chunks + second_chunks
    assert cached == first_chunks  # every chunk of the untouched scene, none of the edited one


def test_new_weights_in_the_same_folder_re_render_every_chunk(tmp_path, write_script, monkeypatch, capsys):
    """A chunk's key names the backend's weights: replaced in place, none of the old chunks is reused."""
    import torch

    from cli import main
    from talkstudio import generators
    from tests_anytalker_inputs import seeded_model

    tiny_configs(monkeypatch)
    models = build_tiny_layout(tmp_path / "models")
    script = write_script(SCRIPT.replace("LINE", "Yes."))

    def render(out: str):
        monkeypatch.setattr(generators, "_instances", {})
        assert main(["render", str(script), "--models", str(models), "--frame-num", "9", "-o", str(tmp_path / out),
                     "--cache", str(tmp_path / "cache")]) == 0
        return _chunks(capsys)

    total, _ = render("first.mp4")
    assert render("again.mp4") == (total, total)  # same weights: all from the cache
    state = seeded_model().state_dict()
    state["head.head.bias"] = state["head.head.bias"] + 0.5
    torch.save({"model": state}, models / "AnyTalker" / "1_3B-single-v1.pth")
    assert render("retrained.mp4") == (total, 0)
