"""The MultiTalk / InfiniteTalk DiT: Wan2.1-I2V-14B with per-frame audio cross-attention and L-RoPE.

Read top to bottom: where each video token looks in the reference frame (the affinity that
binds it to a person), the 1-D rotary embedding, the audio cross-attention, the block, the
model. The Wan parts (self-attention, image cross-attention, audio projection, the embeddings
and head of WanBackbone) are in
`talkstudio/generators/wan.py`. Module names equal the keys of the official checkpoints (the
Wan2.1-I2V-14B shards plus `multitalk.safetensors` or `infinitetalk.safetensors`), so they load
with `load_state_dict(strict=True)` and no renaming.

Shapes: x [B, 36, T, H, W] (16 noise + 4 mask + 16 known-frame latents), text [B, L<=512, 4096],
clip [B, 257, 1280], audio [B, persons, F, 5, 12, 768] (wav2vec, F = 4(T-1)+1 video frames),
masks [persons + 1, h, w] (each person's region, then the background, at any resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkstudio.generators.wan import (WanBackbone, WanConfig, WanI2VCrossAttention, WanLayerNorm, WanSelfAttention,
                                       WindowAudioProj, attend, audio_windows)

AFFINITY_CHUNK = 4096  # query tokens per step of the affinity map: bounds its memory at 480p


@dataclass
class MultiTalkConfig(WanConfig):
    """Wan2.1-I2V-14B's config.json fields plus MultiTalk's audio settings (names as in the original)."""

    output_dim: int = 768  # audio token width
    class_range: int = 24
    class_interval: int = 4

    @property
    def audio_output_dim(self) -> int:
        return self.output_dim


# --- which person each video token belongs to ----------------------------------------------

def reference_affinity(q, k, grid, masks):
    """[classes, tokens]: the attention each video token pays to each class's region of the first
    latent frame (the reference), averaged over heads; q, k [1, tokens, heads, head_dim] after RoPE.

    The original computes the same map for all queries at once (in two halves of the heads);
    chunking the queries keeps the [heads, tokens, reference] scores small at 480p.
    """
    per_frame = grid[1] * grid[2]
    heads = q.shape[2]
    reference = k[0, :per_frame].transpose(0, 1)  # [heads, R, d]
    weights = masks / masks.sum(dim=1, keepdim=True)  # each class's average over its region
    rows = []
    for start in range(0, q.shape[1], AFFINITY_CHUNK):
        queries = q[0, start:start + AFFINITY_CHUNK].transpose(0, 1) * q.shape[-1] ** -0.5  # [heads, c, d]
        scores = (queries @ reference.transpose(1, 2)).softmax(dim=-1)  # [heads, c, R]
        rows.append(torch.einsum("hcr,kr->kc", scores, weights.to(scores.dtype)) / heads)
    return torch.cat(rows, dim=1)


def person_positions(affinity, class_range: int, class_interval: int):
    """L-RoPE positions of video tokens: a token nearest person 1 lands in [0, interval], person 2 in
    [range - interval, range] (each scaled by its own affinity), the background at range / 2."""
    lows = affinity.min(dim=1).values
    highs = affinity.max(dim=1).values
    spans = ((0, class_interval), (class_range - class_interval, class_range))
    scaled = [(affinity[i] - lows[i]) / (highs[i] - lows[i] + 1e-8) * (hi - lo) + lo for i, (lo, hi) in enumerate(spans)]
    background = torch.full_like(scaled[0], class_range // 2)
    choices = torch.stack([*scaled, background], dim=1)  # [tokens, 3]
    return choices.gather(1, affinity.argmax(dim=0, keepdim=True).T).squeeze(1)


def rope_1d(x, positions, base: float = 10000.0):
    """Rotate x [..., tokens, head_dim] by one position per token (interleaved pairs), in float32."""
    head_dim = x.shape[-1]
    inverse = 1.0 / base ** (torch.arange(0, head_dim, 2, device=x.device).float() / head_dim)
    angles = (positions.float()[:, None] * inverse).repeat_interleave(2, dim=-1)
    pairs = x.float().unflatten(-1, (-1, 2))
    rotated_half = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (x.float() * angles.cos() + rotated_half * angles.sin()).type_as(x)


# --- audio cross-attention -----------------------------------------------------------------

class SingleStreamMutiAttention(nn.Module):
    """Each latent frame's video tokens attend to that frame's audio tokens (32 per person). With two
    people, queries and keys are rotated by L-RoPE: a token on person i sits near person i's audio."""

    def __init__(self, dim: int, audio_dim: int, num_heads: int, class_range: int = 24, class_interval: int = 4):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.class_range, self.class_interval = class_range, class_interval

    def forward(self, x, audio, grid, affinity, persons: int):
        """x [B, T*S, dim]; audio [B, T, persons * 32, audio_dim]; affinity per sample [classes, T*S]."""
        batch, tokens, dim = x.shape
        frames = grid[0]
        q = self.q_linear(x).view(batch, tokens, self.num_heads, self.head_dim)
        k, v = self.kv_linear(audio).view(batch, frames, audio.shape[2], 2, self.num_heads, self.head_dim).unbind(3)
        if persons == 2:
            q, k = self._bind(q, k, affinity)
        per_frame = tokens // frames
        q = q.reshape(batch * frames, per_frame, self.num_heads, self.head_dim)
        out = attend(q, k.flatten(0, 1), v.flatten(0, 1))
        return self.proj(out.reshape(batch, tokens, dim))

    def _bind(self, q, k, affinity):
        interval, spread = self.class_interval, self.class_range
        rotated_q = torch.stack([
            rope_1d(q[b].transpose(0, 1), person_positions(affinity[b], spread, interval)).transpose(0, 1)
            for b in range(q.shape[0])])
        half = k.shape[2] // 2  # person 1's tokens, then person 2's: at the centres of their ranges
        keys = torch.full((k.shape[2],), (spread - interval + spread) / 2, device=k.device)
        keys[:half] = interval / 2
        rotated_k = rope_1d(k.permute(0, 1, 3, 2, 4), keys).permute(0, 1, 3, 2, 4)
        return rotated_q, rotated_k


