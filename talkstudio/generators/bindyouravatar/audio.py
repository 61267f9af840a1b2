"""Bind-Your-Avatar's audio module: wav2vec rows -> audio tokens per latent frame -> per-frame cross-attention.

    rows      [identities, 4n + 5, layers, channels]: one row per video frame (25 a second) plus two of
              context each side, as `audio_embeds` in the original
    windows   every video frame takes its five rows (the frame's own and two each side)
    tokens    AudioProjModel: an MLP per frame to `context_tokens` tokens, then two stride-2 convolutions
              over time that fold the 4n + 1 frames into the n + 1 latent frames (the first frame alone, as
              the video VAE keeps it)
    attention AudioAwareModel layer k: every video token of latent frame t reads frame t's audio tokens

Parameter names are those of `audio_modules.pt`. `learnable_scale` and `mute_learnable_tokens` are in the
released file and load, but inference with two voices never uses them (the original uses the mute
tokens only when a single voice is given).
"""

from __future__ import annotations

import torch
from torch import nn


class AudioProjModel(nn.Module):
    def __init__(self, seq_len: int = 5, blocks: int = 12, channels: int = 768, intermediate_dim: int = 512,
                 output_dim: int = 768, context_tokens: int = 32):
        super().__init__()
        self.context_tokens, self.output_dim = context_tokens, output_dim
        self.proj1 = nn.Linear(seq_len * blocks * channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)
        width = context_tokens * output_dim
        self.conv1 = nn.Conv1d(width, width, kernel_size=2, stride=2)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """[batch, frames, window, layers, channels] -> [batch, latent frames, context_tokens, output_dim]."""
        batch, frames = windows.shape[:2]
        x = windows.reshape(batch * frames, -1)
        x = self.proj3(torch.relu(self.proj2(torch.relu(self.proj1(x)))))
        x = x.reshape(batch, frames, -1).transpose(1, 2)  # [batch, tokens * dim, frames]
        for _ in range(2):
            x = self._halve(x)
        x = x.transpose(1, 2).reshape(batch, x.size(-1), self.context_tokens, self.output_dim)
        return self.norm(x)

    def _halve(self, x: torch.Tensor) -> torch.Tensor:
        """Pairs of frames into one; an odd first frame stays alone."""
        if x.size(-1) % 2 == 0:
            return self.conv1(x)
        rest = x[..., 1:]
        return torch.cat([x[..., :1], self.conv1(rest) if rest.size(-1) else rest], dim=-1)


class AudioAwareModel(nn.Module):
    def __init__(self, dim: int = 3072, audio_dim: int = 768, num_attention_heads: int = 48,
                 attention_head_dim: int = 64, window_size: int = 5, window_stride: int = 1,
                 norm_elementwise_affine: bool = True, norm_eps: float = 1e-5, num_layers: int = 42,
                 projection: dict | None = None, mute_tokens: tuple[int, int] = (32, 768)):
        super().__init__()
        from diffusers.models.attention_processor import Attention

        self.window_size, self.window_stride = window_size, window_stride
        self.learnable_scale = nn.Parameter(torch.tensor([0.01]))
        self.audio_proj_model = AudioProjModel(**(projection or {}))
        self.layers = nn.ModuleList(nn.ModuleDict({
            "norm_q": nn.LayerNorm(dim, norm_eps, norm_elementwise_affine),
            "attn": Attention(query_dim=dim, cross_attention_dim=audio_dim, dim_head=attention_head_dim,
                              heads=num_attention_heads, bias=True),
        }) for _ in range(num_layers))
        self.mute_learnable_tokens = nn.Parameter(torch.zeros(1, *mute_tokens))

    def windows(self, rows: torch.Tensor, latent_frames: int) -> torch.Tensor:
        """[batch, 4n + 5, layers, channels] -> [batch, 4n + 1, window, layers, channels]."""
        expected = 1 + (latent_frames - 1) * 4 + self.window_size - self.window_stride
        if rows.shape[1] != expected:
            raise ValueError(f"{latent_frames} latent frames need {expected} audio rows, not {rows.shape[1]}")
        return rows.unfold(1, self.window_size, self.window_stride).permute(0, 1, 4, 2, 3)

    def tokens(self, rows: torch.Tensor, latent_frames: int) -> torch.Tensor:
        """[batch, 4n + 5, layers, channels] -> [batch, n + 1, context tokens, audio_dim]."""
        return self.audio_proj_model(self.windows(rows, latent_frames))

    def forward(self, tokens: torch.Tensor, video: torch.Tensor, latent_frames: int, layer: int) -> torch.Tensor:
        """Layer `layer`'s attention of video tokens [batch, frames * hw, dim] to their frame's audio tokens
        [batch, frames, context, audio_dim]; the attention output only (the caller adds it)."""
        batch, length, dim = video.shape
        per_frame = video.reshape(batch * latent_frames, length // latent_frames, dim)
        audio = tokens.reshape(batch * latent_frames, -1, tokens.shape[-1])
        block = self.layers[layer]
        return block["attn"](hidden_states=block["norm_q"](per_frame), encoder_hidden_states=audio).reshape(
            batch, length, dim)
