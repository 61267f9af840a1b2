"""One AnyTalker window: stage picture + each identity's face and voice -> frames.

The steps follow the original (`WanAF2V.generate`), with two additions for long video:
a window can continue from frames carried over from the previous window (they become
known InP frames, and their latents are put back, re-noised, at every step, as
MultiTalk does), and both CFG passes run as one batched forward.

    1. conditions: text and negative text, CLIP tokens of the picture and of each face,
       wav2vec features of each voice (zeros for the unconditional pass)
    2. InP input: VAE latent of the known frames (the picture, or the carried frames) +
       the 4-channel mask (known frames, then the union of the faces)
    3. denoising loop: UniPC on the original's schedule, one guide scale
    4. decode
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from talkstudio.generators.anytalker.audio import frame_features
from talkstudio.generators.anytalker.masks import box_mask, expand, identity_masks, inpaint_mask
from talkstudio.generators.anytalker.sampling import guided, make_scheduler

VAE_STRIDE = (4, 8, 8)
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
class Components:
    transformer: object  # AnyTalkerTransformer
    vae: object  # diffusers AutoencoderKLWan
    wav2vec: object  # transformers Wav2Vec2Model
    text_encoder: object  # prompts -> per prompt [tokens, text_dim]
    image_encoder: object  # [B, 3, H, W] in [-1, 1] -> [B, 257, 1280] CLIP tokens
    dtype: object = None  # what the DiT computes in (None: float32)
    offload: bool = False  # encoders and VAE wait on the CPU while the DiT works
    prompts: dict = field(default_factory=dict)  # prompt -> its T5 embedding, kept on the CPU

    @contextmanager
    def using(self, module, device):
        """`module` on `device` for the block; back on the CPU after it when offloading."""
        if self.offload:
            module.to(device)
        try:
            yield module
        finally:
            if self.offload:
                module.to("cpu")
                _free_cached_gpu_memory()


@dataclass
class Window:
    image: np.ndarray  # [H, W, 3] uint8, at the model size
    faces: list  # per identity: (x, y, w, h) in the image
    voices: list  # per identity: 16 kHz mono float32, covering `frames` frames
    frames: int  # 4n + 1
    prompt: str = ""
    carried: np.ndarray | None = None  # [m, H, W, 3] uint8 frames this window starts with


def to_tensor(frames: np.ndarray):
    """[N, H, W, 3] uint8 -> [3, N, H, W] float in [-1, 1]."""
    import torch

    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def generate(components: Components, window: Window, steps: int = 40, shift: float = 3.0, guide: float = 4.5,
             seed: int = 0, device: str = "cpu"):
    """The window's frames, [frames, H, W, 3] uint8."""
    import torch

    height, width = window.image.shape[:2]
    latent_frames = (window.frames - 1) // VAE_STRIDE[0] + 1
    lat_h, lat_w = height // VAE_STRIDE[1], width // VAE_STRIDE[2]

    # 1. conditions (row 0: conditional, row 1: unconditional)
    text = _text(components, window.prompt, device)
    picture = to_tensor(window.image[None])[:, 0][None].to(device)
    masks = [expand(box_mask(face, width, height)) for face in window.faces]
    with components.using(components.image_encoder, device) as encode_image:
        clip = encode_image(picture).to(dtype=components.dtype).repeat(2, 1, 1)
        faces = [encode_image(_crop(picture, face)).to(dtype=components.dtype).repeat(2, 1, 1) for face in window.faces]
    audios = []
    with components.using(components.wav2vec, device) as wav2vec:
        for voice in window.voices:
            features = frame_features(wav2vec, voice, window.frames)[None].to(device)
            audios.append(torch.cat([features, torch.zeros_like(features)]))
    tokens = identity_masks(masks, lat_h, lat_w, latent_frames).to(device)
    token_masks = [row[None].repeat(2, 1) for row in tokens]

    # 2. InP input: known frames encoded, the rest zeros; mask: known frames, then the faces
    known = window.carried if window.carried is not None else window.image[None]
    video = torch.zeros(3, window.frames, height, width)
    video[:, :len(known)] = to_tensor(known)
    with components.using(components.vae, device) as vae:
        known_latents = _encode(vae, video[None].to(device))
    mask = inpaint_mask(masks, lat_h, lat_w, window.frames).to(device)
    carried_latents = (len(known) - 1) // VAE_STRIDE[0] + 1 if window.carried is not None else 0
    if carried_latents:
        mask[:, :carried_latents] = 1.0
    y = torch.cat([mask, known_latents[0]])[None].repeat(2, 1, 1, 1, 1)

    # 3. denoising loop
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 16, latent_frames, lat_h, lat_w, generator=generator).to(device)
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

    # 4. decode
    with components.using(components.vae, device) as vae:
        frames = _decode(vae, latent)
    return ((frames[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()


def _text(components: Components, prompt: str, device):
    """[2, tokens, dim]: the prompt and the negative prompt, each encoded once per process."""
    import torch

    missing = [p for p in (prompt, NEGATIVE_PROMPT) if p not in components.prompts]
    if missing:
        with components.using(components.text_encoder, device) as encode:
            for text, row in zip(missing, encode(missing)):
                components.prompts[text] = row.cpu()
    rows = [components.prompts[prompt], components.prompts[NEGATIVE_PROMPT]]
    # zero-padded to a common length (the DiT pads on to its text_len)
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True).to(device=device, dtype=components.dtype)


def _free_cached_gpu_memory():
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _crop(picture, face):
    """The face's square crop of a [1, 3, H, W] picture, for its CLIP tokens."""
    from talkstudio.generators.anytalker.masks import square_box

    x1, y1, x2, y2 = (int(v) for v in square_box(face, picture.shape[-1], picture.shape[-2]))
    return picture[..., y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def _latent_stats(vae, device):
    import torch

    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    return mean, std


def _encode(vae, video):
    """Normalised latents (mean removed, divided by std), as the DiT was trained on."""
    import torch

    mean, std = _latent_stats(vae, video.device)
    with torch.no_grad():
        return (vae.encode(video).latent_dist.mode() - mean) / std


def _decode(vae, latent):
    import torch

    mean, std = _latent_stats(vae, latent.device)
    with torch.no_grad():
        return vae.decode(latent * std + mean).sample