# --- block and model -----------------------------------------------------------------------

class MultiTalkSelfAttention(WanSelfAttention):
    """Wan self-attention that also reports each token's affinity to the people in the reference frame."""

    def forward(self, x, grid, freqs, masks=None):
        q, k = self.rotated_qk(x, grid, freqs)
        out = self.o(attend(q, k, self.heads(self.v(x))))
        if masks is None:
            return out, None
        with torch.no_grad():
            return out, [reference_affinity(q[b:b + 1], k[b:b + 1], grid, masks) for b in range(x.shape[0])]


class WanAttentionBlock(nn.Module):
    def __init__(self, config: MultiTalkConfig):
        super().__init__()
        dim = config.dim
        self.norm1 = WanLayerNorm(dim, config.eps)
        self.self_attn = MultiTalkSelfAttention(dim, config.num_heads, config.qk_norm, config.eps)
        self.norm3 = WanLayerNorm(dim, config.eps, elementwise_affine=True) if config.cross_attn_norm else nn.Identity()
        self.cross_attn = WanI2VCrossAttention(dim, config.num_heads, config.qk_norm, config.eps)
        self.norm2 = WanLayerNorm(dim, config.eps)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)
        self.audio_cross_attn = SingleStreamMutiAttention(dim, config.output_dim, config.num_heads,
                                                          config.class_range, config.class_interval)
        self.norm_x = WanLayerNorm(dim, config.eps, elementwise_affine=True) if config.norm_input_visual else nn.Identity()

    def forward(self, x, e, grid, freqs, text, image, audio, masks, persons: int):
        shift, scale, gate, shift_ffn, scale_ffn, gate_ffn = (self.modulation + e).chunk(6, dim=1)
        y, affinity = self.self_attn((self.norm1(x).float() * (1 + scale) + shift).type_as(x), grid, freqs,
                                     masks if persons == 2 else None)
        x = (x + y * gate).type_as(x)
        x = x + self.cross_attn(self.norm3(x), text, image)
        x = x + self.audio_cross_attn(self.norm_x(x), audio, grid, affinity, persons)
        y = self.ffn((self.norm2(x).float() * (1 + scale_ffn) + shift_ffn).type_as(x))
        return (x + y * gate_ffn).type_as(x)


class MultiTalkTransformer(WanBackbone):
    def __init__(self, config: MultiTalkConfig):
        super().__init__(config, WanAttentionBlock)
        self.audio_proj = WindowAudioProj(config)

    def forward(self, x, t, text, clip, audio, masks=None):
        """The flow prediction [B, out_dim, T, H, W]; `audio` holds 1 or 2 people, `masks` their regions."""
        config = self.config
        # 1. patches, the grid they lie on, the time modulation
        tokens, grid, e, e6 = self.embed_video(x, t)
        # 2. conditions: text, CLIP image, 32 audio tokens per person and latent frame
        text, image = self.embed_text(text), self.img_emb(clip.to(self.dtype))
        batch, persons = audio.shape[:2]
        windows = audio_windows(audio.to(self.dtype).flatten(0, 1), config.vae_scale, config.audio_window)
        audio_tokens = self.audio_proj(*windows).unflatten(0, (batch, persons))  # [B, persons, T, 32, C]
        audio_tokens = audio_tokens.permute(0, 2, 1, 3, 4).flatten(2, 3)
        token_masks = self._token_masks(masks, grid) if persons == 2 else None
        # 3. blocks, head, back to latents
        freqs = self.freqs.to(x.device)
        for block in self.blocks:
            tokens = block(tokens, e6, grid, freqs, text, image, audio_tokens, token_masks, persons)
        return self.to_latents(tokens, e, grid)

    @staticmethod
    def _token_masks(masks, grid):
        """[classes, h * w] on the token grid: nearest-neighbour, as the original resizes them."""
        if masks is None:
            raise ValueError("two people need their region masks")
        on_grid = F.interpolate(masks[None].float(), size=grid[1:], mode="nearest")[0] > 0
        return on_grid.flatten(1).float()
