"""Bind-Your-Avatar's embedding router: for every video token, how much it belongs to each identity.

At every face layer the router reads the face cross-attention's queries (video tokens) and keys
(identity tokens), forms per-identity query-key affinities, lets them talk across space, time and the
identities (four attention blocks over a 3D grid with sinusoidal positions) and ends in a sigmoid per
identity. The probabilities are not normalised across identities: a token may belong to both or neither.
They then gate the identity features and, through the speaker matrix, the audio features.

Parameter names are those of `router_modules.pt`. `layer_merge` is in the released file but its output
is never used; it is kept so that file loads strictly. The file also holds the position table for the
released 49-frame 480x720 grid (`pos_emb`); other grids get the same formula computed for their size.
"""

from __future__ import annotations

import torch
from torch import nn

from talkstudio.generators.bindyouravatar.face import _heads

# the grid `pos_emb` was made for: 13 latent frames of 30 x 45 patches, which the original reads as
# 45 rows of 30 (its per-frame tokens are reinterpreted, not transposed; the router only sees the order)
RELEASED_GRID = (13, 45, 30)


def position_table(frames: int, height: int, width: int, dim: int) -> torch.Tensor:
    """[frames, height, width, dim]: interleaved sin/cos of each axis in a third of `dim` each, zero-padded."""
    third = dim // 3
    inverse = torch.pow(10000, torch.arange(0, third, 2).float() / third)

    def axis(n: int) -> torch.Tensor:
        angles = torch.arange(n).float().unsqueeze(-1) / inverse
        return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)

    t = axis(frames)[:, None, None].expand(-1, height, width, -1)
    h = axis(height)[None, :, None].expand(frames, -1, width, -1)
    w = axis(width)[None, None].expand(frames, height, -1, -1)
    table = torch.cat([t, h, w], dim=-1)
    padding = torch.zeros(frames, height, width, dim - table.size(-1))
    return torch.cat([table, padding], dim=-1)


class SpatialTemporalAttentionBlock(nn.Module):
    """Self-attention across the tokens of a frame, then across frames, then across identities; then an MLP."""

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4):
        super().__init__()
        from diffusers.models.attention_processor import Attention

        def attention():
            return Attention(query_dim=dim, heads=num_heads, dim_head=dim // num_heads, bias=True)

        self.spatial_attn, self.temporal_attn, self.multi_id_attn = attention(), attention(), attention()
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(dim) for _ in range(4))
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, frames, height, width, dim = x.shape
        space = self.norm1(x.reshape(ids * frames, height * width, dim))
        x = x + self.spatial_attn(space).reshape(ids, frames, height, width, dim)
        time = self.norm2(x.permute(0, 2, 3, 1, 4).reshape(ids * height * width, frames, dim))
        x = x + self.temporal_attn(time).reshape(ids, height, width, frames, dim).permute(0, 3, 1, 2, 4)
        people = self.norm3(x.permute(2, 3, 1, 0, 4).reshape(height * width * frames, ids, dim))
        x = x + self.multi_id_attn(people).reshape(height, width, frames, ids, dim).permute(3, 2, 0, 1, 4)
        return x + self.mlp(self.norm4(x.reshape(-1, dim))).reshape(ids, frames, height, width, dim)


class EmbeddingRouter(nn.Module):
    """(queries, keys) of one face layer -> [1, tokens, identities] probabilities."""

    def __init__(self, num_id_token: int = 32, num_heads: int = 16, inner_dim1: int = 256, inner_dim2: int = 128,
                 addtional_dim: int = 3, num_layers: int = 21, q_k_dim: int = 2048, grid=RELEASED_GRID):
        super().__init__()
        self.heads = num_heads
        self.feat_dim = num_id_token * num_heads
        self.norm = nn.LayerNorm(self.feat_dim)
        self.norm_q = nn.LayerNorm(q_k_dim)
        self.norm_k = nn.LayerNorm(q_k_dim)
        self.to_q = nn.ModuleList(nn.Linear(q_k_dim, q_k_dim, bias=False) for _ in range(num_layers))
        self.to_k = nn.ModuleList(nn.Linear(q_k_dim, q_k_dim, bias=False) for _ in range(num_layers))
        self.layer_merge = nn.ModuleList(nn.Sequential(
            nn.Linear(self.feat_dim + addtional_dim, inner_dim1), nn.ReLU(), nn.Linear(inner_dim1, inner_dim2, bias=False),
            nn.ReLU()) for _ in range(num_layers))
        self.register_buffer("pos_emb", position_table(*grid, self.feat_dim))
        self.spatial_temporal_layers = nn.ModuleList(
            SpatialTemporalAttentionBlock(self.feat_dim, num_heads=8, mlp_ratio=1) for _ in range(4))
        self.final_proj = nn.Sequential(nn.Linear(self.feat_dim, 1), nn.Sigmoid())

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, layer: int, grid: tuple[int, int, int]):
        """queries [ids, heads, tokens, d], keys [ids, heads, identity tokens, d] from the face cross-attention;
        `grid` (frames, rows, columns) with rows x columns = tokens per frame."""
        ids = queries.size(0)
        q = self.to_q[layer](self.norm_q(_channels_last(queries)))
        k = self.to_k[layer](self.norm_k(_channels_last(keys)))
        affinity = _heads(q, self.heads) @ _heads(k, self.heads).transpose(-2, -1)  # [ids, heads, tokens, id tokens]
        affinity = self.norm(affinity.permute(0, 2, 3, 1).reshape(ids, affinity.size(2), -1))
        x = affinity.reshape(ids, *grid, -1) + self._positions(grid).to(affinity)
        for layer_block in self.spatial_temporal_layers:
            x = layer_block(x)
        return self.final_proj(x.reshape(ids, -1, self.feat_dim)).permute(2, 1, 0)

    def _positions(self, grid) -> torch.Tensor:
        if tuple(self.pos_emb.shape[:3]) == tuple(grid):
            return self.pos_emb
        return position_table(*grid, self.feat_dim)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """[ids, heads, n, d] -> [ids, n, d * heads] in the original's channel order (d major, then head)."""
    return x.permute(0, 2, 3, 1).reshape(x.size(0), x.size(2), -1)
