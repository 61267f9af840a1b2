"""A tiny MultiTalk configuration and inputs, shared by the parity tests and the script that made their
fixture by running the original implementation (MeiGen-AI/MultiTalk@c1ad840) on the same weights."""

import torch

CONFIG = {"dim": 48, "ffn_dim": 64, "num_heads": 2, "num_layers": 2, "text_dim": 16, "text_len": 8, "freq_dim": 32,
          "intermediate_dim": 16, "output_dim": 32}
LATENT_FRAMES, LAT_H, LAT_W = 3, 4, 6


def seeded_model(**overrides):
    from talkstudio.generators.multitalk.transformer import MultiTalkConfig, MultiTalkTransformer

    torch.manual_seed(0)
    model = MultiTalkTransformer(MultiTalkConfig(**{**CONFIG, **overrides})).eval()
    with torch.no_grad():  # random weights everywhere (zero-initialised ones too), so every path carries signal
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.05)
    return model


def inputs(persons: int = 2):
    """x (noise + InP condition), t, text, clip, audio [1, persons, F, 5, 12, 768], region masks [3, h, w]."""
    generator = torch.Generator().manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    frames = (LATENT_FRAMES - 1) * 4 + 1
    x = randn(1, 36, LATENT_FRAMES, LAT_H, LAT_W)
    t = torch.tensor([700.0])
    text = randn(1, 5, CONFIG["text_dim"])
    clip = randn(1, 257, 1280)
    audio = randn(1, persons, frames, 5, 12, 768)
    masks = torch.zeros(3, LAT_H, LAT_W)
    masks[0, :, :3] = 1.0  # person 1 on the left
    masks[1, :, 3:] = 1.0  # person 2 on the right
    masks[2, 0, :] = 1.0   # a strip of background along the top
    masks[0, 0, :] = masks[1, 0, :] = 0.0
    return x, t, text, clip, audio, masks
