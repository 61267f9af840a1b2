"""A tiny AnyTalker model folder in the layout users download, with every file in its official format.

    DIR/Wan2.1-Fun-V1.1-1.3B-InP/models_t5_umt5-xxl-enc-bf16.pth   original Wan T5 keys (parity fixture)
    DIR/Wan2.1-Fun-V1.1-1.3B-InP/google/umt5-xxl/                   a tokenizer folder (64 words)
    DIR/Wan2.1-Fun-V1.1-1.3B-InP/Wan2.1_VAE.pth                     original Wan VAE keys, 16 latent channels
    DIR/Wan2.1-Fun-V1.1-1.3B-InP/models_clip_...-vit-huge-14.pth     original open-clip `visual.` keys
    DIR/wav2vec2-base-960h/                                          transformers save_pretrained folder
                                                                     + preprocessor_config.json
    DIR/AnyTalker/1_3B-single-v1.pth + config_af2v_1_3B.json        the DiT under the checkpoint's key names

The networks are narrow, but their interfaces keep the real widths where the DiT fixes them (CLIP
tokens of 1280, wav2vec2 12 layers of 768). `tiny_configs` points the loaders' full-size
configurations at these sizes; everything else runs the real loading code.
"""

import json
from pathlib import Path

import torch

from tests_anytalker_inputs import CONFIG, seeded_model

FIXTURES = Path(__file__).parent / "fixtures"
FUN = "Wan2.1-Fun-V1.1-1.3B-InP"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
CLIP_CONFIG = dict(hidden_size=1280, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                   image_size=28, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5)
WORDS = ["<pad>", "</s>", "<unk>"] + "two people talk in a room the light is warm and calm".split()


def tiny_configs(monkeypatch) -> None:
    from talkstudio.generators.anytalker import image_encoder, text_encoder, vae

    t5 = torch.load(FIXTURES / "wan_t5_tiny.pt", weights_only=True)["config"]
    monkeypatch.setattr(text_encoder, "UMT5_XXL_CONFIG", dict(
        vocab_size=t5["vocab"], d_model=t5["dim"], d_kv=t5["dim_attn"] // t5["num_heads"], d_ff=t5["dim_ffn"],
        num_layers=t5["num_layers"], num_heads=t5["num_heads"], relative_attention_num_buckets=t5["num_buckets"],
        relative_attention_max_distance=128, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6))
    monkeypatch.setattr(image_encoder, "VIT_H_14_CONFIG", CLIP_CONFIG)
    original = torch.load(FIXTURES / "wan_vae_tiny_z16_state.pt", weights_only=True)["config"]
    monkeypatch.setattr(vae, "WAN21_VAE_CONFIG", dict(
        base_dim=original["dim"], z_dim=original["z_dim"], dim_mult=original["dim_mult"],
        num_res_blocks=original["num_res_blocks"], attn_scales=original["attn_scales"],
        temperal_downsample=original["temperal_downsample"], dropout=original["dropout"]))


def build_tiny_layout(root: Path, **dit_config) -> Path:
    """The folder under `root`; `dit_config` overrides entries of the DiT's config JSON (e.g. text_len)."""
    from transformers import Wav2Vec2FeatureExtractor

    write_wan_encoders(root / FUN)
    wav2vec().save_pretrained(root / "wav2vec2-base-960h")
    # wav2vec2-base-960h's preprocessor_config.json (the original builds its feature extractor from it)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(root / "wav2vec2-base-960h")
    (root / "AnyTalker").mkdir()
    (root / "AnyTalker" / "config_af2v_1_3B.json").write_text(json.dumps({**CONFIG, "model_type": "a2v_af",
                                                                          "in_dim": 36, **dit_config}))
    torch.save({"model": seeded_model().state_dict()}, root / "AnyTalker" / "1_3B-single-v1.pth")
    return root


def write_wan_encoders(folder: Path) -> None:
    """T5 + tokenizer, VAE and CLIP in a Wan model folder, each in its original format."""
    folder.mkdir(parents=True)
    torch.save(torch.load(FIXTURES / "wan_t5_tiny.pt", weights_only=True)["state"],
               folder / "models_t5_umt5-xxl-enc-bf16.pth")
    _tokenizer(folder / "google" / "umt5-xxl")
    torch.save(torch.load(FIXTURES / "wan_vae_tiny_z16_state.pt", weights_only=True)["state"],
               folder / "Wan2.1_VAE.pth")
    torch.save(_open_clip_state(), folder / CLIP_FILE)


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(folder))


def _open_clip_state() -> dict:
    """A seeded CLIP vision tower written back under the original open-clip names (plus a text-tower key,
    which the loader must skip)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(11)
    model = CLIPVisionModel(CLIPVisionConfig(**CLIP_CONFIG))
    tower = getattr(model, "vision_model", model)  # older transformers nest the tower
    hf = {k: v * 0.05 if v.dim() > 1 else v for k, v in tower.state_dict().items()}
    state = {
        "visual.patch_embedding.weight": hf["embeddings.patch_embedding.weight"],
        "visual.cls_embedding": hf["embeddings.class_embedding"].view(1, 1, -1),
        "visual.pos_embedding": hf["embeddings.position_embedding.weight"][None],
        "visual.pre_norm.weight": hf["pre_layrnorm.weight"], "visual.pre_norm.bias": hf["pre_layrnorm.bias"],
        "visual.post_norm.weight": hf["post_layernorm.weight"], "visual.post_norm.bias": hf["post_layernorm.bias"],
        "visual.head": torch.zeros(CLIP_CONFIG["hidden_size"], 8),
        "textual.token_embedding.weight": torch.zeros(4, 8),
    }
    parts = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.out_proj": "attn.proj",
             "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.2"}
    for layer in range(CLIP_CONFIG["num_hidden_layers"]):
        ours, theirs = f"encoder.layers.{layer}", f"visual.transformer.{layer}"
        for kind in ("weight", "bias"):
            state[f"{theirs}.attn.to_qkv.{kind}"] = torch.cat(
                [hf[f"{ours}.self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for hf_part, part in parts.items():
                state[f"{theirs}.{part}.{kind}"] = hf[f"{ours}.{hf_part}.{kind}"]
    return state


def wav2vec():
    """wav2vec2-base's output shape (12 layers of 768) with narrow insides."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=2, intermediate_size=16,
                            conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=16)
    torch.manual_seed(8)
    return Wav2Vec2Model(config).eval()
