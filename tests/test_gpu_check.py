"""The one-shot GPU check runs end to end at a toy size on the CPU, so it is ready when a GPU is lent; the
Bind-Your-Avatar speed benchmark (which the check does not run: it has no original formulation to compare
with) runs at a toy size, and its FLOP count is torch's own count of the full-size forward."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("torch")
pytest.importorskip("diffusers")

BACKENDS = ("anytalker", "multitalk", "bindyouravatar")


def test_the_gpu_check_runs_at_a_toy_size():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in BACKENDS}
    assert set(rows) == set(BACKENDS), result.stdout
    for row in rows.values():
        assert row[1] == "yes" and float(row[4]) > 0 and float(row[5]) > 0  # rendered: finite, varying frames
    assert re.fullmatch(r"[\d.]+x", rows["anytalker"][8]) and rows["bindyouravatar"][8] == "-"


def test_the_bindyouravatar_speed_benchmark_runs_at_a_toy_size():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bindyouravatar_speed.py"), "--tiny",
                             "--repeats", "1"], capture_output=True, text=True, timeout=300, cwd=ROOT / "benchmarks")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("talkstudio"))
    assert float(row[1]) > 0 and float(row[2]) > 50 * float(row[1])  # s/step; s/window: 50 steps and more
    assert "output finite: True" in result.stdout and "speed-up n/a" in result.stdout
    assert not re.search(r"speed-up ([\d.]+)x", result.stdout)  # gpu_check would read no number: "-"


def test_the_flop_count_is_torchs_count_of_the_full_size_forward():
    """The full-size model (CogVideoX-5B-I2V core, released additions) on the meta device: the forward's shapes
    hold at 720x480 and 49 frames, and `flops` is within 0.01% of torch's FlopCounterMode (which also counts
    the small timestep and modulation matmuls that `flops` leaves out)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bindyouravatar_speed import COGVIDEOX_5B_I2V, flop_parts, flops, released_additions
    from talkstudio.generators.bindyouravatar.positions import rotary_embeddings
    from talkstudio.generators.bindyouravatar.transformer import forward, make_transformer

    with torch.device("meta"):
        model = make_transformer({**COGVIDEOX_5B_I2V, "in_channels": 48}, released_additions()).eval()
        x = torch.randn(2, 13, 48, 60, 90)
        text = torch.randn(2, 226, 4096)
        faces, audio = torch.randn(2, 2, 32, 2048), torch.randn(2, 2, 13, 32, 768)
        speakers = torch.eye(2)[None].repeat(2, 1, 1)
    rotary = tuple(part.to("meta") for part in rotary_embeddings(480, 720, 13, 2, 64))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = forward(model, x, text, torch.tensor([500, 500], device="meta"), rotary, faces, audio, speakers)
    assert out.shape == (2, 13, 16, 60, 90)
    ours = flops(model, 13, 60, 90)
    assert abs(ours - counter.get_total_flops()) < 1e-4 * ours
    parts = flop_parts(model, 13, 60, 90, frames=49)
    assert 880e12 < ours < 895e12 and parts["router"] > parts["face cross-attention"] > 0
    assert 0 < parts["audio projection (per window)"] < 1e-3 * ours
