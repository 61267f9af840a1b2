"""The AnyTalker DiT: Wan2.1 with identity-aware audio cross-attention, in one file.

Read top to bottom: rotary embedding, norms, self-attention, the identity-aware
cross-attention, the block, the head, the projections, the model. Module names
equal the keys of the official checkpoint (`1_3B-single-v1.pth`, model_type
`a2v_af`), so it loads with `load_state_dict(strict=True)` and no renaming.

Shapes: x [B, 36, T, H, W] latents (16 noise + 4 mask + 16 first-frame latent),
text [B, L<=text_len, text_dim], clip [B, 257, 1280], per identity i:
audio_i [B, F, 5, 12, 768] (wav2vec, F video frames), face_i [B, 257, 1280]
(CLIP tokens of the face crop) and mask_i [B, T*H/2*W/2] (1 on the face's patches).
Attention runs through torch's scaled_dot_product_attention (no flash-attn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CLIP_DIM = 1280
CLIP_TOKENS = 257
AUDIO_TOKENS = 32  # per video frame
AUDIO_WINDOW, AUDIO_LAYERS, AUDIO_CHANNELS = 5, 12, 768  # wav2vec2-base: +-2 frames x 12 layers x 768
VAE_STRIDE_T = 4


@dataclass
class AnyTalkerConfig:
    """The fields of `config_af2v_*.json` the network needs (names as in that file)."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 36
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    # the 14B multi-person checkpoint's older path: Wan I2V cross-attention plus a per-latent-frame audio
    # attention over MultiTalk-style audio windows (config_af2v_14B.json)
    legacy_audio_cross_attn: bool = False
    audio_window: int = 5
    intermediate_dim: int = 512
    audio_output_dim: int = 768
    context_tokens: int = 32
    vae_scale: int = 4
    norm_input_visual: bool = True
    norm_output_audio: bool = True

    @classmethod
    def from_json(cls, data: dict) -> AnyTalkerConfig:
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
        inverse = 1.0 / torch.pow(theta, torch.arange(0, part, 2, dtype=torch.float32) / part)
        angles = torch.outer(torch.arange(positions, dtype=torch.float32), inverse)
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
        return super().forward(x.float()).type_as(x)


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
        q = apply_rope(self.heads(self.norm_q(self.q(x))), grid, freqs)
        k = apply_rope(self.heads(self.norm_k(self.k(x))), grid, freqs)
        return self.o(attend(q, k, self.heads(self.v(x))))


def frame_audio_attention(q, k_face, v_face, k_audio, v_audio, grid):
    """Attention of video tokens over [face tokens, the audio tokens of their own latent frame].

    Latent frame 0 hears all the audio; latent frame t >= 1 hears video frames 4(t-1)+1 .. 4t,
    the frames it encodes; every frame sees the face. The original builds this as a dense
    boolean mask [tokens, frames * 32] through SDPA; grouping the queries by latent frame gives
    the same softmax over the same keys without the mask (memory and time ~ T times smaller).
    """
    batch, _, heads, head_dim = q.shape
    frames, per_frame = grid[0], grid[1] * grid[2]
    first = attend(q[:, :per_frame], torch.cat([k_face, k_audio], 1), torch.cat([v_face, v_audio], 1))
    if frames == 1:
        return first
    later = frames - 1
    group = VAE_STRIDE_T * AUDIO_TOKENS

    def grouped(audio, face):
        own = audio[:, AUDIO_TOKENS:AUDIO_TOKENS + later * group].reshape(batch, later, group, heads, head_dim)
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
        x = x + self.self_attn(self.norm1(x).float() * (1 + scale) + shift, grid, freqs) * gate
        if self.legacy:
            text, image, audios, faces, masks = context
            x = x + self.cross_attn(self.norm3(x), torch.cat([image, text], dim=1), image)
            x = x + self.audio_cross_attn(self.norm_x(x), audios, faces, masks, grid[0])
        else:
            x = x + self.cross_attn(self.norm3(x), *context, grid)
        return x + self.ffn(self.norm2(x).float() * (1 + scale_ffn) + shift_ffn) * gate_ffn


class Head(nn.Module):
    def __init__(self, config: AnyTalkerConfig):
        super().__init__()
        self.norm = WanLayerNorm(config.dim, config.eps)
        self.head = nn.Linear(config.dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, config.dim) / config.dim ** 0.5)

    def forward(self, x, e):
        shift, scale = (self.modulation + e.unsqueeze(1)).chunk(2, dim=1)
        return self.head(self.norm(x) * (1 + scale) + shift)


