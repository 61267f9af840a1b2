"""Bind-Your-Avatar's DiT: CogVideoX-5B-I2V's MM-DiT, with identity and audio injected after its blocks.

    after block i, when i % cross_attn_interval == 0 (a face layer, k = i // interval):
        each identity's tokens are read by every video token (PerceiverCrossAttention k); the router turns
        those queries and keys into per-token identity probabilities p [tokens, 2]; the video gains
        local_face_scale * sum_id p[:, id] * face_output[id]
    after block i, when i % audio_attn_interval == 0 (audio layer i // interval):
        each voice's tokens are read per latent frame (AudioAwareModel); voice a's output is weighted by
        1 - q[:, other(a)], where q = speaker matrix @ p (the latest face layer's probabilities; zeros before
        the first), and the weighted sum is added

The CogVideoX core is diffusers' `CogVideoXTransformer3DModel` (its parameter names are the released
`transformer/` folder's); the added modules keep the names of the released `face_modules.pt`,
`router_modules.pt` and `audio_modules.pt`. Face tokens and audio tokens do not depend on the denoising
step, so the pipeline computes them once per window (`face_tokens`, `audio_model.tokens`) and hands them in.
"""

from __future__ import annotations

import inspect

from dataclasses import dataclass, field

import torch
from torch import nn

from talkstudio.generators.bindyouravatar.audio import AudioAwareModel
from talkstudio.generators.bindyouravatar.face import LocalFacialExtractor, PerceiverCrossAttention
from talkstudio.generators.bindyouravatar.router import EmbeddingRouter


@dataclass
class Additions:
    """Sizes of the modules Bind-Your-Avatar adds; the defaults are the released ones."""

    cross_attn_interval: int = 2
    audio_attn_interval: int = 1
    local_face_scale: float = 1.0
    face: dict = field(default_factory=dict)  # LocalFacialExtractor's arguments
    face_attention: dict = field(default_factory=lambda: {"dim_head": 128, "heads": 16})
    router: dict = field(default_factory=dict)  # EmbeddingRouter's, but num_layers (one per face layer)
    audio: dict = field(default_factory=dict)  # AudioAwareModel's, but dim and num_layers


RELEASED = Additions()


def make_transformer(core: dict, additions: Additions):
    """The model: `core` is a CogVideoX transformer config (the released transformer/config.json)."""
    from diffusers import CogVideoXTransformer3DModel

    class BindYourAvatarTransformer(CogVideoXTransformer3DModel):
        pass

    known = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters)  # the rest: the original's flags
    model = BindYourAvatarTransformer.from_config({k: v for k, v in core.items() if k in known})
    attach(model, additions)
    return model


def attach(model, additions: Additions) -> None:
    """Adds the identity, router and audio modules to a CogVideoX transformer."""
    inner = model.config.num_attention_heads * model.config.attention_head_dim
    layers = model.config.num_layers
    face_layers = layers // additions.cross_attn_interval
    model.additions = additions
    model.local_facial_extractor = LocalFacialExtractor(**additions.face)
    model.perceiver_cross_attention = nn.ModuleList(
        PerceiverCrossAttention(dim=inner, kv_dim=int(inner / 3 * 2), **additions.face_attention)
        for _ in range(face_layers))
    model.router = EmbeddingRouter(num_layers=face_layers, **additions.router)
    model.audio_model = AudioAwareModel(dim=inner, num_layers=layers // additions.audio_attn_interval,
                                        norm_elementwise_affine=model.config.norm_elementwise_affine,
                                        norm_eps=model.config.norm_eps, **additions.audio)


def face_tokens(model, id_embeddings: torch.Tensor, vit_levels: list[torch.Tensor]) -> torch.Tensor:
    """[batch, 2, queries, dim] identity tokens: `id_embeddings` [batch, 2, 1280], `vit_levels` five
    [batch, 2, tokens, 1024]."""
    batch, ids = id_embeddings.shape[:2]
    flat = model.local_facial_extractor(id_embeddings.flatten(0, 1), [level.flatten(0, 1) for level in vit_levels])
    return flat.unflatten(0, (batch, ids))


def forward(model, latents: torch.Tensor, text: torch.Tensor, timestep: torch.Tensor, rotary, faces: torch.Tensor,
            audio: torch.Tensor, speakers: torch.Tensor, routing: torch.Tensor | None = None) -> torch.Tensor:
    """The velocity-free CogVideoX prediction for `latents` [batch, frames, channels, h, w].

    faces [batch, 2, queries, kv] (face_tokens), audio [batch, 2, frames, context, audio_dim]
    (audio_model.tokens), speakers [batch, 2, 2] (voice-to-face matrix), routing: fixed identity
    probabilities [1, tokens, 2] (the two-stage mode's masks) instead of the router's.
    """
    config, additions = model.config, model.additions
    batch, frames, _, height, width = latents.shape
    grid = (frames, height // config.patch_size, width // config.patch_size)
    emb = model.time_embedding(model.time_proj(timestep).to(latents.dtype))
    tokens = model.patch_embed(text, latents)
    text_length = text.shape[1]
    text_states, video = tokens[:, :text_length], tokens[:, text_length:]
    if routing is not None:
        routing = _over_all_frames(routing, grid).to(video.dtype)
    probabilities = [routing if routing is not None else video.new_zeros(1, video.shape[1], 2) for _ in range(batch)]

    for i, block in enumerate(model.transformer_blocks):
        video, text_states = block(hidden_states=video, encoder_hidden_states=text_states, temb=emb,
                                   image_rotary_emb=rotary)
        if i % additions.cross_attn_interval == 0:
            layer = i // additions.cross_attn_interval
            added = []
            for row in range(batch):
                out, _, q, k = model.perceiver_cross_attention[layer](faces[row], video[row].repeat(2, 1, 1))
                predicted = model.router(q, k, layer, (grid[0], grid[2], grid[1]))  # the router's row order
                probabilities[row] = routing if routing is not None else predicted
                added.append(_mix(probabilities[row], out))
            video = video + additions.local_face_scale * torch.cat(added)
        if i % additions.audio_attn_interval == 0:
            heard = torch.cat(probabilities).to(video.dtype)  # [batch, tokens, 2]
            voices = (speakers.to(video.dtype) @ heard.transpose(-2, -1)).transpose(-2, -1)
            layer = i // additions.audio_attn_interval
            added = []
            for row in range(batch):
                out = model.audio_model(audio[row], video[row].repeat(2, 1, 1), frames, layer)
                added.append(_mix(1 - voices[row][None][..., [1, 0]], out))
            video = video + torch.cat(added)

    video = model.norm_out(model.norm_final(video), temb=emb)
    video = model.proj_out(video)
    p = config.patch_size
    video = video.reshape(batch, frames, height // p, width // p, -1, p, p)
    return video.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)


def _mix(weights: torch.Tensor, per_identity: torch.Tensor) -> torch.Tensor:
    """sum_id weights[0, :, id] * per_identity[id]: [1, tokens, 2] x [2, tokens, dim] -> [1, tokens, dim]."""
    return (weights.transpose(1, 0) @ per_identity.transpose(1, 0)).transpose(1, 0)


def _over_all_frames(routing: torch.Tensor, grid) -> torch.Tensor:
    """A mask [1, tokens, 2] made to hold in every latent frame: its maximum over the frames, repeated."""
    frames, rows, columns = grid
    per_frame = routing.view(1, frames, rows, columns, 2).max(dim=1).values
    return per_frame.unsqueeze(1).repeat(1, frames, 1, 1, 1).reshape(1, -1, 2)
