"""One MultiTalk / InfiniteTalk window: reference picture + each person's region and voice -> frames.

The steps follow the originals' streaming loop (`MultiTalkPipeline.generate`, one pass per chunk):

    1. conditions: text and negative text, CLIP tokens of the conditioning frame, each voice's wav2vec
       features for the window's frames (computed over the whole scene track, as the original's whole file)
    2. InP input: VAE latents of the known frames + the 4-channel mask
         multitalk:    known = the picture, or the previous window's last 25 frames; their latents are
                       put back, re-noised to each step's level, after every step
         infinitetalk: known = the picture (frame 0, in every window); the previous window's last 9 frames
                       are encoded alone and pinned, clean, as the first latents at every step
    3. denoising loop: Euler on the original's shifted schedule; text and audio guidance from 3 passes
       (cond, no text, no text and no audio), or 2 when the text scale is 1 (cond, no audio); cond and
       no-text share their two voices and run as one batched forward
    4. decode
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from talkstudio.generators.wan_pipeline import (VAE_STRIDE, Components, decode_latents, encode_latents,
                                                encode_prompts, to_tensor)

TRAIN_TIMESTEPS = 1000
# the original's default negative prompt (configs/wan_multitalk_14B.py): the model was tuned with it
NEGATIVE_PROMPT = (
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards"
)


@dataclass
class Window:
    image: np.ndarray  # [H, W, 3] uint8 reference picture at the model size
    regions: np.ndarray | None  # [persons + 1, H, W] each person's region then the background; None for one
    audio: object  # [persons, frames, 5, layers, hidden]: each voice's wav2vec features for the window
    frames: int  # 4n + 1
    prompt: str = ""
    carried: np.ndarray | None = None  # [m, H, W, 3] uint8: the previous window's last frames
    pinned: bool = False  # InfiniteTalk: carried frames pinned clean, the picture stays frame 0


@dataclass
class Guidance:
    text: float = 5.0
    audio: float = 4.0
    apg: bool = False  # adaptive projected guidance (the original's --use_apg)
    apg_momentum: float = -0.75
    apg_norm_threshold: float = 55.0


def timesteps(steps: int, shift: float):
    """The original's schedule: linspace(1000, 1, steps) and a final 0, each shifted by `shift`."""
    import torch

    raw = torch.tensor([*np.linspace(TRAIN_TIMESTEPS, 1, steps, dtype=np.float32), 0.0])
    t = raw / TRAIN_TIMESTEPS
    return shift * t / (1 + (shift - 1) * t) * TRAIN_TIMESTEPS


