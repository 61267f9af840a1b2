"""The Wan2.1 VAE for AnyTalker: the original `Wan2.1_VAE.pth` loaded into diffusers' AutoencoderKLWan.

AnyTalker ships the checkpoint in the original Wan-Video layout (wan/modules/vae.py:
flat `nn.Sequential`s indexed by position), while diffusers names the same
modules (`down_blocks`, `up_blocks.N.resnets.M`, `quant_conv`, ...). Renaming the
keys ourselves lets us use diffusers' maintained implementation without a
converted copy of the weights on disk, and without diffusers' conversion
script, whose decoder indices are hard-coded for one layout. The decoder layout
is read from the keys instead, so any Wan2.1-style configuration converts (the
parity test relies on that with a tiny one).

Latents come out unnormalised, as from the original `WanVAE_` with an identity
scale; the per-channel mean/std (the wrapper's `scale`) is the caller's job and
matches `config.latents_mean` / `config.latents_std`.
"""

from __future__ import annotations

import re
from pathlib import Path

# the original _video_vae(z_dim=16) configuration, which diffusers' defaults also describe
WAN21_VAE_CONFIG = dict(
    base_dim=96,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    dropout=0.0,
)

# positions inside the original ResidualBlock.residual Sequential (norm, silu, conv, norm, silu, dropout, conv)
_RESNET_PARTS = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_ATTENTION_PARTS = {name: name for name in ("norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias")}
_RESAMPLE_PARTS = {
    name: name for name in ("resample.1.weight", "resample.1.bias", "time_conv.weight", "time_conv.bias")
}

# the original's head Sequential is (norm, silu, conv); its top-level conv1/conv2 are the quant convs
_FIXED = {
    "conv1.weight": "quant_conv.weight",
    "conv1.bias": "quant_conv.bias",
    "conv2.weight": "post_quant_conv.weight",
    "conv2.bias": "post_quant_conv.bias",
    **{f"{side}.{old}": f"{side}.{new}" for side in ("encoder", "decoder") for old, new in (
        ("conv1.weight", "conv_in.weight"),
        ("conv1.bias", "conv_in.bias"),
        ("head.0.gamma", "norm_out.gamma"),
        ("head.2.weight", "conv_out.weight"),
        ("head.2.bias", "conv_out.bias"),
    )},
}

_INDEXED = re.compile(r"(encoder\.downsamples|encoder\.middle|decoder\.middle|decoder\.upsamples)\.(\d+)\.(.+)")


def convert_wan_vae_state_dict(state: dict) -> dict:
    """Original Wan2.1 VAE keys -> AutoencoderKLWan keys; the tensors are passed through untouched."""
    decoder_slots = _decoder_slots(state)
    converted = {}
    for key, value in state.items():
        new_key = _FIXED.get(key) or _convert_indexed(key, decoder_slots)
        if new_key is None:
            raise ValueError(f"unknown key in the Wan2.1 VAE checkpoint: {key!r}")
        converted[new_key] = value
    return converted


def _convert_indexed(key: str, decoder_slots: dict[int, str]) -> str | None:
    match = _INDEXED.fullmatch(key)
    if match is None:
        return None
    sequence, index, part = match.group(1), int(match.group(2)), match.group(3)
    if sequence == "encoder.downsamples":
        # diffusers keeps the encoder as the same flat list, so the index carries over
        table = {**_RESNET_PARTS, **_ATTENTION_PARTS, **_RESAMPLE_PARTS}
        return f"encoder.down_blocks.{index}.{table[part]}" if part in table else None
    if sequence.endswith("middle"):
        return _convert_middle(sequence.split(".")[0], index, part)
    slot = decoder_slots.get(index, "")
    table = _RESAMPLE_PARTS if ".upsamplers." in slot else _RESNET_PARTS
    return f"{slot}.{table[part]}" if slot and part in table else None


def _convert_middle(side: str, index: int, part: str) -> str | None:
    # the original middle is (resnet, attention, resnet); diffusers splits it into two lists
    if index == 1:
        return f"{side}.mid_block.attentions.0.{_ATTENTION_PARTS[part]}" if part in _ATTENTION_PARTS else None
    if index in (0, 2) and part in _RESNET_PARTS:
        return f"{side}.mid_block.resnets.{index // 2}.{_RESNET_PARTS[part]}"
    return None


def _decoder_slots(state: dict) -> dict[int, str]:
    """Flat decoder.upsamples index -> diffusers module path.

    The original decoder is one list: each stage's resnets, then that stage's
    upsampler (none after the last stage); diffusers nests them per stage. A
    resampler ends a stage, so walking the indices in order recovers the
    grouping whatever num_res_blocks and dim_mult were.
    """
    parts_at: dict[int, set[str]] = {}
    for key in state:
        match = _INDEXED.fullmatch(key)
        if match and match.group(1) == "decoder.upsamples":
            parts_at.setdefault(int(match.group(2)), set()).add(match.group(3))
    slots, stage, resnet = {}, 0, 0
    for index in sorted(parts_at):
        if parts_at[index] & _RESAMPLE_PARTS.keys():
            slots[index] = f"decoder.up_blocks.{stage}.upsamplers.0"
            stage, resnet = stage + 1, 0
        else:
            slots[index] = f"decoder.up_blocks.{stage}.resnets.{resnet}"
            resnet += 1
    return slots


def load_wan_vae(path: Path | str, device: str = "cpu", dtype=None):
    """AutoencoderKLWan (Wan2.1 configuration) from the original `Wan2.1_VAE.pth`, in eval mode."""
    import torch
    from diffusers import AutoencoderKLWan

    state = convert_wan_vae_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # cast here rather than with vae.to(dtype=...), which makes diffusers warn on every call
    state = {key: value.to(device=device, dtype=dtype) for key, value in state.items()}
    # built on the meta device and filled by assignment: no throwaway random init of ~127M parameters
    with torch.device("meta"):
        vae = AutoencoderKLWan(**WAN21_VAE_CONFIG)
    vae.load_state_dict(state, strict=True, assign=True)
    return vae.eval().requires_grad_(False)  # inference only, as the original wrapper
