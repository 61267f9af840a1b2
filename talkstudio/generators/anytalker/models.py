"""The AnyTalker model folders, exactly as users download them, and loading the DiT from them.

    DIR/Wan2.1-Fun-V1.1-1.3B-InP/   (or Wan2.1-Fun-1.3B-Inp, as AnyTalker's README names it)
        models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/, Wan2.1_VAE.pth,
        models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth
    DIR/wav2vec2-base-960h/          config.json + weights
    DIR/AnyTalker/                   1_3B-single-v1.pth + config_af2v_1_3B.json
                                     (14B-multi-v1.pth + config_af2v_14B.json)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from talkstudio.errors import InputError, Problem
from talkstudio.generators.folders import check_complete

FUN_FOLDERS = ("Wan2.1-Fun-V1.1-1.3B-InP", "Wan2.1-Fun-1.3B-Inp")
VARIANTS = {"1.3B": ("1_3B-single-v1.pth", "config_af2v_1_3B.json"), "14B": ("14B-multi-v1.pth", "config_af2v_14B.json")}
DOWNLOADS = {
    "fun": "hf download alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP --local-dir DIR/Wan2.1-Fun-V1.1-1.3B-InP",
    "wav2vec": "hf download facebook/wav2vec2-base-960h --local-dir DIR/wav2vec2-base-960h",
    "anytalker": "hf download zzz66/AnyTalker-1.3B --local-dir DIR/AnyTalker",
}


@dataclass(frozen=True)
class AnyTalkerFiles:
    t5: Path
    t5_tokenizer: Path
    vae: Path
    clip: Path
    wav2vec: Path
    dit: Path
    dit_config: Path


def locate(root: Path, variant: str = "1.3B") -> AnyTalkerFiles:
    """Every file the backend needs under `root`; one InputError listing all that is missing and how to get it."""
    root = Path(root)
    fun = next((root / name for name in FUN_FOLDERS if (root / name).is_dir()), root / FUN_FOLDERS[0])
    dit, config = VARIANTS[variant]
    wanted = {
        "t5": (fun / "models_t5_umt5-xxl-enc-bf16.pth", "fun"),
        "t5_tokenizer": (fun / "google" / "umt5-xxl", "fun"),
        "vae": (fun / "Wan2.1_VAE.pth", "fun"),
        "clip": (fun / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "fun"),
        "wav2vec": (root / "wav2vec2-base-960h", "wav2vec"),
        "dit": (root / "AnyTalker" / dit, "anytalker"),
        "dit_config": (root / "AnyTalker" / config, "anytalker"),
    }
    missing = [(path, source) for path, source in wanted.values() if not path.exists()]
    if (root / "wav2vec2-base-960h").is_dir() and not (root / "wav2vec2-base-960h" / "config.json").exists():
        missing.append((root / "wav2vec2-base-960h" / "config.json", "wav2vec"))
    check_complete("AnyTalker", root, missing, DOWNLOADS)
    return AnyTalkerFiles(**{name: path for name, (path, _) in wanted.items()})


def load_transformer(files: AnyTalkerFiles, device: str = "cpu", dtype=None):
    """The DiT with the official checkpoint loaded strictly, under its own key names."""
    import torch

    from talkstudio.generators.anytalker.transformer import AnyTalkerConfig, AnyTalkerTransformer
    from talkstudio.generators.wan import cast_for_inference

    settings = json.loads(files.dit_config.read_text())
    if settings.get("model_type", "a2v_af") != "a2v_af":
        raise InputError(Problem(f"model_type {settings['model_type']!r} is not AnyTalker's a2v_af",
                                 file=files.dit_config, hint="use config_af2v_1_3B.json from the AnyTalker folder"))
    config = AnyTalkerConfig.from_json(settings)
    with torch.device("meta"):
        model = AnyTalkerTransformer(config)
    state = torch.load(files.dit, map_location="cpu", weights_only=True, mmap=True)
    state = state.get("model", state)
    model.load_state_dict(state, strict=True, assign=True)
    return cast_for_inference(model.to(device=device), dtype or torch.float32).eval()


def model_size(width: int, height: int, max_area: int = 832 * 480) -> tuple[int, int]:
    """The size AnyTalker renders a picture of this shape at: the original's area rule.

    Sides follow sqrt(area * aspect) in steps of 16, then snap to multiples of 32 (whichever
    of width-first or height-first moves less), so 832x480 becomes 832x448. talkstudio
    renders at this size and scales the frames to the video size, cropping the few extra
    pixels (no distortion), because the model was trained on these sizes.
    """
    import math

    aspect = height / width
    h = round(math.sqrt(max_area * aspect) // 8 // 2 * 2) * 8
    w = round(math.sqrt(max_area / aspect) // 8 // 2 * 2) * 8
    ratio = h / w
    w1 = max(w // 32 * 32, 32)
    h1 = max(int(w1 * ratio) // 32 * 32, 32)
    h2 = max(h // 32 * 32, 32)
    w2 = max(int(h2 / ratio) // 32 * 32, 32)
    if abs(w1 - w) + abs(h1 - h) <= abs(w2 - w) + abs(h2 - h):
        return w1, h1
    return w2, h2
