"""The AnyTalker DiT: Wan2.1 with identity-aware audio cross-attention, in one file.

Read top to bottom: the identity-aware cross-attention, the block, the audio
projection, the model; the Wan parts it shares with MultiTalk (rotary embedding,
norms, self-attention, the embeddings and head of WanBackbone) are in
`talkstudio/generators/wan.py`. Module names
equal the keys of the official checkpoint (`1_3B-single-v1.pth`, model_type
`a2v_af`), so it loads with `load_state_dict(strict=True)` and no renaming.

Shapes: x [B, 36, T, H, W] latents (16 noise + 4 mask + 16 first-frame latent),
text [B, L<=text_len, text_dim], clip [B, 257, 1280], per identity i:
audio_i [B, F, 5, 12, 768] (wav2vec, F video frames), face_i [B, 257, 1280]
(CLIP tokens of the face crop) and mask_i [B, T*H/2*W/2] (1 on the face's patches).
Attention runs through torch's scaled_dot_product_attention (no flash-attn).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from talkstudio.generators.wan import (VAE_STRIDE_T, MLPProj,
                                       WanBackbone, WanConfig, WanI2VCrossAttention, WanLayerNorm, WanRMSNorm,
                                       WanSelfAttention, WindowAudioProj, attend, audio_windows)

@dataclass
class AnyTalkerConfig(WanConfig):
    """The fields of `config_af2v_*.json` the network needs (names as in that file); 1.3B by default."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    # the 14B multi-person checkpoint's older path: Wan I2V cross-attention plus a per-latent-frame audio
    # attention over MultiTalk-style audio windows (config_af2v_14B.json)
    legacy_audio_cross_attn: bool = False
    audio_output_dim: int = 768


def frame_audio_attention(q, k_face, v_face, k_audio, v_audio, grid):
    """Attention of video tokens over [face tokens, the audio tokens of their own latent frame].

    Latent frame 0 hears all the audio; latent frame t >= 1 hears video frames 4(t-1)+1 .. 4t,
    the frames it encodes; every frame sees the face. The original builds this as a dense
    boolean mask [tokens, frames * 32] through SDPA; grouping the queries by latent frame gives
    the same softmax over the same keys without the mask (memory and time ~ T times smaller).
    Audio tokens come `context_tokens` (32) to a video frame, 4(T-1)+1 video frames.
    """
    batch, _, heads, head_dim = q.shape
    frames, per_frame = grid[0], grid[1] * grid[2]
    tokens_per_frame = k_audio.shape[1] // (VAE_STRIDE_T * (frames - 1) + 1)  # the projection's context_tokens
    first = attend(q[:, :per_frame], torch.cat([k_face, k_audio], 1), torch.cat([v_face, v_audio], 1))
    if frames == 1:
        return first
    later = frames - 1
    group = VAE_STRIDE_T * tokens_per_frame

    def grouped(audio, face):
        own = audio[:, tokens_per_frame:tokens_per_frame + later * group].reshape(batch, later, group, heads, head_dim)
        faces = face.unsqueeze(1).expand(batch, later, *face.shape[1:])
        return torch.cat([faces, own], dim=2).reshape(batch * later, -1, heads, head_dim)

    queries = q[:, per_frame:].reshape(batch * later, per_frame, heads, head_dim)
    rest = attend(queries, grouped(k_audio, k_face), grouped(v_audio, v_face))
    return torch.cat([first, rest.reshape(batch, later * per_frame, -1)], dim=1)


