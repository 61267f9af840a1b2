"""One AnyTalker window: stage picture + each identity's face and voice -> frames.

The steps follow the original (`WanAF2V.generate`), with two additions for long video:
a window can continue from frames carried over from the previous window (they become
known InP frames, and their latents are put back, re-noised, at every step, as
MultiTalk does), and both CFG passes run as one batched forward.

    1. conditions: text and negative text, CLIP tokens of the picture and of each face,
       each voice's wav2vec features for the window (zeros for the unconditional pass)
    2. InP input: VAE latent of the known frames (the picture, or the carried frames) +
       the 4-channel mask (known frames, then the union of the faces)
    3. denoising loop: UniPC on the original's schedule, one guide scale
    4. decode

`generate` runs them all; `denoise` (1-3, from given noise if wanted) and `decode` (4, float
frames) let a test follow one window against the original (tests/test_anytalker_window_parity.py).

The picture: talkstudio hands over the stage picture already cover-fitted to the model size
(nothing stretched). A window with `size` set takes it as the original does instead: the
picture as given for CLIP, the face crops and the face masks, and stretched (bicubic) to
`size` only as the VAE's first frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkstudio.generators.anytalker.masks import box_mask, expand, identity_masks, inpaint_mask
from talkstudio.generators.anytalker.sampling import guided, make_scheduler
from talkstudio.generators.wan_pipeline import (VAE_STRIDE, Components, decode_latents, encode_latents,
                                                encode_prompts, to_tensor)
# the original's default negative prompt (shared_config.sample_neg_prompt): the model was tuned with it
NEGATIVE_PROMPT = (
    "This shot begins with a scene, then becomes a distorted scene with subtitles, captions, and words on the "
    "bottom, featuring an ugly, incomplete or unnatural-looking character or object with extra fingers, poorly "
    "drawn hands and face, deformed and disfigured limbs, fused fingers, three legs, deformed arms or legs, "
    "distorted body passing through objects, swapped left and right arms, swapped left and right legs, or a "
    "deformed face on the back. The mouth movements are unnatural and not synchronized with the speech; lip "
    "motion is delayed or mismatched with the voice, showing poor lip-sync accuracy, with visible imperfections "
    "or distortions in the teeth. The facial expressions are stiff, frozen, or flickering, with jittering eyes "
    "and inconsistent gaze direction. The characters' necks or heads appear twisted. The objects and background "
    "in the scene are crashed, broken, or deformed, unnaturally distorted, and changing their front and back "
    "orientation."
)


@dataclass
class Window:
    image: np.ndarray  # [H, W, 3] uint8, at the model size (or any size, with `size`)
    faces: list  # per identity: (x, y, w, h) in the image
    audio: list  # per identity: wav2vec features of the window's frames [frames, 5, layers, hidden]
    frames: int  # 4n + 1
    prompt: str = ""
    carried: np.ndarray | None = None  # [m, h, w, 3] uint8 frames this window starts with, at the model size
    size: tuple[int, int] | None = None  # (width, height) to render at when the image is not at it: the original's way


def generate(components: Components, window: Window, steps: int = 40, shift: float = 3.0, guide: float = 4.5,
             seed: int = 0, device: str = "cpu"):
    """The window's frames, [frames, H, W, 3] uint8."""
    return to_pixels(decode(components, denoise(components, window, steps, shift, guide, seed, device), device))


