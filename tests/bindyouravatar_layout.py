"""A tiny Bind-Your-Avatar model folder in the layout users download, every file in its released format:

    DIR/wav2vec2-base-960h/                 transformers folder (12 layers of 768, narrow insides)
    DIR/Bindyouravatar/transformer/         config.json + diffusion_pytorch_model.safetensors (32-style core:
                                            no inpainting channels yet, widened with zeros on loading)
    DIR/Bindyouravatar/vae/, text_encoder/  diffusers AutoencoderKLCogVideoX, transformers T5EncoderModel
    DIR/Bindyouravatar/tokenizer/, scheduler/
    DIR/Bindyouravatar/audio_module/audio_modules.pt, face_module/face_modules.pt, router/router_modules.pt,
    DIR/Bindyouravatar/lora_weight/pytorch_lora_weights.safetensors (rank 4 on every attn1.to_q / to_k)
    DIR/Bindyouravatar/face_encoder/        EVA02-CLIP checkpoint, antelopev2's glintr100.onnx, face parser

Widths the interfaces fix keep their real values (wav2vec rows of 12 x 768, identity embeddings of 1280,
EVA-CLIP levels of 1024); `tiny_additions` are the module sizes to load it with.
"""

import json
from pathlib import Path

import torch

from bindyouravatar_tiny import TINY_ROUTER, fill

FOLDER = "Bindyouravatar"
CORE = {"_class_name": "CogVideoXTransformer3DModel", "num_attention_heads": 2, "attention_head_dim": 16,
        "in_channels": 4, "out_channels": 2, "time_embed_dim": 8, "text_embed_dim": 12, "num_layers": 2,
        "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": False,
        "is_train_face": True, "cross_attn_interval": 2, "is_train_audio": True}
VAE = {"in_channels": 3, "out_channels": 3, "block_out_channels": (8, 8, 8, 8), "latent_channels": 2,
       "layers_per_block": 1, "norm_num_groups": 2, "temporal_compression_ratio": 4, "scaling_factor": 0.7,
       "down_block_types": ("CogVideoXDownBlock3D",) * 4, "up_block_types": ("CogVideoXUpBlock3D",) * 4}
SCHEDULER = {"_class_name": "CogVideoXDPMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
             "rescale_betas_zero_snr": True, "set_alpha_to_one": True, "snr_shift_scale": 1.0, "steps_offset": 0,
             "timestep_spacing": "trailing"}
EVA = {"image_size": 42, "patch_size": 14, "width": 24, "layers": 21, "head_width": 8, "embed_dim": 8}
ARCFACE_FEATURES = 16
FACE = {"dim": 16, "depth": 5, "dim_head": 4, "heads": 2, "num_id_token": 3, "num_queries": 12, "output_dim": 21,
        "vit_dim": EVA["width"], "id_dim": ARCFACE_FEATURES + EVA["embed_dim"]}
AUDIO = {"audio_dim": 8, "num_attention_heads": 2, "attention_head_dim": 4,
         "projection": {"seq_len": 5, "blocks": 12, "channels": 768, "intermediate_dim": 16, "output_dim": 8,
                        "context_tokens": 4}}


def tiny_additions():
    from talkstudio.generators.bindyouravatar.transformer import Additions

    return Additions(face=FACE, face_attention={"dim_head": 2, "heads": 2}, router=TINY_ROUTER, audio=AUDIO)


def tiny_configs(monkeypatch) -> None:
    """Point the loaders' full-size configurations at these sizes."""
    from talkstudio.generators.bindyouravatar import eva_clip, transformer

    monkeypatch.setattr(eva_clip, "EVA02_CLIP_L_336", eva_clip.EvaVisionConfig(**EVA))
    monkeypatch.setattr(transformer, "RELEASED", tiny_additions())


