"""Distillation LoRAs (lightx2v, FusionX...) merged into the DiT's weights, as the original applies them.

A LoRA file holds, under `diffusion_model.<parameter>` (the prefix is optional here), either a low-rank
pair (`lora_down`/`lora_up`, or `lora_A`/`lora_B`) whose product is added to the weight, or a full
difference (`diff` for a weight, `diff_b` for a bias). Each is scaled by `scale`; a stored `alpha` is
ignored, as the original ignores it (its recommended scales assume that). Few-step LoRAs are used with
fewer steps and guidance 1 (`--opt steps=8 --opt text_guide=1 --opt audio_guide=2`).
"""

from __future__ import annotations

import re
from pathlib import Path

from talkstudio.errors import InputError, Problem

PREFIX = "diffusion_model."
_PAIR = re.compile(r"(.+)\.(lora_down|lora_A)\.weight")


def lora_deltas(tensors: dict) -> dict[str, tuple]:
    """Parameter name -> ("pair", down, up) or ("diff", tensor), from a LoRA file's tensors."""
    deltas = {}
    for key, value in tensors.items():
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if match := _PAIR.fullmatch(name):
            up = key.replace(f".{match.group(2)}.", ".lora_up." if match.group(2) == "lora_down" else ".lora_B.")
            if up in tensors:
                deltas[f"{match.group(1)}.weight"] = ("pair", value, tensors[up])
        elif name.endswith(".diff"):
            deltas[name[:-len(".diff")] + ".weight"] = ("diff", value)
        elif name.endswith(".diff_b"):
            deltas[name[:-len(".diff_b")] + ".bias"] = ("diff", value)
    return deltas


def apply_lora(model, path: Path, scale: float = 1.0) -> int:
    """Merge the LoRA at `path` into `model` in place; how many parameters it changed."""
    import torch
    from safetensors.torch import load_file

    try:
        deltas = lora_deltas(load_file(str(path)))
    except Exception as error:  # safetensors' own message says what is wrong with the file
        raise InputError(Problem(f"cannot read the LoRA {path}: {error}", file=path)) from None
    parameters = dict(model.named_parameters())
    unknown = sorted(name for name in deltas if name not in parameters)
    if unknown or not deltas:
        raise InputError(Problem(
            f"the LoRA {path.name} does not fit this model: "
            + (f"no parameter {', '.join(unknown[:5])}" if unknown else "it holds no lora_down/lora_up, lora_A/lora_B "
               "or diff tensors"),
            file=path, hint="use a LoRA made for Wan2.1-I2V-14B (keys diffusion_model.blocks.N...)"))
    with torch.no_grad():
        for name, delta in deltas.items():
            parameter = parameters[name]
            if delta[0] == "pair":
                change = delta[2].float() @ delta[1].float()
            else:
                change = delta[1].float()
            parameter.add_((change * scale).to(parameter.device, parameter.dtype))
    return len(deltas)