def denoise(components: Components, window: Window, steps: int = 40, shift: float = 3.0, guide: float = 4.5,
            seed: int = 0, device: str = "cpu", noise=None):
    """Steps 1-3: the window's final latents [1, 16, latent frames, H/8, W/8], from `noise` of that shape
    when given, else from the seed's."""
    import torch

    width, height = render_size(window)
    latent_frames = (window.frames - 1) // VAE_STRIDE[0] + 1
    lat_h, lat_w = height // VAE_STRIDE[1], width // VAE_STRIDE[2]

    # 1. conditions (row 0: conditional, row 1: unconditional)
    text = encode_prompts(components, window.prompt, NEGATIVE_PROMPT, device)
    image_h, image_w = window.image.shape[:2]
    picture = to_tensor(window.image[None])[:, 0][None].to(device)
    masks = [expand(box_mask(face, image_w, image_h)) for face in window.faces]
    with components.using(components.image_encoder, device) as encode_image:
        clip = encode_image(picture).to(dtype=components.dtype).repeat(2, 1, 1)
        faces = [encode_image(_crop(picture, face)).to(dtype=components.dtype).repeat(2, 1, 1) for face in window.faces]
    audios = []
    for features in window.audio:
        features = features[None].to(device)
        audios.append(torch.cat([features, torch.zeros_like(features)]))
    tokens = identity_masks(masks, lat_h, lat_w, latent_frames).to(device)
    token_masks = [row[None].repeat(2, 1) for row in tokens]

    # 2. InP input: known frames encoded, the rest zeros; mask: known frames, then the faces
    if window.carried is not None:
        known = to_tensor(window.carried)
    else:
        known = _stretched(to_tensor(window.image[None]), height, width)
    video = torch.zeros(3, window.frames, height, width)
    video[:, :known.shape[1]] = known
    with components.using(components.vae, device) as vae:
        known_latents = encode_latents(vae, video[None].to(device))
    mask = inpaint_mask(masks, lat_h, lat_w, window.frames).to(device)
    carried_latents = (known.shape[1] - 1) // VAE_STRIDE[0] + 1 if window.carried is not None else 0
    if carried_latents:
        mask[:, :carried_latents] = 1.0
    y = torch.cat([mask, known_latents[0]])[None].repeat(2, 1, 1, 1, 1)

    # 3. denoising loop
    if noise is None:
        noise = initial_noise((1, 16, latent_frames, lat_h, lat_w), seed)
    noise = noise.to(device)
    latent = noise.clone()
    scheduler = make_scheduler(steps, shift)
    model = components.transformer
    for t in scheduler.timesteps:
        if carried_latents:  # the carried frames, re-noised to this step's level
            sigma = float(t) / 1000
            latent[:, :, :carried_latents] = ((1 - sigma) * known_latents[:, :, :carried_latents]
                                              + sigma * noise[:, :, :carried_latents])
        with torch.no_grad():
            pair = model(torch.cat([latent.repeat(2, 1, 1, 1, 1), y], dim=1), t.repeat(2).float().to(device), text,
                         clip, audios, faces, token_masks)
        latent = scheduler.step(guided(pair, guide), t, latent, return_dict=False)[0]
    return latent


def decode(components: Components, latent, device: str = "cpu"):
    """Step 4: the frames of final latents, [frames, H, W, 3] floats in [-1, 1]."""
    with components.using(components.vae, device) as vae:
        frames = decode_latents(vae, latent)
    return frames[0].permute(1, 2, 3, 0).clamp(-1, 1)


def to_pixels(frames) -> np.ndarray:
    """[frames, H, W, 3] floats in [-1, 1] -> uint8."""
    return ((frames + 1) * 127.5).round().byte().cpu().numpy()


def initial_noise(shape, seed: int):
    """The start latents for a seed, drawn on the CPU so a seed gives the same window on every device (the
    original draws with a generator on its own device; on the CPU, these same numbers)."""
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def render_size(window: Window) -> tuple[int, int]:
    """(width, height) the window renders at."""
    if window.size is not None:
        return window.size
    height, width = window.image.shape[:2]
    return width, height


def _stretched(frames, height: int, width: int):
    """[3, n, h, w] frames resized to height x width, bicubic, as the original resizes its picture for the VAE."""
    import torch.nn.functional as F

    if frames.shape[-2:] == (height, width):
        return frames
    return F.interpolate(frames.transpose(0, 1), size=(height, width), mode="bicubic",
                         align_corners=False).transpose(0, 1)


def _crop(picture, face):
    """The face's square crop of a [1, 3, H, W] picture, for its CLIP tokens."""
    from talkstudio.generators.anytalker.masks import square_box

    x1, y1, x2, y2 = (int(v) for v in square_box(face, picture.shape[-1], picture.shape[-2]))
    return picture[..., y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
