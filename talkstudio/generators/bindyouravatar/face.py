"""Bind-Your-Avatar's face modules (ConsisID's design): identity tokens of each face, and the per-layer
cross-attention through which every video token reads them.

    LocalFacialExtractor      InsightFace embedding + EVA-CLIP face embedding (1280) and five of EVA02-CLIP's
                              hidden states (1024 wide) -> `num_queries` identity tokens of `output_dim`
    PerceiverCrossAttention   video tokens (queries) x one identity's tokens (keys, values); also hands back the
                              raw attention logits, queries and keys, which the embedding router reads

Parameter names are those of `face_modules.pt` (a dict: `local_facial_extractor` and a list
`perceiver_cross_attention`, one state dict per face layer).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    inner = int(dim * mult)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(),
                         nn.Linear(inner, dim, bias=False))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, length, heads * d) -> (batch, heads, length, d)."""
    batch, length, _ = x.shape
    return x.view(batch, length, heads, -1).transpose(1, 2)


def _logits(q: torch.Tensor, k: torch.Tensor, dim_head: int) -> torch.Tensor:
    # both sides scaled by dim_head ** -1/4 before the product, as the original does (steadier in fp16)
    scale = 1 / math.sqrt(math.sqrt(dim_head))
    return (q * scale) @ (k * scale).transpose(-2, -1)


class PerceiverAttention(nn.Module):
    """Latent queries attending to [context, latents]."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8, kv_dim: int | None = None):
        super().__init__()
        self.dim_head, self.heads = dim_head, heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(kv_dim or dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(kv_dim or dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, context: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        context, latents = self.norm1(context), self.norm2(latents)
        batch, length, _ = latents.shape
        q = _heads(self.to_q(latents), self.heads)
        k, v = (_heads(part, self.heads) for part in self.to_kv(torch.cat((context, latents), dim=-2)).chunk(2, -1))
        weight = torch.softmax(_logits(q, k, self.dim_head).float(), dim=-1).type(q.dtype)
        return self.to_out((weight @ v).permute(0, 2, 1, 3).reshape(batch, length, -1))


class LocalFacialExtractor(nn.Module):
    """Identity tokens from one face: the identity embedding becomes `num_id_token` tokens, and the latent
    queries read them together with each of the five EVA-CLIP feature levels in turn."""

    def __init__(self, dim: int = 1024, depth: int = 10, dim_head: int = 64, heads: int = 16, num_id_token: int = 5,
                 num_queries: int = 32, output_dim: int = 2048, ff_mult: int = 4, vit_dim: int = 1024,
                 id_dim: int = 1280):
        super().__init__()
        if depth % 5:
            raise ValueError("depth must be a multiple of the five feature levels")
        self.dim, self.num_id_token, self.num_queries = dim, num_id_token, num_queries
        self.per_level = depth // 5
        scale = dim ** -0.5
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) * scale)
        self.proj_out = nn.Parameter(scale * torch.randn(dim, output_dim))
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim, ff_mult)]) for _ in range(depth))
        for level in range(5):
            setattr(self, f"mapping_{level}", _mapping(vit_dim, vit_dim, dim))
        self.id_embedding_mapping = _mapping(id_dim, vit_dim, dim * num_id_token)

    def forward(self, id_embedding: torch.Tensor, vit_levels: list[torch.Tensor]) -> torch.Tensor:
        """(batch, id_dim), five (batch, tokens, vit_dim) -> (batch, num_queries, output_dim)."""
        identity = self.id_embedding_mapping(id_embedding).reshape(-1, self.num_id_token, self.dim)
        latents = torch.cat((self.latents.repeat(id_embedding.size(0), 1, 1), identity), dim=1)
        for level in range(5):
            context = torch.cat((identity, getattr(self, f"mapping_{level}")(vit_levels[level])), dim=1)
            for attention, ff in self.layers[level * self.per_level:(level + 1) * self.per_level]:
                latents = attention(context, latents) + latents
                latents = ff(latents) + latents
        return latents[:, :self.num_queries] @ self.proj_out


def _mapping(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(),
                         nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(), nn.Linear(hidden, dim_out))


class PerceiverCrossAttention(nn.Module):
    """Video tokens read one identity's tokens. Returns the output and, for the router, the attention logits
    (before the softmax), the queries and the keys, per head."""

    def __init__(self, dim: int = 3072, dim_head: int = 128, heads: int = 16, kv_dim: int = 2048):
        super().__init__()
        self.dim_head, self.heads = dim_head, heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(kv_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(kv_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, identity: torch.Tensor, video: torch.Tensor):
        identity, video = self.norm1(identity), self.norm2(video)
        batch, length, _ = video.shape
        q = _heads(self.to_q(video), self.heads)
        k, v = (_heads(part, self.heads) for part in self.to_kv(identity).chunk(2, dim=-1))
        logits = _logits(q, k, self.dim_head)
        weight = torch.softmax(logits.float(), dim=-1).type(logits.dtype)
        out = self.to_out((weight @ v).permute(0, 2, 1, 3).reshape(batch, length, -1))
        return out, logits, q, k