class WanAF2VCrossAttention(WanSelfAttention):
    """Text + reference image, plus for each identity i: mask_i * attention over [face_i, audio_i].

    One set of weights serves every identity; a video token sees a face's tokens always and
    its audio tokens only within its latent frame's window (`frame_audio_attention`).
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__(dim, num_heads, qk_norm, eps)
        self.k_img, self.v_img = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_k_img = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.k_audio, self.v_audio = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_k_audio = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.k_face, self.v_face = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_k_face = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x, text, image, audios, faces, masks, grid):
        q = self.heads(self.norm_q(self.q(x)))
        out = attend(q, self.heads(self.norm_k(self.k(text))), self.heads(self.v(text)))
        out = out + attend(q, self.heads(self.norm_k_img(self.k_img(image))), self.heads(self.v_img(image)))
        for audio, face, mask in zip(audios, faces, masks):
            heard = frame_audio_attention(
                q, self.heads(self.norm_k_face(self.k_face(face))), self.heads(self.v_face(face)),
                self.heads(self.norm_k_audio(self.k_audio(audio))), self.heads(self.v_audio(audio)), grid)
            out = out + heard * mask
        return self.o(out)


class LegacyA2VCrossAttention(nn.Module):
    """The 14B path: each latent frame's tokens attend to that frame's 32 audio tokens and the face's
    tokens, for each identity, times its mask (no q/k norms, biased projections, as trained)."""

    def __init__(self, dim: int, num_heads: int, audio_dim: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, dim * 2)
        self.k_face, self.v_face = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, audios, faces, masks, latent_frames: int):
        batch, tokens, dim = x.shape
        per_frame = tokens // latent_frames
        rows = batch * latent_frames
        q = self.q_linear(x.reshape(rows, per_frame, dim)).view(rows, per_frame, self.num_heads, self.head_dim)
        out = torch.zeros_like(x)
        for audio, face, mask in zip(audios, faces, masks):
            kv = self.kv_linear(audio.reshape(rows, audio.shape[2], -1))
            k_audio, v_audio = kv.view(rows, -1, 2, self.num_heads, self.head_dim).unbind(2)
            face = face.unsqueeze(1).expand(-1, latent_frames, -1, -1).reshape(rows, face.shape[1], dim)
            k_face = self.k_face(face).view(rows, -1, self.num_heads, self.head_dim)
            v_face = self.v_face(face).view(rows, -1, self.num_heads, self.head_dim)
            if k_audio.shape[1] > k_face.shape[1]:  # as trained: face tokens repeated up to the audio's count
                times = -(-k_audio.shape[1] // k_face.shape[1])
                k_face = k_face.repeat(1, times, 1, 1)[:, :k_audio.shape[1]]
                v_face = v_face.repeat(1, times, 1, 1)[:, :k_audio.shape[1]]
            heard = attend(q, torch.cat([k_face, k_audio], dim=1), torch.cat([v_face, v_audio], dim=1))
            out = out + heard.reshape(batch, tokens, dim) * mask
        return self.proj(out)


# --- block, head, projections --------------------------------------------------------------

class WanAttentionBlock(nn.Module):
    def __init__(self, config: AnyTalkerConfig):
        super().__init__()
        dim = config.dim
        self.norm1 = WanLayerNorm(dim, config.eps)
        self.self_attn = WanSelfAttention(dim, config.num_heads, config.qk_norm, config.eps)
        self.norm3 = WanLayerNorm(dim, config.eps, elementwise_affine=True) if config.cross_attn_norm else nn.Identity()
        self.legacy = config.legacy_audio_cross_attn
        if self.legacy:
            self.cross_attn = WanI2VCrossAttention(dim, config.num_heads, config.qk_norm, config.eps)
        else:
            self.cross_attn = WanAF2VCrossAttention(dim, config.num_heads, config.qk_norm, config.eps)
        self.norm2 = WanLayerNorm(dim, config.eps)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)
        if self.legacy:
            self.audio_cross_attn = LegacyA2VCrossAttention(dim, config.num_heads, config.audio_output_dim)
            self.norm_x = (WanLayerNorm(dim, config.eps, elementwise_affine=True) if config.norm_input_visual
                           else nn.Identity())

    def forward(self, x, e, grid, freqs, context):
        shift, scale, gate, shift_ffn, scale_ffn, gate_ffn = (self.modulation + e).chunk(6, dim=1)
        # the modulation is float32; the blocks compute in the model's dtype (bf16 on GPUs), as the original
        x = (x + self.self_attn((self.norm1(x).float() * (1 + scale) + shift).type_as(x), grid, freqs) * gate).type_as(x)
        if self.legacy:
            text, image, audios, faces, masks = context
            x = x + self.cross_attn(self.norm3(x), torch.cat([image, text], dim=1), image)
            x = x + self.audio_cross_attn(self.norm_x(x), audios, faces, masks, grid[0])
        else:
            x = x + self.cross_attn(self.norm3(x), *context, grid)
        y = self.ffn((self.norm2(x).float() * (1 + scale_ffn) + shift_ffn).type_as(x))
        return (x + y * gate_ffn).type_as(x)


class AudioProjModel(nn.Module):
    """wav2vec windows [B, F, 5, 12, 768] -> 32 tokens per video frame [B, F, 32, dim] (sizes from the config:
    audio_window x audio_layers x audio_channels in, intermediate_dim, context_tokens out)."""

    def __init__(self, config: AnyTalkerConfig):
        super().__init__()
        self.tokens = config.context_tokens
        self.proj1 = nn.Linear(config.audio_window * config.audio_layers * config.audio_channels,
                               config.intermediate_dim)
        self.proj2 = nn.Linear(config.intermediate_dim, config.intermediate_dim)
        self.proj3 = nn.Linear(config.intermediate_dim, self.tokens * config.dim)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, audio):
        batch, frames = audio.shape[:2]
        hidden = torch.relu(self.proj2(torch.relu(self.proj1(audio.reshape(batch * frames, -1)))))
        tokens = self.proj3(hidden).reshape(batch * frames, self.tokens, -1)
        return self.norm(tokens).reshape(batch, frames, self.tokens, -1)


# --- the model -----------------------------------------------------------------------------

class AnyTalkerTransformer(WanBackbone):
    timestep_dtype = torch.float32  # AnyTalker's model.py computes the timestep embedding in float32

    def __init__(self, config: AnyTalkerConfig):
        super().__init__(config, WanAttentionBlock)
        if config.legacy_audio_cross_attn:
            self.audio_proj = WindowAudioProj(config)
        else:
            self.audio_emb = AudioProjModel(config)
        self.audio_ref_emb = MLPProj(config.clip_dim, config.dim)

    def forward(self, x, t, text, clip, audios, faces, masks):
        """The flow prediction [B, out_dim, T, H, W] for latents x [B, in_dim, T, H, W] at times t [B]."""
        config = self.config
        audios, faces = [a.to(self.dtype) for a in audios], [f.to(self.dtype) for f in faces]
        # 1. patches, the grid they lie on, the time modulation
        tokens, grid, e, e6 = self.embed_video(x, t)
        # 2. conditions: text, CLIP image, per identity audio and face
        if config.legacy_audio_cross_attn:
            audio_tokens = [self.audio_proj(*audio_windows(a, config.vae_scale, config.audio_window))
                            for a in audios]
        else:
            audio_tokens = [self.audio_emb(a).flatten(1, 2) for a in audios]
        context = (self.embed_text(text), self.img_emb(clip.to(self.dtype)), audio_tokens,
                   [self.audio_ref_emb(f) for f in faces], [m.unsqueeze(-1).to(tokens.dtype) for m in masks])
        # 3. blocks, head, back to latents
        for block in self.blocks:
            tokens = block(tokens, e6, grid, self.freqs.to(x.device), context)
        return self.to_latents(tokens, e, grid)
