"""Tiny Bind-Your-Avatar sizes and the weight recipe shared with the fixtures in fixtures/bindyouravatar/.

The fixtures were made by running the original modules (Yubo-Shankui/Bind-Your-Avatar-Implementation@8b72624,
fp32, CPU) outside the project. Their weights follow a recipe any implementation can regenerate from the
original key names: value(name) = RandomState((seed + crc32(name)) % 2**32).standard_normal(shape) * scale,
plus 1.0 for one-dimensional `...weight` tensors (norm gains). Files too large to store carry the recipe and
per-key checksums instead of the weights.
"""

import zlib
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "bindyouravatar"
TINY_ROUTER = {"num_id_token": 12, "num_heads": 2, "inner_dim1": 8, "inner_dim2": 4, "addtional_dim": 3, "q_k_dim": 4}
TINY_PROJECTION = {"seq_len": 5, "blocks": 3, "channels": 4, "intermediate_dim": 16, "output_dim": 8, "context_tokens": 4}
TINY_AUDIO = {"audio_dim": 8, "num_attention_heads": 2, "attention_head_dim": 4, "window_size": 5, "window_stride": 1,
              "projection": TINY_PROJECTION}


def load(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=False)  # our own fixture files (dicts of notes too)


def recipe_value(name: str, shape, seed: int, scale: float) -> torch.Tensor:
    state = np.random.RandomState((int(seed) + zlib.crc32(name.encode())) % 2 ** 32)
    value = state.standard_normal(tuple(shape)).astype(np.float32) * np.float32(scale)
    if len(shape) == 1 and name.endswith("weight"):
        value = value + np.float32(1.0)
    return torch.from_numpy(value)


def fill(module: torch.nn.Module, seed: int, scale: float) -> torch.nn.Module:
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(recipe_value(name, parameter.shape, seed, scale))
    return module


def checksums(state: dict) -> dict:
    return {k: [float(v.double().sum()), float(v.double().abs().sum())] for k, v in state.items()}


def tiny_transformer(fixture: dict):
    """The 4-layer transformer of the transformer_* fixtures, its weights loaded strictly (the original ran it
    with the face tokens given directly, so the facial extractor keeps its own weights)."""
    from talkstudio.generators.bindyouravatar.transformer import Additions, make_transformer

    config = fixture["config"]
    additions = Additions(cross_attn_interval=config["cross_attn_interval"],
                          audio_attn_interval=config["audio_attn_interval"],
                          local_face_scale=config["local_face_scale"], face_attention={"dim_head": 2, "heads": 2},
                          router=TINY_ROUTER, audio=TINY_AUDIO)
    model = make_transformer(config, additions).eval()
    state = dict(load("transformer_state")["state"])
    state.update({k: v for k, v in model.state_dict().items() if k.startswith("local_facial_extractor.")})
    state["router.pos_emb"] = model.router.pos_emb  # a buffer the original computes; not stored (same formula)
    model.load_state_dict(state, strict=True)
    return model
