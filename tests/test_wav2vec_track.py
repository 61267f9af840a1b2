"""wav2vec over a whole scene track: long tracks go through the network in pieces with the same numbers."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests_anytalker_inputs import seeded_wav2vec  # noqa: E402

from talkstudio.generators.anytalker import audio  # noqa: E402


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
            ).astype(np.float32)


def test_the_front_end_in_blocks_gives_the_numbers_of_one_pass(monkeypatch):
    """Its first layer's group norm takes whole-track statistics: blocks alone would each be normalised
    differently."""
    model = seeded_wav2vec()
    assert isinstance(model.feature_extractor.conv_layers[0].layer_norm, torch.nn.GroupNorm)
    waveform = torch.from_numpy(audio.normalise(_speech(3.3)))[None]
    with torch.no_grad():
        whole = model.feature_extractor(waveform)
        monkeypatch.setattr(audio, "CONV_BLOCK", 7 * 320 + 11)
        blocked = audio._front_end(model, waveform)
    assert blocked.shape == whole.shape
    torch.testing.assert_close(blocked, whole, atol=1e-5, rtol=1e-5)


def test_the_encoder_in_blocks_with_context_covering_the_track_is_one_pass(monkeypatch):
    model = seeded_wav2vec()
    voice = _speech(2.0, seed=1)
    whole = audio.layer_features(model, voice, 50)
    monkeypatch.setattr(audio, "ENCODER_BLOCK", 16)
    monkeypatch.setattr(audio, "ENCODER_CONTEXT", 50)
    torch.testing.assert_close(audio.layer_features(model, voice, 50), whole, atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(audio, "ENCODER_CONTEXT", 0)  # without context the blocks do differ: the test can tell
    assert (audio.layer_features(model, voice, 50) - whole).abs().max() > 1e-3


def test_the_originals_preprocessing_pads_to_whole_clips():
    """AnyTalker's preprocess_audio: ceil(seconds * fps) frames, the normalised waveform padded with zeros
    to a whole number of clips; a track already a whole number of clips long is not padded."""
    model = seeded_wav2vec()
    voice = _speech(58 / 24)  # 58 frames at 24 fps
    padded = audio.original_features(model, voice, 24, clip_frames=57)
    assert padded.shape[0] == 114
    unpadded = audio.original_features(model, voice, 24, clip_frames=58)
    assert unpadded.shape[0] == 58
    torch.testing.assert_close(unpadded, audio.frame_features(model, voice, 58))
    assert (padded[:57] - unpadded[:57]).abs().max() > 1e-4  # the zeros change what the encoder hears