def generate(components: Components, window: Window, steps: int = 40, shift: float = 7.0,
             guidance: Guidance | None = None, seed: int = 0, device: str = "cpu", noise=None,
             trace: dict | None = None):
    """The window's frames, [frames, H, W, 3] uint8.

    `noise` [16, T, h, w] replaces the seeded initial noise (the parity tests give the original's);
    a `trace` dict receives the final latents [1, 16, T, h, w] and the decoded frames [1, 3, F, H, W]
    as floats in [-1, 1] (clamped, as the original's VAE decode returns them).
    """
    import torch

    guidance = guidance or Guidance()
    height, width = window.image.shape[:2]
    latent_frames = (window.frames - 1) // VAE_STRIDE[0] + 1
    lat_h, lat_w = height // VAE_STRIDE[1], width // VAE_STRIDE[2]
    generator = torch.Generator().manual_seed(seed)

    # 1. conditions
    text = encode_prompts(components, window.prompt, NEGATIVE_PROMPT, device)  # [prompt, negative]
    known = window.image[None] if window.pinned or window.carried is None else window.carried
    with components.using(components.image_encoder, device) as encode_image:
        clip = encode_image(to_tensor(known[-1:])[:, 0][None].to(device)).to(dtype=components.dtype)
    audio = window.audio.to(device)[None]
    regions = _latent_regions(window.regions, lat_h, lat_w, device)

    # 2. InP input: the known frames encoded, the rest zeros; which latents stay fixed
    video = torch.zeros(3, window.frames, height, width)
    video[:, :len(known)] = to_tensor(known)
    with components.using(components.vae, device) as vae:
        y = encode_latents(vae, video[None].to(device))
        if window.pinned:
            motion = encode_latents(vae, to_tensor(window.carried if window.carried is not None
                                                   else window.image[None])[None].to(device))
    mask = _known_mask(len(known), window.frames, lat_h, lat_w).to(device)
    y = torch.cat([mask, y[0]])[None]
    if not window.pinned:
        motion = y[:, 4:, :(len(known) - 1) // VAE_STRIDE[0] + 1] if window.carried is not None else None

    # 3. denoising loop
    schedule = timesteps(steps, shift).to(device)
    latent = (torch.randn(1, 16, latent_frames, lat_h, lat_w, generator=generator) if noise is None
              else noise.reshape(1, 16, latent_frames, lat_h, lat_w).float().clone()).to(device)
    buffers = [MomentumBuffer(guidance.apg_momentum), MomentumBuffer(guidance.apg_momentum)] if guidance.apg else None
    model = components.transformer
    for i in range(steps):
        latent = _impose(latent, motion, schedule[i], window.pinned, generator)
        with torch.no_grad():
            velocity = _guided_velocity(model, latent, y, schedule[i], text, clip, audio, regions, guidance, buffers)
        latent = latent - velocity * (schedule[i] - schedule[i + 1]) / TRAIN_TIMESTEPS
    latent = _impose(latent, motion, schedule[steps], window.pinned, generator)

    # 4. decode
    with components.using(components.vae, device) as vae:
        frames = decode_latents(vae, latent)
    if trace is not None:
        trace.update(latents=latent.cpu(), frames=frames.clamp(-1, 1).cpu())
    return ((frames[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()


def _impose(latent, motion, t, pinned: bool, generator):
    """Put the known motion latents back: clean (InfiniteTalk), or re-noised to level t (MultiTalk)."""
    import torch

    if motion is None:
        return latent
    latent = latent.clone()
    count = motion.shape[2]
    if pinned:
        latent[:, :, :count] = motion
    else:
        sigma = float(t) / TRAIN_TIMESTEPS
        noise = torch.randn(motion.shape, generator=generator).to(motion.device)
        latent[:, :, :count] = (1 - sigma) * motion + sigma * noise
    return latent


def _guided_velocity(model, latent, y, t, text, clip, audio, regions, guidance: Guidance, buffers):
    """The guided flow prediction; the original's 3-pass (or 2-pass) formula, optionally with APG."""
    import torch

    x = torch.cat([latent, y], dim=1)
    silence = torch.zeros_like(audio[:, :1])  # the original's null audio: one silent voice
    if math.isclose(guidance.text, 1.0):
        cond = model(x, t[None], text[:1], clip, audio, regions)
        no_audio = model(x, t[None], text[:1], clip, silence, None)
        if buffers:
            return cond + (guidance.audio - 1) * adaptive_projected_guidance(cond - no_audio, cond, buffers[1],
                                                                           guidance.apg_norm_threshold)
        return no_audio + guidance.audio * (cond - no_audio)
    pair = model(x.repeat(2, 1, 1, 1, 1), t.repeat(2), text, clip.repeat(2, 1, 1), audio.repeat(2, 1, 1, 1, 1, 1),
                 regions)
    cond, no_text = pair.chunk(2)
    uncond = model(x, t[None], text[1:], clip, silence, None)
    if buffers:
        return (cond + (guidance.text - 1) * adaptive_projected_guidance(cond - no_text, cond, buffers[0],
                                                                         guidance.apg_norm_threshold)
                + (guidance.audio - 1) * adaptive_projected_guidance(no_text - uncond, cond, buffers[1],
                                                                     guidance.apg_norm_threshold))
    return uncond + guidance.text * (cond - no_text) + guidance.audio * (no_text - uncond)


def _known_mask(known_frames: int, frames: int, lat_h: int, lat_w: int):
    """[4, T, h, w]: 1 on the known frames; frame 0 counts four times, so four frames fill each latent."""
    import torch

    mask = torch.zeros(1, frames, lat_h, lat_w)
    mask[:, :known_frames] = 1
    mask = torch.cat([mask[:, :1].repeat(1, 4, 1, 1), mask[:, 1:]], dim=1)
    return mask.view(1, mask.shape[1] // 4, 4, lat_h, lat_w).transpose(1, 2)[0]


def _latent_regions(regions, lat_h: int, lat_w: int, device):
    """The regions at the latent grid (nearest, as the original), or None for one person."""
    import torch
    import torch.nn.functional as F

    if regions is None:
        return None
    grid = F.interpolate(torch.from_numpy(regions).float()[None], size=(lat_h, lat_w), mode="nearest")[0]
    return (grid > 0).float().to(device)


class MomentumBuffer:
    """A running average of guidance differences (APG's momentum)."""

    def __init__(self, momentum: float):
        self.momentum, self.average = momentum, 0

    def update(self, value):
        self.average = value + self.momentum * self.average


def adaptive_projected_guidance(difference, prediction, buffer: MomentumBuffer, norm_threshold: float):
    """APG (arXiv 2410.02416): the momentum-averaged difference, its norm clipped, without its component
    along the prediction (eta 0), as the original applies it."""
    import torch

    buffer.update(difference)
    difference = buffer.average
    if norm_threshold > 0:
        norm = difference.norm(p=2, dim=[-1, -2, -3, -4], keepdim=True)
        difference = difference * torch.minimum(torch.ones_like(norm), norm_threshold / norm)
    unit = torch.nn.functional.normalize(prediction.double(), dim=[-1, -2, -3, -4])
    parallel = (difference.double() * unit).sum(dim=[-1, -2, -3, -4], keepdim=True) * unit
    return (difference.double() - parallel).type_as(difference)
