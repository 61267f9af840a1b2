"""One Bind-Your-Avatar window: a first-frame picture, an inpainting background, two faces and two voices -> frames.

The steps follow the original (`BindyouravatarPipeline.__call__`, CogVideoX-5B-I2V's pipeline with the
identity and audio conditions added):

    1. conditions: batch rows [unconditional, conditional]; the unconditional row has the empty prompt and
       silent (all-zero) audio but keeps the faces, the speaker matrix and both picture latents
    2. picture latents: the first-frame condition (the original's white canvas with the two faces) and the
       inpainting background, each VAE-encoded as a one-frame video and zero-padded to all latent frames,
       drawn from the window's generator in the original's order, so that a seed gives the original's numbers
    3. denoising loop: CogVideoX's DPM-Solver++ (an SDE: it draws fresh noise at every step), static
       classifier-free guidance; optionally fixed identity masks (the two-stage mode's second pass)
    4. decode

`generate` runs them all; `denoise` (1-3, from given noise if wanted) and `decode` (4, float frames) let a
test follow one window against the original (tests/test_bindyouravatar_pipeline.py).

The released model works at 480x720 and 49 frames only: its router's position table and the token grid
are fixed to 13 x 30 x 45 latent patches. talkstudio hands the pictures over at that size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from talkstudio.generators.bindyouravatar.positions import rotary_embeddings
from talkstudio.generators.bindyouravatar.transformer import face_tokens, forward

VAE_TEMPORAL = 4  # video frames per latent frame (after the first)
VAE_SPATIAL = 8
MAX_TEXT_TOKENS = 226  # the original's max_sequence_length
NEGATIVE_PROMPT = ""  # the original's: the unconditional row is the empty prompt


@dataclass
class Components:
    transformer: object  # transformer.make_transformer's model, LoRA merged
    vae: object  # diffusers AutoencoderKLCogVideoX
    scheduler: dict  # the model folder's scheduler/scheduler_config.json (CogVideoXDPMScheduler)
    tokenizer: object = None  # T5 tokenizer and encoder: needed only for prompts not in `prompts`
    text_encoder: object = None
    dtype: object = None  # what the DiT computes in (None: float32)
    prompts: dict = field(default_factory=dict)  # prompt -> its T5 embedding [1, tokens, dim], on the CPU
    wav2vec: object = None  # the backend's: voices -> audio rows (not used by the window itself)
    identity: object = None  # the backend's: faces -> identity inputs (identity.IdentityEncoders)


@dataclass
class Window:
    image: np.ndarray  # [480, 720, 3] uint8: the first-frame condition
    faces: object  # identity tokens [2, queries, dim], or (id embeddings [2, 1280], five ViT levels [2, n, 1024])
    audio: object  # [2, frames + 4, layers, channels] wav2vec rows of each voice, two rows of context each side
    speakers: object  # [2, 2] voice-to-face matrix: eye(2) when voice k is face k's, 1 - eye(2) when swapped
    background: np.ndarray | None = None  # [480, 720, 3] uint8 inpainting frame; None: no background condition
    frames: int = 49  # 4n + 1
    prompt: str = ""
    routing: object = None  # [1, tokens, 2] fixed identity masks (second pass of the two-stage mode)


def generate(components: Components, window: Window, steps: int = 50, guide: float = 7.0, seed: int = 2025,
             device: str = "cpu") -> np.ndarray:
    """The window's frames, [frames, H, W, 3] uint8 (defaults: infer.py's)."""
    return to_pixels(decode(components, denoise(components, window, steps, guide, seed, device), device))


def denoise(components: Components, window: Window, steps: int = 50, guide: float = 7.0, seed: int = 2025,
            device: str = "cpu", noise=None, generator=None):
    """Steps 1-3: the window's final latents [1, latent frames, channels, H/8, W/8]. `noise` of that shape
    replaces the seed's initial noise; `generator` (a CPU torch.Generator) replaces the seed, for a caller
    that goes on drawing from it (the original's second pass continues the first pass's generator)."""
    import torch

    model, vae = components.transformer, components.vae
    dtype = components.dtype or torch.float32
    height, width = window.image.shape[:2]
    latent_frames = (window.frames - 1) // VAE_TEMPORAL + 1
    # a CPU generator: the same draws on every device (the original seeds one on its own device)
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)

    # 1. conditions, batch rows [unconditional, conditional]
    with torch.no_grad():
        text = torch.cat([prompt_embedding(components, NEGATIVE_PROMPT, device),
                          prompt_embedding(components, window.prompt, device)]).to(dtype)
        faces = identity_tokens(model, window.faces, device).repeat(2, 1, 1, 1)
        audio = audio_tokens(model, window.audio, latent_frames, device)
    speakers = torch.as_tensor(window.speakers, device=device)[None].repeat(2, 1, 1)
    rotary = rotary_embeddings(height, width, latent_frames, model.config.patch_size,
                               model.config.attention_head_dim, device)
    routing = None if window.routing is None else torch.as_tensor(window.routing, device=device)

    # 2. picture latents (noise, picture, background channels), drawn in the original's order
    shape = (1, latent_frames, model.config.in_channels // 3, height // VAE_SPATIAL, width // VAE_SPATIAL)
    with torch.no_grad():
        noise, condition = draw_latents(vae, window, shape, generator, noise, device, dtype)
    condition = condition.repeat(2, 1, 1, 1, 1)

    # 3. denoising loop
    from diffusers import CogVideoXDPMScheduler

    scheduler = CogVideoXDPMScheduler.from_config(components.scheduler)
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    latents = noise.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
    previous_x0 = None  # DPM-Solver++(2M) keeps the last predicted clean latents
    for i, t in enumerate(timesteps):
        model_input = torch.cat([scheduler.scale_model_input(torch.cat([latents] * 2), t), condition], dim=2)
        with torch.no_grad():
            pair = forward(model, model_input, text, t.expand(2), rotary, faces, audio, speakers, routing).float()
        uncond, cond = pair.chunk(2)
        velocity = uncond + guide * (cond - uncond)
        # the original's call: the step before (a larger t) is the "back" timestep of the 2nd-order update
        latents, previous_x0 = scheduler.step(velocity, previous_x0, t, timesteps[i - 1] if i > 0 else None, latents,
                                              eta=0.0, generator=generator, return_dict=False)
        latents = latents.to(dtype)
    return latents


def decode(components: Components, latents, device: str = "cpu"):
    """Step 4: the frames of final latents, [frames, H, W, 3] floats in [-1, 1]."""
    import torch

    vae = components.vae
    with torch.no_grad():
        video = vae.decode(1 / vae.config.scaling_factor * latents.permute(0, 2, 1, 3, 4).to(device)).sample
    return video[0].permute(1, 2, 3, 0).float().clamp(-1, 1)


def to_pixels(frames) -> np.ndarray:
    """[frames, H, W, 3] floats in [-1, 1] -> uint8, rounded as the original's export (via PIL) rounds."""
    return ((frames * 0.5 + 0.5).clamp(0, 1) * 255).round().byte().cpu().numpy()