def build_tiny_bindyouravatar(top: Path) -> Path:
    """The folder under `top`."""
    from anytalker_layout import _tokenizer, wav2vec

    root = top / FOLDER
    write_transformer_parts(root)
    _write_vae_and_text(root)
    _tokenizer(root / "tokenizer")
    (root / "scheduler").mkdir(parents=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    _write_identity(root / "face_encoder")
    wav2vec().save_pretrained(top / "wav2vec2-base-960h")
    return top


def write_transformer_parts(root: Path, rank: int = 4):
    """The core, the three module files and the LoRA; returns the model they were cut from (its full input
    channels) and the LoRA's tensors."""
    from safetensors.torch import save_file

    from talkstudio.generators.bindyouravatar.transformer import make_transformer

    model = fill(make_transformer({**CORE, "in_channels": 3 * CORE["out_channels"]}, tiny_additions()), seed=11,
                 scale=0.05)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"][:, :CORE["in_channels"]].contiguous()
    (root / "transformer").mkdir(parents=True)
    (root / "transformer" / "config.json").write_text(json.dumps(CORE))
    parts = ("local_facial_extractor.", "perceiver_cross_attention.", "router.", "audio_model.")
    save_file({k: v for k, v in state.items() if not k.startswith(parts)},
              root / "transformer" / "diffusion_pytorch_model.safetensors")
    for folder, name, prefix in (("audio_module", "audio_modules.pt", "audio_model."),
                                 ("router", "router_modules.pt", "router.")):
        (root / folder).mkdir()
        torch.save({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, root / folder / name)
    (root / "face_module").mkdir()
    torch.save({"local_facial_extractor": model.local_facial_extractor.state_dict(),
                "perceiver_cross_attention": [m.state_dict() for m in model.perceiver_cross_attention]},
               root / "face_module" / "face_modules.pt")
    generator = torch.Generator().manual_seed(5)
    inner = CORE["num_attention_heads"] * CORE["attention_head_dim"]
    lora = {}
    for block in range(CORE["num_layers"]):
        for target in ("to_q", "to_k"):
            stem = f"transformer.transformer_blocks.{block}.attn1.{target}"
            lora[f"{stem}.lora_A.weight"] = torch.randn(rank, inner, generator=generator) * 0.05
            lora[f"{stem}.lora_B.weight"] = torch.randn(inner, rank, generator=generator) * 0.05
    (root / "lora_weight").mkdir()
    save_file(lora, root / "lora_weight" / "pytorch_lora_weights.safetensors")
    return model, lora


def _write_vae_and_text(root: Path) -> None:
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    from anytalker_layout import WORDS

    torch.manual_seed(12)
    AutoencoderKLCogVideoX(**VAE).save_pretrained(root / "vae")
    config = T5Config(vocab_size=len(WORDS), d_model=CORE["text_embed_dim"], d_kv=4, d_ff=16, num_layers=1,
                      num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
    T5EncoderModel(config).save_pretrained(root / "text_encoder")


def _write_identity(folder: Path) -> None:
    """The EVA-CLIP checkpoint (its image tower under `visual.`, plus a text-tower tensor that is skipped) and
    antelopev2's recogniser; no face parser (a download may lack it: the mediapipe mask stands in)."""
    from bindyouravatar_identity_layout import tiny_recogniser
    from talkstudio.generators.bindyouravatar import eva_clip

    tower = eva_clip.EvaVisionTower(eva_clip.EvaVisionConfig(**EVA))
    torch.manual_seed(13)
    state = {f"visual.{k}": v * 0.5 if v.dim() > 1 else v for k, v in tower.state_dict().items()}
    state["text.token_embedding.weight"] = torch.zeros(4, 8)
    folder.mkdir(parents=True)
    torch.save(state, folder / "EVA02_CLIP_L_336_psz14_s6B.pt")
    recogniser = folder / "models" / "antelopev2" / "glintr100.onnx"
    recogniser.parent.mkdir(parents=True)
    recogniser.write_bytes(tiny_recogniser(features=ARCFACE_FEATURES))
