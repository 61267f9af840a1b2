"""Which audio extractor made Bind-Your-Avatar's released audio embeddings? Compare ours with the demo ones.

The repository ships, per demo sample NNN, the mixed dialogue (assets/audio/NNN.wav) and the embedding
rows the model was fed for each speaker (assets/audio_emb/NNN_0.pt, NNN_1.pt: [rows, 12, 768], 25 rows a
second), but no code that makes them. This computes rows from the mix with wav2vec2-base-960h in a few
candidate ways and prints, per sample and stream, the correlation with the shipped rows per layer:

    hallo         talkstudio's (and Hallo's): the waveform normalised, the convolutional features
                  interpolated to 25 per second before the transformer, all 12 layers
    raw           the same without normalising the waveform
    after         the transformer at its own 50 per second, its outputs interpolated to 25 per second

A speaker's own rows differ from the mix's where the other one talks, so compare the variants with each
other rather than against 1.0; where a stream is silent in the mix, its rows should still match.
Needs the downloaded model and the repository (neither can be fetched here):

    python benchmarks/bindyouravatar_audio_check.py --wav2vec DIR/wav2vec2-base-960h --repo Bind-Your-Avatar-Implementation
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FPS = 25


def rows(model, samples: np.ndarray, variant: str):
    """[frames, layers, hidden] for a 16 kHz track, frames = ceil(seconds * 25)."""
    import torch
    import torch.nn.functional as F

    from talkstudio.generators.anytalker.audio import WAV2VEC_RATE, _encoded, layer_features, normalise

    frames = math.ceil(len(samples) / WAV2VEC_RATE * FPS)
    if variant == "hallo":
        return layer_features(model, samples, frames)
    if variant == "raw":
        model.normalizes_input = False
        try:
            return layer_features(model, samples, frames)
        finally:
            model.normalizes_input = True
    with torch.no_grad():  # "after": the encoder at 50 Hz, then each layer resampled to 25 Hz
        conv = model.feature_extractor(torch.from_numpy(normalise(samples))[None]).transpose(1, 2)
        hidden, _ = model.feature_projection(conv)
        layers = _encoded(model, hidden)  # [50 Hz frames, layers, hidden]
        return F.interpolate(layers.permute(1, 2, 0), size=frames, mode="linear", align_corners=True).permute(2, 0, 1)


def correlation(a, b) -> np.ndarray:
    """Per layer, over rows and channels."""
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64), np.asarray(b[:n], np.float64)
    out = []
    for layer in range(a.shape[1]):
        x, y = a[:, layer].ravel() - a[:, layer].mean(), b[:, layer].ravel() - b[:, layer].mean()
        out.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
    return np.array(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wav2vec", type=Path, required=True, help="the downloaded wav2vec2-base-960h folder")
    parser.add_argument("--repo", type=Path, required=True, help="a checkout of Bind-Your-Avatar-Implementation")
    args = parser.parse_args(argv)
    import torch

    from talkstudio.audio_io import read_audio
    from talkstudio.generators.anytalker.audio import WAV2VEC_RATE, load_wav2vec

    model = load_wav2vec(args.wav2vec)
    variants = ("hallo", "raw", "after")
    print(f"{'sample':<10}{'rows':>6}" + "".join(f"{v:>10}" for v in variants) + "   (mean correlation over the 12 layers)")
    for mix in sorted((args.repo / "assets" / "audio").glob("*.wav")):
        samples = read_audio(mix, WAV2VEC_RATE)
        ours = {v: rows(model, samples, v).float().numpy() for v in variants}
        for stream in (0, 1):
            shipped_path = args.repo / "assets" / "audio_emb" / f"{mix.stem}_{stream}.pt"
            if not shipped_path.exists():
                continue
            shipped = torch.load(shipped_path, map_location="cpu", weights_only=True).float().numpy()
            scores = [correlation(ours[v], shipped).mean() for v in variants]
            print(f"{mix.stem}_{stream:<6}{len(shipped):>6}" + "".join(f"{s:>10.3f}" for s in scores))


if __name__ == "__main__":
    main()
