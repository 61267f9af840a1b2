"""wav2vec2 features for AnyTalker (and MultiTalk): one feature vector per video frame, all layers,
a +-2 frame window.

The convolutional features (50 per second) are interpolated linearly to the
video's frame count *before* the transformer, so every encoder layer works at
the video rate; all hidden layers after the input are stacked, and each frame
gets the frames two before and two after it (clamped at the ends):
[frames, 5, layers, hidden]. A track of silence gives the features of a zero
waveform; the unconditional CFG pass uses zeros instead (as the original).

As the originals do, a voice is heard whole: the features of a scene's track are computed once
(`TrackFeatures`) and each window takes its frames from them, so they do not depend on where the
chunks fall. A long track goes through the network in pieces that give the same numbers: the
convolutional front end in blocks (its first layer's group norm from whole-track statistics), the
transformer in blocks of ENCODER_BLOCK frames with ENCODER_CONTEXT frames of context either side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WAV2VEC_RATE = 16000
WINDOW = 2  # frames either side
CONV_BLOCK = WAV2VEC_RATE * 20  # samples through the convolutional front end at once (its first layer: 512 x samples/5)
ENCODER_BLOCK = 9000  # frames through the transformer at once (6 min at 25 fps): attention grows with the square
ENCODER_CONTEXT = 1500  # frames of context either side of a block


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


def original_features(model, samples: np.ndarray, fps: float, clip_frames: int = 0):
    """[n, 5, layers, hidden]: AnyTalker's own preprocessing of a 16 kHz track (`preprocess_audio` in
    wan/utils/audio_utils.py): n = ceil(seconds * fps) frames, the normalised waveform padded with
    zeros up to a whole number of `clip_frames`; the original then keeps the first clip_frames."""
    import math

    waveform = _prepared(model, samples)
    frames = math.ceil(len(waveform) / WAV2VEC_RATE * fps)
    if clip_frames > 0 and frames % clip_frames:
        missing = clip_frames - frames % clip_frames
        waveform = np.pad(waveform, (0, missing * (WAV2VEC_RATE // round(fps))))
        frames += missing
    return frame_windows(_layers(model, waveform, frames), 0, frames)


def layer_features(model, samples: np.ndarray, frames: int):
    """[frames, layers, hidden]: every encoder layer's output, at `frames` evenly spread over the track."""
    return _layers(model, _prepared(model, samples), frames)


def _prepared(model, samples: np.ndarray) -> np.ndarray:
    return normalise(samples) if getattr(model, "normalizes_input", True) else samples.astype(np.float32)


