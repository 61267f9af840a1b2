"""benchmarks/bindyouravatar_audio_check.py runs on a repository-shaped folder (its real use needs the released
model and the demo files, out of reach here): a stream made from the same mix by the same variant scores 1."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_the_check_recognises_the_variant_that_made_the_rows(tmp_path, capsys):
    import wave

    import bindyouravatar_audio_check as check
    from anytalker_layout import wav2vec

    model_dir = tmp_path / "wav2vec2-base-960h"
    wav2vec().save_pretrained(model_dir)
    t = np.arange(int(0.9 * 16000)) / 16000
    voice = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    (tmp_path / "repo" / "assets" / "audio").mkdir(parents=True)
    (tmp_path / "repo" / "assets" / "audio_emb").mkdir(parents=True)
    with wave.open(str(tmp_path / "repo" / "assets" / "audio" / "001.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((voice * 32767).astype("<i2").tobytes())
    from talkstudio.generators.anytalker.audio import load_wav2vec

    from talkstudio.audio_io import read_audio

    made = check.rows(load_wav2vec(model_dir), read_audio(tmp_path / "repo" / "assets" / "audio" / "001.wav", 16000),
                      "after")
    torch.save(made.float(), tmp_path / "repo" / "assets" / "audio_emb" / "001_0.pt")
    check.main(["--wav2vec", str(model_dir), "--repo", str(tmp_path / "repo")])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("001_0"))
    scores = [float(v) for v in line.split()[2:]]
    assert len(made) == 23 and scores[2] == pytest.approx(1.0, abs=1e-6) and max(scores[:2]) < 0.9999
