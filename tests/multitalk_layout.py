"""A tiny MultiTalk / InfiniteTalk model folder in the layout users download, every file in its official format:

    DIR/Wan2.1-I2V-14B-480P/   config.json (Wan's), diffusion_pytorch_model-0000N-of-00002.safetensors,
                               the Wan T5, tokenizer, VAE and CLIP files (tests/anytalker_layout.py)
    DIR/chinese-wav2vec2-base/ a transformers save_pretrained folder
    DIR/MeiGen-MultiTalk/multitalk.safetensors  and  DIR/InfiniteTalk/multi/infinitetalk.safetensors:
                               the audio modules (audio_proj, audio_cross_attn, norm_x), as the originals ship them
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from anytalker_layout import CLIP_CONFIG, CLIP_FILE, wav2vec, write_wan_encoders
from tests_multitalk_inputs import CONFIG, seeded_model

WAN = "Wan2.1-I2V-14B-480P"
CLIP_SIZE = 224  # the real CLIP input size (257 tokens)
AUDIO_PARTS = ("audio_proj.", ".audio_cross_attn.", ".norm_x.")


def build_tiny_multitalk(root: Path, clip_size: int | None = None, unit_norms: bool = False, **config) -> Path:
    """The folder under `root`; `config` overrides config.json fields that hold no weights (e.g. text_len).

    `clip_size` 224 gives the CLIP tower the real input size, so it makes the real 257 tokens: the original
    cross-attention cuts its context at token 257 (the tiny 28-pixel CLIP makes 5); load it with
    `clip_config(clip_size)` as the CLIP configuration.

    `unit_norms` puts the DiT's norm gains at 1 (plus the seeded noise), as in a trained model: at the
    seeded 0.05 every query and key is tiny, every attention nearly uniform, and which region is bound to
    which voice barely changes the output.
    """
    wan = root / WAN
    write_wan_encoders(wan)
    if clip_size:
        _resize_clip(wan / CLIP_FILE, clip_size)
    (wan / "config.json").write_text(json.dumps({"_class_name": "WanModel", "_diffusers_version": "0.30.0",
                                                  "model_type": "i2v", "in_dim": 36, "out_dim": 16, "eps": 1e-06,
                                                  **CONFIG, **config}))
    model = _with_unit_norms(seeded_model()) if unit_norms else seeded_model()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    audio = {k: v for k, v in state.items() if any(part in k or k.startswith(part) for part in AUDIO_PARTS)}
    video = sorted(k for k in state if k not in audio)
    half = len(video) // 2
    for index, keys in enumerate((video[:half], video[half:]), start=1):
        save_file({k: state[k] for k in keys}, wan / f"diffusion_pytorch_model-{index:05d}-of-00002.safetensors")
    for path in (root / "MeiGen-MultiTalk" / "multitalk.safetensors",
                 root / "InfiniteTalk" / "multi" / "infinitetalk.safetensors"):
        path.parent.mkdir(parents=True)
        save_file(audio, path)
    wav2vec().save_pretrained(root / "chinese-wav2vec2-base")
    return root


def clip_config(size: int) -> dict:
    return {**CLIP_CONFIG, "image_size": size}


def _resize_clip(path: Path, size: int) -> None:
    """The tiny CLIP with a position embedding for `size`-pixel inputs (seeded, at the old one's scale)."""
    state = torch.load(path, weights_only=True)
    old = state["visual.pos_embedding"]
    tokens = (size // CLIP_CONFIG["patch_size"]) ** 2 + 1
    noise = torch.randn(1, tokens, old.shape[-1], generator=torch.Generator().manual_seed(12))
    state["visual.pos_embedding"] = noise * old.std()
    torch.save(state, path)


def _with_unit_norms(model):
    with torch.no_grad():
        for module in model.modules():
            if "norm" in type(module).__name__.lower() and getattr(module, "weight", None) is not None:
                module.weight.add_(1.0)
    return model