def _layers(model, waveform: np.ndarray, frames: int):
    import torch
    import torch.nn.functional as F

    parameter = next(model.parameters())
    with torch.no_grad():
        conv = _front_end(model, torch.from_numpy(waveform)[None].to(parameter.device, parameter.dtype))
        at_video_rate = F.interpolate(conv, size=frames, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = model.feature_projection(at_video_rate)
        if frames <= ENCODER_BLOCK:
            return _encoded(model, hidden)
        pieces = []
        for start in range(0, frames, ENCODER_BLOCK):
            lo, hi = max(start - ENCODER_CONTEXT, 0), min(start + ENCODER_BLOCK + ENCODER_CONTEXT, frames)
            pieces.append(_encoded(model, hidden[:, lo:hi])[start - lo:start - lo + ENCODER_BLOCK])
        return torch.cat(pieces)


def _encoded(model, hidden):
    """[frames, layers, hidden]: each encoder layer's output, however transformers reports hidden states."""
    import torch

    layers: list = []

    def keep(_module, _inputs, output):
        layers.append(output[0] if isinstance(output, tuple) else output)

    hooks = [layer.register_forward_hook(keep) for layer in model.encoder.layers]
    try:
        model.encoder(hidden)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(layers, dim=2)[0]


def _front_end(model, waveform):
    """The convolutional features [1, channels, n] of a long waveform [1, samples], block by block with
    the same numbers as one pass: each output depends on a fixed span of samples, and the first
    layer's group norm (wav2vec2-base) uses statistics of the whole track."""
    import torch

    extractor = model.feature_extractor
    if waveform.shape[1] <= CONV_BLOCK:
        return extractor(waveform)
    kernels, strides = model.config.conv_kernel, model.config.conv_stride
    stride = int(np.prod(strides))
    span = 1 + sum((k - 1) * int(np.prod(strides[:i])) for i, k in enumerate(kernels))
    first, rest = extractor.conv_layers[0], extractor.conv_layers[1:]
    group_norm = isinstance(getattr(first, "layer_norm", None), torch.nn.GroupNorm)
    mean, std = _first_layer_statistics(first.conv, waveform, first.layer_norm.eps) if group_norm else (None, None)

    def through(piece):
        hidden = piece[:, None]
        if group_norm:
            norm = first.layer_norm
            hidden = (first.conv(hidden) - mean) / std * norm.weight[:, None] + norm.bias[:, None]
            hidden = first.activation(hidden)
        else:
            hidden = first(hidden)
        for layer in rest:
            hidden = layer(hidden)
        return hidden

    count = (waveform.shape[1] - span) // stride + 1
    per_block = CONV_BLOCK // stride
    return torch.cat([through(waveform[:, a * stride:(min(a + per_block, count) - 1) * stride + span])
                      for a in range(0, count, per_block)], dim=2)


def _first_layer_statistics(conv, waveform, eps: float):
    """Per-channel mean and standard deviation (with the norm's eps) of the first conv layer's output
    over the whole track, accumulated block by block in float64."""
    import torch

    kernel, stride = conv.kernel_size[0], conv.stride[0]
    count = (waveform.shape[1] - kernel) // stride + 1
    per_block = CONV_BLOCK // stride
    total = torch.zeros(conv.out_channels, dtype=torch.float64, device=waveform.device)
    squares = torch.zeros_like(total)
    for a in range(0, count, per_block):
        b = min(a + per_block, count)
        out = conv(waveform[:, a * stride:(b - 1) * stride + kernel][:, None])[0].double()
        total += out.sum(dim=1)
        squares += (out * out).sum(dim=1)
    mean = total / count
    variance = squares / count - mean * mean
    return mean.to(waveform.dtype)[:, None], torch.sqrt(variance + eps).to(waveform.dtype)[:, None]


class TrackFeatures:
    """Each voice's features over its whole scene track, computed once and sliced for every window.

    Keeps one scene's tracks at a time (a render goes scene by scene): a 5-minute scene's features
    are ~280 MB per voice in float32.
    """

    def __init__(self):
        self._key = ""
        self._kept: dict = {}

    def window(self, wav2vec, request, name: str | None):
        """[frame_num, 5, layers, hidden]: the voice's features for the request's window."""
        return frame_windows(self.track(wav2vec, request, name), request.start_frame, request.frame_num)

    def track(self, wav2vec, request, name: str | None):
        """[track_frames, layers, hidden]: the voice's features over the whole scene."""
        if request.track_key != self._key:
            self._key, self._kept = request.track_key, {}
        if name not in self._kept:
            self._kept[name] = layer_features(wav2vec, _track_voice(request, name), request.track_frames).cpu()
        return self._kept[name]


def _track_voice(request, name: str | None) -> np.ndarray:
    """The voice over the scene at 16 kHz (silence for nobody)."""
    from talkstudio.audio_io import resample

    samples = round(request.track_frames / request.fps * request.rate)
    voice = (request.track or {}).get(name) if name is not None else None
    if voice is None:
        voice = np.zeros(samples, np.float32)
    return resample(voice.astype(np.float32), request.rate, WAV2VEC_RATE)


def frame_windows(features, start: int, count: int):
    """[count, 5, layers, hidden]: frames start..start+count-1 each with the two before and after it,
    clamped to the features' ends."""
    import torch

    neighbours = torch.arange(start, start + count)[:, None] + torch.arange(-WINDOW, WINDOW + 1)[None, :]
    return features[neighbours.clamp(0, len(features) - 1)]
