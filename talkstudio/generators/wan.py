"""The Wan2.1 DiT parts every talking-video backend here shares (AnyTalker, MultiTalk, InfiniteTalk).

Module and attribute names are those of the Wan checkpoints, so models built from these parts
load the official state dicts strictly. Attention runs through torch's scaled_dot_product_attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

VAE_STRIDE_T = 4


@dataclass
class WanConfig:
    """The Wan DiT's fields as its config.json files name them; each backend adds its audio settings.
    Defaults are Wan2.1-I2V-14B's."""

    dim: int = 5120
    ffn_dim: int = 13824
    num_heads: int = 40
    num_layers: int = 40
    in_dim: int = 36
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    # the audio projections' sizes, as the originals' constructors take them (their defaults): wav2vec
    # windows of `audio_window` frames x `audio_layers` x `audio_channels`, `context_tokens` tokens each
    audio_window: int = 5
    audio_layers: int = 12
    audio_channels: int = 768
    intermediate_dim: int = 512
    context_tokens: int = 32
    vae_scale: int = 4
    clip_dim: int = 1280  # CLIP ViT-H tokens' width
    norm_input_visual: bool = True
    norm_output_audio: bool = True

    @classmethod
    def from_json(cls, data: dict):
        """The known fields of a config.json (others, such as diffusers' _class_name, are not the network's)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "patch_size" in known:
            known["patch_size"] = tuple(known["patch_size"])
        return cls(**known)


# --- rotary position embedding (3D: frames, height, width) --------------------------------

def rope_frequencies(head_dim: int, positions: int = 1024, theta: float = 10000.0) -> torch.Tensor:
    """Complex rotations [positions, head_dim / 2]: the frame axis takes the remainder, h and w a third each."""
    parts = [head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6)]
    freqs = []
    for part in parts:
        # on the CPU even inside `with torch.device("meta")`, where models are built before loading
        inverse = 1.0 / torch.pow(theta, torch.arange(0, part, 2, dtype=torch.float32, device="cpu") / part)
        angles = torch.outer(torch.arange(positions, dtype=torch.float32, device="cpu"), inverse)
        freqs.append(torch.polar(torch.ones_like(angles), angles))
    return torch.cat(freqs, dim=1)


def apply_rope(x: torch.Tensor, grid: tuple[int, int, int], freqs: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, heads, head_dim] by each token's (frame, row, column) position."""
    frames, height, width = grid
    half = x.shape[-1] // 2
    f_part, h_part, w_part = freqs[:, : half - 2 * (half // 3)], freqs[:, half - 2 * (half // 3): half - half // 3], \
        freqs[:, half - half // 3:]
    rotation = torch.cat([
        f_part[:frames].view(frames, 1, 1, -1).expand(frames, height, width, -1),
        h_part[:height].view(1, height, 1, -1).expand(frames, height, width, -1),
        w_part[:width].view(1, 1, width, -1).expand(frames, height, width, -1),
    ], dim=-1).reshape(frames * height * width, 1, -1)
    tokens = frames * height * width
    pairs = torch.view_as_complex(x[:, :tokens].float().reshape(x.shape[0], tokens, x.shape[2], -1, 2))
    rotated = torch.view_as_real(pairs * rotation).flatten(3)
    return torch.cat([rotated, x[:, tokens:].float()], dim=1)


# --- norms and attention -------------------------------------------------------------------

class WanRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class WanLayerNorm(nn.LayerNorm):
    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = False):
        super().__init__(dim, elementwise_affine=elementwise_affine, eps=eps)

    def forward(self, x):
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


def attend(q, k, v, mask=None):
    """q [B, Lq, heads, d], k/v [B, Lk, heads, d] -> [B, Lq, heads * d]; mask [B, 1, Lq, Lk] bool (True = see)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


class WanSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def heads(self, x):
        return x.view(x.shape[0], -1, self.num_heads, self.head_dim)

    def forward(self, x, grid, freqs):
        return self.o(attend(*self.rotated_qk(x, grid, freqs), self.heads(self.v(x))))

    def rotated_qk(self, x, grid, freqs):
        """Queries and keys with their 3-D rotary positions (rotated in float32, back in x's dtype)."""
        q = apply_rope(self.heads(self.norm_q(self.q(x))), grid, freqs).type_as(x)
        k = apply_rope(self.heads(self.norm_k(self.k(x))), grid, freqs).type_as(x)
        return q, k


class WanI2VCrossAttention(WanSelfAttention):
    """Wan's image-to-video cross-attention: text (here the CLIP tokens followed by the text, as the
    legacy path passes it) plus the reference image's CLIP tokens."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__(dim, num_heads, qk_norm, eps)
        self.k_img, self.v_img = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_k_img = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x, text, image):
        q = self.heads(self.norm_q(self.q(x)))
        out = attend(q, self.heads(self.norm_k(self.k(text))), self.heads(self.v(text)))
        out = out + attend(q, self.heads(self.norm_k_img(self.k_img(image))), self.heads(self.v_img(image)))
        return self.o(out)


# --- head, projections ------------------------------------------------------------------------

class Head(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm = WanLayerNorm(config.dim, config.eps)
        self.head = nn.Linear(config.dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, config.dim) / config.dim ** 0.5)

    def forward(self, x, e):
        shift, scale = (self.modulation + e.unsqueeze(1)).chunk(2, dim=1)
        return self.head((self.norm(x).float() * (1 + scale) + shift).to(self.head.weight.dtype))


class MLPProj(nn.Module):
    """CLIP tokens (1280) into the model: LayerNorm, Linear, GELU, Linear, LayerNorm."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, in_dim), nn.GELU(),
                                  nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim))

    def forward(self, x):
        return self.proj(x)


class WindowAudioProj(nn.Module):
    """MultiTalk's AudioProjModel (AnyTalker's 14B path has the same): audio tokens per latent frame,
    latent frame 0 from its 5-frame window, each later one from an 8-window composite of its 4 video
    frames (`audio_windows`)."""

    def __init__(self, config):
        super().__init__()
        per_window = config.audio_layers * config.audio_channels
        self.context_tokens, self.output_dim = config.context_tokens, config.audio_output_dim
        self.proj1 = nn.Linear(config.audio_window * per_window, config.intermediate_dim)
        self.proj1_vf = nn.Linear((config.audio_window + config.vae_scale - 1) * per_window, config.intermediate_dim)
        self.proj2 = nn.Linear(config.intermediate_dim, config.intermediate_dim)
        self.proj3 = nn.Linear(config.intermediate_dim, config.context_tokens * config.audio_output_dim)
        self.norm = nn.LayerNorm(config.audio_output_dim) if config.norm_output_audio else nn.Identity()

    def forward(self, first, later):
        batch = first.shape[0]
        hidden = torch.cat([torch.relu(self.proj1(first.reshape(batch, first.shape[1], -1))),
                            torch.relu(self.proj1_vf(later.reshape(batch, later.shape[1], -1)))], dim=1)
        frames = hidden.shape[1]
        tokens = self.proj3(torch.relu(self.proj2(hidden.reshape(batch * frames, -1))))
        return self.norm(tokens.reshape(batch * frames, self.context_tokens, self.output_dim)).reshape(
            batch, frames, self.context_tokens, self.output_dim)


def audio_windows(audio: torch.Tensor, vae_scale: int = VAE_STRIDE_T, window: int = 5):
    """wav2vec windows [B, F, 5, 12, 768] -> (frame 0's [B, 1, 5, ...], later latent frames' [B, T-1, 8, ...]):
    for each later latent frame, the first video frame's window up to its centre, the centre of each
    middle frame, and the last frame's window from its centre (MultiTalk's composite)."""
    first, later = audio[:, :1], audio[:, 1:]
    later = later.reshape(later.shape[0], -1, vae_scale, *later.shape[2:])
    middle = window // 2
    composite = torch.cat([later[:, :, :1, :middle + 1].flatten(2, 3),
                           later[:, :, 1:-1, middle:middle + 1].flatten(2, 3),
                           later[:, :, -1:, middle:].flatten(2, 3)], dim=2)
    return first, composite


def sinusoidal_embedding(dim: int, positions: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Timestep embedding, its angles in `dtype`: Wan2.1 computes them in float64 (t reaches 1000 rad),
    AnyTalker in float32; each backend follows its original."""
    half = dim // 2
    angles = torch.outer(positions.to(dtype), torch.pow(10000, -torch.arange(half, dtype=dtype) / half))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()


def unpatchify(tokens, grid, patch_size, out_dim: int):
    """[B, tokens, prod(patch) * out_dim] -> latents [B, out_dim, T, H, W]."""
    pt, ph, pw = patch_size
    frames, height, width = grid
    out = tokens.view(tokens.shape[0], frames, height, width, pt, ph, pw, out_dim)
    out = torch.einsum("bfhwpqrc->bcfphqwr", out)
    return out.reshape(tokens.shape[0], out_dim, frames * pt, height * ph, width * pw)


class WanBackbone(nn.Module):
    """The Wan DiT: patch, text, timestep and CLIP-image embeddings, `num_layers` blocks made by `block`,
    and the head. Each backend adds its audio modules, under the checkpoint's names."""

    def __init__(self, config, block):
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(block(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self.img_emb = MLPProj(config.clip_dim, dim)
        self.freqs = rope_frequencies(dim // config.num_heads)  # not a buffer: not in the checkpoint

    timestep_dtype = torch.float64  # the timestep embedding's angles (Wan2.1's)

    @property
    def dtype(self):
        """What the blocks compute in (`cast_for_inference`)."""
        return self.patch_embedding.weight.dtype

    def embed_video(self, x, t):
        """Latents [B, in_dim, T, H, W] at times t [B] -> patch tokens, their (T, h, w) grid, and the
        timestep embedding with the blocks' six modulations, both in float32."""
        tokens = self.patch_embedding(x.to(self.dtype))
        grid = tuple(tokens.shape[2:])
        e = self.time_embedding(sinusoidal_embedding(self.config.freq_dim, t, self.timestep_dtype).to(x.device))
        e6 = self.time_projection(e).unflatten(1, (6, self.config.dim))
        return tokens.flatten(2).transpose(1, 2), grid, e, e6

    def embed_text(self, text):
        """Text [B, L, text_dim], padded to text_len as trained, into the model."""
        return self.text_embedding(F.pad(text.to(self.dtype), (0, 0, 0, self.config.text_len - text.shape[1])))

    def to_latents(self, tokens, e, grid):
        """The head, then back to the latent grid: the flow prediction [B, out_dim, T, H, W]."""
        return unpatchify(self.head(tokens, e), grid, self.config.patch_size, self.config.out_dim)


def cast_for_inference(model: nn.Module, dtype) -> nn.Module:
    """The model in `dtype` (bf16 on GPUs) except the timestep embedding, its projection and the head,
    which stay in float32: the originals run them under fp32 autocast, and the modulation they produce
    shifts and scales every block."""
    model.to(dtype=dtype)
    for part in (model.time_embedding, model.time_projection, model.head):
        part.float()
    return model