class MLPProj(nn.Module):
    """CLIP tokens (1280) into the model: LayerNorm, Linear, GELU, Linear, LayerNorm."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, in_dim), nn.GELU(),
                                  nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim))

    def forward(self, x):
        return self.proj(x)


class AudioProjModel(nn.Module):
    """wav2vec windows [B, F, 5, 12, 768] -> 32 tokens per video frame [B, F, 32, dim]."""

    def __init__(self, output_dim: int, intermediate_dim: int = 512):
        super().__init__()
        self.proj1 = nn.Linear(AUDIO_WINDOW * AUDIO_LAYERS * AUDIO_CHANNELS, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, AUDIO_TOKENS * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, audio):
        batch, frames = audio.shape[:2]
        hidden = torch.relu(self.proj2(torch.relu(self.proj1(audio.reshape(batch * frames, -1)))))
        tokens = self.proj3(hidden).reshape(batch * frames, AUDIO_TOKENS, -1)
        return self.norm(tokens).reshape(batch, frames, AUDIO_TOKENS, -1)


class LegacyAudioProjModel(nn.Module):
    """The 14B path's audio tokens, one set per latent frame: latent frame 0 from its 5-frame window,
    each later one from an 8-window composite of its 4 video frames (see `legacy_audio_windows`)."""

    def __init__(self, config: AnyTalkerConfig):
        super().__init__()
        per_window = AUDIO_LAYERS * AUDIO_CHANNELS
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


def legacy_audio_windows(audio: torch.Tensor, vae_scale: int = VAE_STRIDE_T, window: int = AUDIO_WINDOW):
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


def sinusoidal_embedding(dim: int, positions: torch.Tensor) -> torch.Tensor:
    half = dim // 2
    angles = torch.outer(positions.float(), torch.pow(10000, -torch.arange(half, dtype=torch.float32) / half))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


# --- the model -----------------------------------------------------------------------------

class AnyTalkerTransformer(nn.Module):
    def __init__(self, config: AnyTalkerConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(WanAttentionBlock(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self.img_emb = MLPProj(CLIP_DIM, dim)
        if config.legacy_audio_cross_attn:
            self.audio_proj = LegacyAudioProjModel(config)
        else:
            self.audio_emb = AudioProjModel(dim)
        self.audio_ref_emb = MLPProj(CLIP_DIM, dim)
        self.freqs = rope_frequencies(dim // config.num_heads)  # not a buffer: not in the checkpoint

    def forward(self, x, t, text, clip, audios, faces, masks):
        """The flow prediction [B, out_dim, T, H, W] for latents x [B, in_dim, T, H, W] at times t [B]."""
        config = self.config
        # 1. patches, and the grid they lie on
        tokens = self.patch_embedding(x)
        grid = tuple(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2)
        # 2. time modulation
        e = self.time_embedding(sinusoidal_embedding(config.freq_dim, t))
        e6 = self.time_projection(e).unflatten(1, (6, config.dim))
        # 3. conditions: text padded to text_len (as trained), CLIP image, per identity audio and face
        text = self.text_embedding(F.pad(text, (0, 0, 0, config.text_len - text.shape[1])))
        if config.legacy_audio_cross_attn:
            audio_tokens = [self.audio_proj(*legacy_audio_windows(a, config.vae_scale, config.audio_window))
                            for a in audios]
        else:
            audio_tokens = [self.audio_emb(a).flatten(1, 2) for a in audios]
        context = (text, self.img_emb(clip), audio_tokens,
                   [self.audio_ref_emb(f) for f in faces], [m.unsqueeze(-1).to(tokens.dtype) for m in masks])
        # 4. blocks, head, back to latents
        for block in self.blocks:
            tokens = block(tokens, e6, grid, self.freqs.to(x.device), context)
        return self.unpatchify(self.head(tokens, e), grid)

    def unpatchify(self, tokens, grid):
        pt, ph, pw = self.config.patch_size
        frames, height, width = grid
        out = tokens.view(tokens.shape[0], frames, height, width, pt, ph, pw, self.config.out_dim)
        out = torch.einsum("bfhwpqrc->bcfphqwr", out)
        return out.reshape(tokens.shape[0], self.config.out_dim, frames * pt, height * ph, width * pw)
