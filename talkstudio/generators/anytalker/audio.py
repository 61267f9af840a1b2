"""wav2vec2 features for AnyTalker: one feature vector per video frame, all layers, a +-2 frame window.

The convolutional features (50 per second) are interpolated linearly to the
video's frame count *before* the transformer, so every encoder layer works at
the video rate; all hidden layers after the input are stacked, and each frame
gets the frames two before and two after it (clamped at the ends):
[frames, 5, layers, hidden]. A track of silence gives the features of a zero
waveform; the unconditional CFG pass uses zeros instead (as the original).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WAV2VEC_RATE = 16000
WINDOW = 2  # frames either side


def load_wav2vec(folder: Path, device: str = "cpu", dtype=None):
    """A wav2vec2 model from its downloaded folder (transformers' Wav2Vec2Model), remembering whether its
    feature extractor normalises the waveform (preprocessor_config.json's do_normalize; default yes)."""
    import json

    from transformers import Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(str(folder), local_files_only=True).to(device=device, dtype=dtype).eval()
    preprocessor = Path(folder) / "preprocessor_config.json"
    settings = json.loads(preprocessor.read_text()) if preprocessor.is_file() else {}
    model.normalizes_input = bool(settings.get("do_normalize", True))
    return model


def normalise(samples: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the track: what Wav2Vec2FeatureExtractor(do_normalize=True) does."""
    samples = samples.astype(np.float32)
    return (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)


def frame_features(model, samples: np.ndarray, frames: int):
    """[frames, 5, layers, hidden] features of a 16 kHz mono track covering `frames` video frames."""
    return frame_windows(layer_features(model, samples, frames), 0, frames)


def layer_features(model, samples: np.ndarray, frames: int):
    """[frames, layers, hidden]: every encoder layer's output, at `frames` evenly spread over the track."""
    import torch
    import torch.nn.functional as F

    parameter = next(model.parameters())
    waveform = normalise(samples) if getattr(model, "normalizes_input", True) else samples.astype(np.float32)
    waveform = torch.from_numpy(waveform)[None].to(parameter.device, parameter.dtype)
    layers: list = []

    def keep(_module, _inputs, output):
        layers.append(output[0] if isinstance(output, tuple) else output)

    # each encoder layer's output, however the installed transformers reports hidden states
    hooks = [layer.register_forward_hook(keep) for layer in model.encoder.layers]
    try:
        with torch.no_grad():
            conv = model.feature_extractor(waveform)  # [1, channels, 50 per second]
            at_video_rate = F.interpolate(conv, size=frames, mode="linear", align_corners=True).transpose(1, 2)
            hidden, _ = model.feature_projection(at_video_rate)
            model.encoder(hidden)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(layers, dim=2)[0]


def frame_windows(features, start: int, count: int):
    """[count, 5, layers, hidden]: frames start..start+count-1 each with the two before and after it,
    clamped to the features' ends."""
    import torch

    neighbours = torch.arange(start, start + count)[:, None] + torch.arange(-WINDOW, WINDOW + 1)[None, :]
    return features[neighbours.clamp(0, len(features) - 1)]
