"""`talkstudio render --backend bindyouravatar --models DIR` end to end on the CPU, from a tiny folder whose every
file is in the released format (tests/bindyouravatar_layout.py): the DiT and its three module files, the
LoRA, CogVideoX's VAE, T5 and scheduler, EVA-CLIP and antelopev2's recogniser, wav2vec. A two-person scene
renders in chained 9-frame windows (each continuing from the last frame of the one before), stitched and
assembled."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from bindyouravatar_layout import build_tiny_bindyouravatar, tiny_configs  # noqa: E402

SCRIPT = """\
video: {size: 96x64, backend: bindyouravatar, options: {steps: 1}}
timing: {lead_in: 0.05, gap: 0.05, tail: 0.05}
cast:
  ana: {voice: ava}
  ben: {voice: ben}
scenes:
  - prompt: two people talk in a warm room
    lines: [{ana: Hello there.}, {ben: Hi.}]
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_tiny_bindyouravatar(tmp_path_factory.mktemp("models"))


@pytest.fixture
def tiny(monkeypatch):
    from talkstudio import generators
    from talkstudio.generators import bindyouravatar

    tiny_configs(monkeypatch)
    monkeypatch.setattr(bindyouravatar, "MODEL_SIZE", (96, 64))  # the tiny VAE and grid; released: 720x480
    monkeypatch.setattr(generators, "_instances", {})


def test_a_two_person_scene_renders_in_chained_windows(tiny, models, write_script, tmp_path, monkeypatch):
    from cli import main
    from talkstudio.assemble import count_frames, read_frames
    from talkstudio.generators.bindyouravatar import pipeline

    windows = []
    real = pipeline.generate

    def recording(components, window, *args, **kwargs):
        windows.append(window)
        return real(components, window, *args, **kwargs)

    monkeypatch.setattr(pipeline, "generate", recording)
    out = tmp_path / "out.mp4"
    assert main(["render", str(write_script(SCRIPT)), "--models", str(models), "--frame-num", "9", "-o", str(out),
                 "--cache", str(tmp_path / "cache"), "--quiet"]) == 0
    cues = json.loads((tmp_path / "out" / "cues.json").read_text())
    assert count_frames(out) == cues["frames"] > 9 and len(windows) >= 2
    frames = np.stack(list(read_frames(out, (96, 64))))
    assert frames.std() > 1.0
    first, second = windows[:2]
    assert first.audio.shape[:2] == (2, 9 + 4)  # two voices, a row per frame and two either side
    assert not np.array_equal(first.background, second.background)  # the second continues from the first's end
    assert first.image.shape == (64, 96, 3) and (first.image == 255).mean() > 0.3  # faces on the white canvas
