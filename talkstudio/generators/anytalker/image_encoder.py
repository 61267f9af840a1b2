"""The Wan CLIP image encoder for AnyTalker: the vision half of the original
`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` loaded into transformers' CLIPVisionModel.

The checkpoint is the whole XLM-RoBERTa CLIP in the original Wan-Video layout
(wan/modules/clip.py: `visual.transformer.N.attn.to_qkv`, ...); AnyTalker only
ever runs its vision tower, so only the `visual.` keys are renamed and the
text tower is never read (the file is memory-mapped). Renaming ourselves keeps
us on transformers' maintained ViT without a converted copy of 2.5 GB on disk.

What AnyTalker feeds its transformer is `CLIPModel.visual(..., use_31_block=True)`:
the tokens after all blocks but the last, with neither the final norm nor the
projection head, so the last block is dropped after loading and the output is
the encoder's `last_hidden_state` (which CLIPVisionModel leaves un-normed).
"""

from __future__ import annotations

import re
from pathlib import Path

# clip_xlm_roberta_vit_h_14's vision tower (vision_dim=1280, mlp_ratio=4, 16 heads, 32 layers, exact GELU,
# patch 14 at 224, LayerNorm eps 1e-5, pre_norm on, so the patch conv has no bias)
VIT_H_14_CONFIG = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)

# the original's preprocessing (clip._clip): OpenAI CLIP statistics, applied to [0, 1] pixels
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

PREFIX = "visual."
# the token-pool projection [dim, embed_dim]: CLIPVisionModel has no place for it, and the 31-block path never uses it
DROPPED = {"head"}

_FIXED = {
    "patch_embedding.weight": "embeddings.patch_embedding.weight",
    "pre_norm.weight": "pre_layrnorm.weight",
    "pre_norm.bias": "pre_layrnorm.bias",
    "post_norm.weight": "post_layernorm.weight",
    "post_norm.bias": "post_layernorm.bias",
}
_BLOCK_PARTS = {
    "norm1.weight": "layer_norm1.weight",
    "norm1.bias": "layer_norm1.bias",
    "attn.proj.weight": "self_attn.out_proj.weight",
    "attn.proj.bias": "self_attn.out_proj.bias",
    "norm2.weight": "layer_norm2.weight",
    "norm2.bias": "layer_norm2.bias",
    "mlp.0.weight": "mlp.fc1.weight",  # mlp = Sequential(Linear, GELU, Linear, Dropout)
    "mlp.0.bias": "mlp.fc1.bias",
    "mlp.2.weight": "mlp.fc2.weight",
    "mlp.2.bias": "mlp.fc2.bias",
}
_BLOCK = re.compile(r"transformer\.(\d+)\.(.+)")


def convert_wan_clip_visual_state_dict(state: dict) -> dict:
    """The `visual.` keys of the original Wan CLIP checkpoint -> CLIPVisionModel keys (text tower ignored)."""
    converted = {}
    for key, value in state.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        if name in DROPPED:
            continue
        if name in _FIXED:
            converted[_FIXED[name]] = value
        elif name == "cls_embedding":  # [1, 1, dim] -> [dim]
            converted["embeddings.class_embedding"] = value.reshape(-1)
        elif name == "pos_embedding":  # [1, tokens, dim] -> an Embedding's [tokens, dim]
            converted["embeddings.position_embedding.weight"] = value[0]
        else:
            converted.update(_convert_block(key, name, value))
    return converted


def _convert_block(key: str, name: str, value) -> dict:
    match = _BLOCK.fullmatch(name)
    if match is None:
        raise ValueError(f"unknown visual key in the Wan CLIP checkpoint: {key!r}")
    layer, part = f"encoder.layers.{match.group(1)}", match.group(2)
    if part in ("attn.to_qkv.weight", "attn.to_qkv.bias"):
        # the original views the fused output as (3, heads, head_dim): q, k, v are consecutive thirds
        q, k, v = value.chunk(3, dim=0)
        kind = part.rsplit(".", 1)[1]
        return {f"{layer}.self_attn.{p}_proj.{kind}": t for p, t in zip("qkv", (q, k, v))}
    if part in _BLOCK_PARTS:
        return {f"{layer}.{_BLOCK_PARTS[part]}": value}
    raise ValueError(f"unknown visual key in the Wan CLIP checkpoint: {key!r}")


class WanClipImageEncoder:
    """`encode(images)`: [B, 3, H, W] (or [B, 3, F, H, W]) in [-1, 1] -> [B(*F), 257, 1280] tokens.

    Mirrors the original wrapper: bicubic resize to the model's size (no antialias, as F.interpolate), then
    [-1, 1] -> [0, 1] and the CLIP mean/std; frames of a video are encoded as separate images, batch-major.
    """

    def __init__(self, model):
        self.model = model

    def __call__(self, images):
        import torch
        import torch.nn.functional as F

        if images.dim() == 5:  # the original takes [3, F, H, W] videos and concatenates their frames
            images = images.transpose(1, 2).flatten(0, 1)
        parameter = next(self.model.parameters())
        # preprocessing in fp32 (the original does it in the input's dtype, fp16 in AnyTalker's half mode)
        x = images.to(device=parameter.device, dtype=torch.float32)
        size = self.model.config.image_size
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        x = (x * 0.5 + 0.5 - mean) / std
        with torch.no_grad():
            return self.model(pixel_values=x.to(parameter.dtype)).last_hidden_state

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self


def load_image_encoder(path: Path | str, device: str = "cpu", dtype=None) -> WanClipImageEncoder:
    """The Wan CLIP vision tower, cut to the 31-block output AnyTalker uses (dtype=float16 as its clip_dtype)."""
    import torch

    try:  # mapped, so the ~560M-parameter text tower is never read
        full = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) file cannot be mapped
        full = torch.load(path, map_location="cpu", weights_only=True)
    state = convert_wan_clip_visual_state_dict(full)
    del full
    state = {key: value.to(device=device, dtype=dtype) for key, value in state.items()}
    return WanClipImageEncoder(build_vision_model(state, VIT_H_14_CONFIG, device))


def build_vision_model(state: dict, config: dict, device="cpu", keep_last_block: bool = False):
    """CLIPVisionModel filled from a converted state by assignment (built on meta: no throwaway init)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    with torch.device("meta"):
        model = CLIPVisionModel(CLIPVisionConfig(**config))
    # older transformers nest the tower under .vision_model; its keys below that are the same
    tower = getattr(model, "vision_model", model)
    tower.load_state_dict(state, strict=True, assign=True)
    # the one buffer not in the state dict, still on meta
    embeddings = tower.embeddings
    embeddings.register_buffer("position_ids", torch.arange(embeddings.num_positions, device=device)[None],
                               persistent=False)
    if not keep_last_block:  # use_31_block: the original runs transformer[:-1]
        tower.encoder.layers = tower.encoder.layers[:-1]
        model.config.num_hidden_layers = len(tower.encoder.layers)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left and torch.device(device).type != "meta":
        raise RuntimeError(f"not loaded: {left}")
    return model.eval().requires_grad_(False)
