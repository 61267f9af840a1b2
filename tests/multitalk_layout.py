"""A tiny MultiTalk / InfiniteTalk model folder in the layout users download, every file in its official format:

    DIR/Wan2.1-I2V-14B-480P/   config.json (Wan's), diffusion_pytorch_model-0000N-of-00002.safetensors,
                               the Wan T5, tokenizer, VAE and CLIP files (tests/anytalker_layout.py)
    DIR/chinese-wav2vec2-base/ a transformers save_pretrained folder
    DIR/MeiGen-MultiTalk/multitalk.safetensors  and  DIR/InfiniteTalk/multi/infinitetalk.safetensors:
                               the audio modules (audio_proj, audio_cross_attn, norm_x), as the originals ship them
"""

import json
from pathlib import Path

from safetensors.torch import save_file

from anytalker_layout import wav2vec, write_wan_encoders
from tests_multitalk_inputs import CONFIG, seeded_model

WAN = "Wan2.1-I2V-14B-480P"
AUDIO_PARTS = ("audio_proj.", ".audio_cross_attn.", ".norm_x.")


def build_tiny_multitalk(root: Path) -> Path:
    wan = root / WAN
    write_wan_encoders(wan)
    (wan / "config.json").write_text(json.dumps({"_class_name": "WanModel", "_diffusers_version": "0.30.0",
                                                  "model_type": "i2v", "in_dim": 36, "out_dim": 16, "eps": 1e-06,
                                                  **CONFIG}))
    state = {k: v.contiguous() for k, v in seeded_model().state_dict().items()}
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
