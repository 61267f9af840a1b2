"""A tiny AnyTalker configuration and inputs, shared by the parity test and the script that made its
fixture by running the original implementation (HKUST-C4G/AnyTalker@e5490b6) on the same weights."""

import torch

CONFIG = {"dim": 48, "ffn_dim": 64, "num_heads": 2, "num_layers": 2, "text_dim": 16, "text_len": 8, "freq_dim": 32}


def seeded_model(**overrides):
    from talkstudio.generators.anytalker.transformer import AnyTalkerConfig, AnyTalkerTransformer

    torch.manual_seed(0)
    model = AnyTalkerTransformer(AnyTalkerConfig(**{**CONFIG, **overrides})).eval()
    with torch.no_grad():  # random weights everywhere (zero-initialised ones too), so every path carries signal
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.05)
    return model


def inputs():
    generator = torch.Generator().manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    latent_frames, height, width = 2, 4, 4
    video_frames = (latent_frames - 1) * 4 + 1
    x = randn(1, 36, latent_frames, height, width)
    t = torch.tensor([500.0])
    text = randn(1, 5, CONFIG["text_dim"])
    clip = randn(1, 257, 1280)
    audios = [randn(1, video_frames, 5, 12, 768) for _ in range(2)]
    faces = [randn(1, 257, 1280) for _ in range(2)]
    tokens = latent_frames * (height // 2) * (width // 2)
    masks = [torch.zeros(1, tokens), torch.zeros(1, tokens)]
    masks[0][0, ::2] = 1.0  # identity 0 on even patches, identity 1 on odd ones
    masks[1][0, 1::2] = 1.0
    return x, t, text, clip, audios, faces, masks


def seeded_wav2vec():
    """A tiny wav2vec2 with seeded weights (every parameter drawn here, independent of library init)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(3)
    model = Wav2Vec2Model(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1)
    return model


def wav2vec_input():
    """1.3 s of a 16 kHz test signal, for 31 video frames at 24 fps (rounded up)."""
    import numpy as np

    t = np.arange(int(1.3 * 16000)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return samples, int(np.ceil(1.3 * 24))


def toy_flow():
    """A start latent and a velocity field with some curvature, to exercise a multistep solver."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(1, 4, 3, 8, 8, generator=generator)
    target = torch.randn(1, 4, 3, 8, 8, generator=generator)

    def velocity(x, t):
        return (x - target) * 0.9 + 0.1 * torch.tanh(x) * (t / 1000)

    return start, velocity


LEGACY = {"legacy_audio_cross_attn": True, "intermediate_dim": 16, "audio_output_dim": 32}
