"""The MultiTalk / InfiniteTalk model folders, exactly as users download them, and loading the DiT from them.

    DIR/Wan2.1-I2V-14B-480P/      config.json, diffusion_pytorch_model-0000N-of-00007.safetensors,
                                  models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/, Wan2.1_VAE.pth,
                                  models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth
    DIR/chinese-wav2vec2-base/    config.json + weights (+ preprocessor_config.json)
    DIR/MeiGen-MultiTalk/         multitalk.safetensors                       (backend multitalk)
    DIR/InfiniteTalk/multi/ or single/   infinitetalk.safetensors             (backend infinitetalk)

The original MultiTalk asks users to swap the Wan folder's shard index for its own and link its
audio weights into that folder; talkstudio reads the Wan shards and the audio weights where they
were downloaded, so nothing needs moving (a folder already rearranged that way works too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from talkstudio.errors import InputError, Problem
from talkstudio.generators.folders import check_complete

WAN_FOLDERS = ("Wan2.1-I2V-14B-480P", "Wan2.1-I2V-14B-720P")
# per backend: where its audio weights may be, and how many people they drive
AUDIO_WEIGHTS = {
    "multitalk": ((Path("MeiGen-MultiTalk") / "multitalk.safetensors", 2),),
    "infinitetalk": ((Path("InfiniteTalk") / "multi" / "infinitetalk.safetensors", 2),
                     (Path("InfiniteTalk") / "single" / "infinitetalk.safetensors", 1)),
}
DOWNLOADS = {
    "wan": "hf download Wan-AI/Wan2.1-I2V-14B-480P --local-dir DIR/Wan2.1-I2V-14B-480P",
    "wav2vec": ("hf download TencentGameMate/chinese-wav2vec2-base --local-dir DIR/chinese-wav2vec2-base && "
                "hf download TencentGameMate/chinese-wav2vec2-base model.safetensors --revision refs/pr/1 "
                "--local-dir DIR/chinese-wav2vec2-base"),
    "multitalk": "hf download MeiGen-AI/MeiGen-MultiTalk --local-dir DIR/MeiGen-MultiTalk",
    "infinitetalk": "hf download MeiGen-AI/InfiniteTalk --local-dir DIR/InfiniteTalk",
}
# kept in float32 when the rest is bf16 (see talkstudio.generators.wan.cast_for_inference)
FLOAT32_PREFIXES = ("time_embedding.", "time_projection.", "head.")


@dataclass(frozen=True)
class MultiTalkFiles:
    t5: Path
    t5_tokenizer: Path
    vae: Path
    clip: Path
    wav2vec: Path
    dit_config: Path
    dit_shards: tuple[Path, ...]
    audio_weights: Path
    people: int  # how many people the audio weights drive at once


def locate(root: Path, backend: str = "multitalk") -> MultiTalkFiles:
    """Every file the backend needs under `root`; one InputError listing all that is missing and how to get it."""
    root = Path(root)
    wan = next((root / name for name in WAN_FOLDERS if (root / name).is_dir()), root / WAN_FOLDERS[0])
    audio, people = next(((root / path, n) for path, n in AUDIO_WEIGHTS[backend] if (root / path).exists()),
                         (root / AUDIO_WEIGHTS[backend][0][0], AUDIO_WEIGHTS[backend][0][1]))
    wanted = {
        "t5": (wan / "models_t5_umt5-xxl-enc-bf16.pth", "wan"),
        "t5_tokenizer": (wan / "google" / "umt5-xxl", "wan"),
        "vae": (wan / "Wan2.1_VAE.pth", "wan"),
        "clip": (wan / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "wan"),
        "wav2vec": (root / "chinese-wav2vec2-base" / "config.json", "wav2vec"),
        "dit_config": (wan / "config.json", "wan"),
        "audio_weights": (audio, backend),
    }
    missing = [(path, source) for path, source in wanted.values() if not path.exists()]
    shards = tuple(sorted(wan.glob("diffusion_pytorch_model*.safetensors")))
    if not shards:
        missing.append((wan / "diffusion_pytorch_model-00001-of-00007.safetensors", "wan"))
    check_complete(backend, root, missing, DOWNLOADS)
    files = {name: path for name, (path, _) in wanted.items()}
    files["wav2vec"] = files["wav2vec"].parent
    return MultiTalkFiles(**files, dit_shards=shards, people=people)


def load_transformer(files: MultiTalkFiles, device: str = "cpu", dtype=None):
    """The DiT from the Wan shards plus the audio weights, loaded strictly under their own key names."""
    import torch
    from safetensors import safe_open

    from talkstudio.generators.multitalk.transformer import MultiTalkConfig, MultiTalkTransformer
    from talkstudio.generators.wan import cast_for_inference

    settings = json.loads(files.dit_config.read_text())
    if settings.get("model_type", "i2v") != "i2v":
        raise InputError(Problem(f"model_type {settings['model_type']!r} is not Wan's image-to-video 'i2v'",
                                 file=files.dit_config, hint="use the Wan2.1-I2V-14B-480P folder"))
    config = MultiTalkConfig.from_json(settings)
    dtype = dtype or torch.float32
    with torch.device("meta"):
        model = MultiTalkTransformer(config)
    state = {}
    for path in (*files.dit_shards, files.audio_weights):
        # tensor by tensor, each straight to its device and dtype: the 14B model never sits in float32
        with safe_open(str(path), framework="pt", device="cpu") as weights:
            for key in weights.keys():
                kind = torch.float32 if key.startswith(FLOAT32_PREFIXES) else dtype
                state[key] = weights.get_tensor(key).to(device=device, dtype=kind)
    model.load_state_dict(state, strict=True, assign=True)
    return cast_for_inference(model, dtype).eval()


# the original's resolution buckets (wan/utils/multitalk_utils.py ASPECT_RATIO_627 / _960): height/width -> [h, w]
BUCKETS = {
    480: {0.26: (320, 1216), 0.38: (384, 1024), 0.50: (448, 896), 0.67: (512, 768), 0.82: (576, 704),
          1.00: (640, 640), 1.22: (704, 576), 1.50: (768, 512), 1.86: (832, 448), 2.00: (896, 448),
          2.50: (960, 384), 2.83: (1088, 384), 3.60: (1152, 320), 3.80: (1216, 320), 4.00: (1280, 320)},
    720: {0.22: (448, 2048), 0.29: (512, 1792), 0.36: (576, 1600), 0.45: (640, 1408), 0.55: (704, 1280),
          0.63: (768, 1216), 0.76: (832, 1088), 0.88: (896, 1024), 1.00: (960, 960), 1.14: (1024, 896),
          1.31: (1088, 832), 1.50: (1152, 768), 1.58: (1216, 768), 1.82: (1280, 704), 1.91: (1344, 704),
          2.20: (1408, 640), 2.30: (1472, 640), 2.67: (1536, 576), 2.89: (1664, 576), 3.62: (1856, 512),
          3.75: (1920, 512)},
}


def model_size(width: int, height: int, resolution: int = 480) -> tuple[int, int]:
    """(width, height) MultiTalk renders a picture of this shape at: the bucket nearest its aspect ratio.

    480 and 720 are the original's tables; any other resolution (drafts, tests) scales the 480p
    buckets to it, in steps of 16, though the weights were trained at 480p and 720p only.
    """
    table = BUCKETS.get(resolution, BUCKETS[480])
    ratio = height / width
    nearest = min(table, key=lambda r: abs(r - ratio))
    bucket_h, bucket_w = table[nearest]
    if resolution not in BUCKETS:
        factor = resolution / 480
        bucket_h, bucket_w = (max(16, round(side * factor / 16) * 16) for side in (bucket_h, bucket_w))
    return bucket_w, bucket_h