def prompt_embedding(components: Components, prompt: str, device):
    """[1, tokens, dim]: the prompt's T5 embedding, padded to 226 tokens as the original pads; kept once."""
    if prompt not in components.prompts:
        ids = components.tokenizer(prompt, padding="max_length", max_length=MAX_TEXT_TOKENS, truncation=True,
                                   add_special_tokens=True, return_tensors="pt").input_ids
        encoder = components.text_encoder
        components.prompts[prompt] = encoder(ids.to(encoder.device))[0].detach().cpu()
    return components.prompts[prompt].to(device)


def identity_tokens(model, faces, device):
    """[1, 2, queries, dim]: the faces' tokens, through the facial extractor unless given ready."""
    import torch

    dtype = model.dtype
    if torch.is_tensor(faces):
        return faces.to(device=device, dtype=dtype)[None]
    embeddings, levels = faces
    return face_tokens(model, embeddings.to(device, dtype)[None], [level.to(device, dtype)[None] for level in levels])


def audio_tokens(model, rows, latent_frames: int, device):
    """[2, 2, latent frames, context, dim]: row 0 the silent voices (all-zero rows still give tokens, from the
    projection's biases), row 1 the voices."""
    import torch

    rows = torch.as_tensor(rows).to(device=device, dtype=model.dtype)
    both = torch.cat([torch.zeros_like(rows), rows])  # [uncond voice 0, uncond voice 1, voice 0, voice 1]
    return model.audio_model.tokens(both, latent_frames).unflatten(0, (2, 2))


def draw_latents(vae, window: Window, shape, generator, noise, device, dtype):
    """(initial noise, picture + background latents) drawn from `generator` as the original draws: the
    picture's latent sample, the noise (unless given), the background's latent sample."""
    import torch

    frames = shape[1]
    picture = picture_latents(vae, window.image, frames, generator, device, dtype)
    if noise is None:
        noise = torch.randn(shape, generator=generator, dtype=dtype)
    # without a background the original encodes the picture in its place (a draw) and then uses zeros
    background = picture_latents(vae, window.image if window.background is None else window.background, frames,
                                 generator, device, dtype)
    if window.background is None:
        background = torch.zeros_like(background)
    return noise, torch.cat([picture, background], dim=2)


def picture_latents(vae, picture: np.ndarray, latent_frames: int, generator, device, dtype):
    """[1, latent frames, channels, h, w]: a sample of the picture's VAE latent (one draw from `generator`) as
    latent frame 0, scaled, then zeros."""
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(picture)).float() / 255.0 * 2.0 - 1.0  # as the original's preprocess
    video = pixels.permute(2, 0, 1)[None, :, None].to(device=device, dtype=vae.dtype)  # [1, 3, 1, H, W]
    first = vae.encode(video).latent_dist.sample(generator).to(dtype).permute(0, 2, 1, 3, 4)
    first = vae.config.scaling_factor * first
    padding = first.new_zeros(1, latent_frames - 1, *first.shape[2:])
    return torch.cat([first, padding], dim=1)
