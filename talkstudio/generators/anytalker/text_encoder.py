"""The Wan2.1 text encoder for AnyTalker: the original `models_t5_umt5-xxl-enc-bf16.pth` loaded into
transformers' UMT5EncoderModel.

The checkpoint is the encoder half of umt5-xxl saved from Wan-Video's own T5
code (wan/modules/t5.py), whose module names differ from transformers'.
Renaming the keys ourselves lets us run transformers' maintained UMT5 on the
file users already downloaded, instead of vendoring the original model code or
asking for a second ~11 GB copy in the Hugging Face layout. The two compute the
same thing: gated tanh-GELU feed-forward, unscaled attention, and a relative
position bias in every block (umt5's shared_pos=False).

Prompts go through the original's tokenizer call and text cleaning, and the
embeddings come back trimmed to each prompt's real token count, as the original
T5EncoderModel returns them; padding them for the DiT is the caller's job.
"""

from __future__ import annotations

import html
import re
import warnings
from pathlib import Path

TEXT_LEN = 512  # the original's text_len: prompts are padded / truncated to it before encoding

# umt5_xxl(encoder_only=True) of the original: vocab 256384, dim 4096, dim_attn 4096 (64 heads of 64),
# dim_ffn 10240, 24 layers, 32 buckets with T5RelativeEmbedding's max_dist 128
UMT5_XXL_CONFIG = dict(
    vocab_size=256384,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",  # transformers maps this to gelu_new, the original's tanh GELU
    layer_norm_epsilon=1e-6,
    dropout_rate=0.1,  # as the original; inactive in eval mode
)

# within one original block (T5SelfAttention): norm1 -> attn, norm2 -> ffn, where ffn = fc2(fc1(x) * gelu(gate(x)))
_BLOCK_PARTS = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the activated half
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # the linear half
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
# the token embedding is one tensor under both of UMT5EncoderModel's tied names
_FIXED = {
    "token_embedding.weight": ("shared.weight", "encoder.embed_tokens.weight"),
    "norm.weight": ("encoder.final_layer_norm.weight",),
}
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def convert_wan_t5_state_dict(state: dict) -> dict:
    """Original Wan T5 encoder keys -> UMT5EncoderModel keys; the tensors are passed through untouched."""
    converted = {}
    for key, value in state.items():
        for new_key in _convert_key(key):
            converted[new_key] = value
    return converted


def _convert_key(key: str) -> tuple[str, ...]:
    if key in _FIXED:
        return _FIXED[key]
    match = _BLOCK.fullmatch(key)
    if match and match.group(2) in _BLOCK_PARTS:
        return (f"encoder.block.{match.group(1)}.{_BLOCK_PARTS[match.group(2)]}",)
    raise ValueError(f"unknown key in the Wan T5 encoder checkpoint: {key!r}")


def clean_prompt(text: str) -> str:
    """The original tokenizer wrapper's clean='whitespace': ftfy, HTML unescaping (twice), collapsed whitespace."""
    import regex  # the original's regex module (a transformers dependency): its \s is Unicode White_Space

    text = html.unescape(html.unescape(_fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip()


def _fix_text(text: str) -> str:
    try:
        import ftfy
    except ImportError:
        warnings.warn("ftfy is not installed: prompts are encoded without its text fixes (curly quotes, "
                      "full-width punctuation, mojibake), unlike the original", stacklevel=3)
        return text
    return ftfy.fix_text(text)


class TextEncoder:
    """UMT5 encoder + tokenizer, called as the original T5EncoderModel: prompts -> per-prompt [tokens, dim]."""

    def __init__(self, model, tokenizer, text_len: int = TEXT_LEN):
        self.model, self.tokenizer, self.text_len = model, tokenizer, text_len

    def tokenize(self, prompts: list[str]):
        """input ids and attention mask, both [B, text_len], as the original HuggingfaceTokenizer makes them."""
        tokens = self.tokenizer([clean_prompt(p) for p in prompts], return_tensors="pt", padding="max_length",
                                truncation=True, max_length=self.text_len, add_special_tokens=True)
        return tokens.input_ids, tokens.attention_mask

    def encode_ids(self, ids, mask) -> list:
        """Each row's embeddings up to its real length (mask count), as the original returns them."""
        import torch

        device = self.model.device
        with torch.no_grad():
            hidden = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        lengths = mask.gt(0).sum(dim=1).tolist()
        return [row[:length] for row, length in zip(hidden, lengths)]

    def encode(self, prompts: list[str]) -> list:
        return self.encode_ids(*self.tokenize(prompts))

    __call__ = encode

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self


def load_umt5_encoder(path: Path | str, device: str = "cpu", dtype=None, config: dict | None = None):
    """UMT5EncoderModel (umt5-xxl unless `config` says otherwise) from an original Wan T5 checkpoint, in eval mode."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    # mmap: the ~11 GB file is paged in as tensors are used, not read whole first
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    # cast before converting, so the two tied embedding names keep sharing one tensor
    state = convert_wan_t5_state_dict({key: value.to(device=device, dtype=dtype) for key, value in state.items()})
    # eager attention adds the position bias and mask as the original does (bit-equal in bf16; sdpa is not)
    config = UMT5Config(**(config or UMT5_XXL_CONFIG), attn_implementation="eager")
    # built on the meta device and filled by assignment: no throwaway random init of ~5.7B parameters
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()  # one embedding Parameter again, so a later .to() does not copy it twice
    return model.eval().requires_grad_(False)  # inference only, as the original wrapper


def load_text_encoder(path: Path | str, tokenizer_folder: Path | str, device: str = "cpu", dtype=None) -> TextEncoder:
    """The original T5EncoderModel's behaviour from `models_t5_umt5-xxl-enc-bf16.pth` and its `google/umt5-xxl`
    tokenizer folder; `dtype=None` keeps the checkpoint's bf16, as the original runs it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder), local_files_only=True)
    return TextEncoder(load_umt5_encoder(path, device, dtype), tokenizer)
