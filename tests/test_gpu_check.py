"""The one-shot GPU check runs end to end at a toy size on the CPU, so it is ready when a GPU is lent."""

import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("torch")
pytest.importorskip("diffusers")


def test_the_gpu_check_runs_at_a_toy_size():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in ("anytalker", "multitalk")}
    assert set(rows) == {"anytalker", "multitalk"}
    for row in rows.values():
        assert row[1] == "yes" and float(row[4]) > 0 and float(row[5]) > 0  # rendered: finite, varying frames
