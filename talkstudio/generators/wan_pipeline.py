"""Pipeline parts every Wan-based talking backend shares: the networks and where they live, pictures
as tensors, VAE latents in the normalisation the DiTs were trained on, and prompt embeddings."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VAE_STRIDE = (4, 8, 8)
MODELS_ENV = "TALKSTUDIO_MODELS"  # the model folders when --models is not given


@dataclass
class Components:
    transformer: object  # the DiT
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
                free_cached_gpu_memory()


def to_tensor(frames: np.ndarray):
    """[N, H, W, 3] uint8 -> [3, N, H, W] float in [-1, 1]."""
    import torch

    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def encode_prompts(components: Components, prompt: str, negative: str, device):
    """[2, tokens, dim]: the prompt and the negative prompt, each encoded once per process."""
    import torch

    missing = [p for p in (prompt, negative) if p not in components.prompts]
    if missing:
        with components.using(components.text_encoder, device) as encode:
            for text, row in zip(missing, encode(missing)):
                components.prompts[text] = row.cpu()
    rows = [components.prompts[prompt], components.prompts[negative]]
    # zero-padded to a common length (the DiT pads on to its text_len)
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True).to(device=device, dtype=components.dtype)


def free_cached_gpu_memory():
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _latent_stats(vae, device):
    import torch

    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    return mean, std


def encode_latents(vae, video):
    """Normalised latents (mean removed, divided by std), as the DiT was trained on."""
    import torch

    mean, std = _latent_stats(vae, video.device)
    with torch.no_grad():
        return (vae.encode(video).latent_dist.mode() - mean) / std


def decode_latents(vae, latent):
    import torch

    mean, std = _latent_stats(vae, latent.device)
    with torch.no_grad():
        return vae.decode(latent * std + mean).sample


def load_components(files, load_transformer, device: str, offload: bool = False) -> Components:
    """The DiT (`load_transformer(files, device, dtype)`) and the Wan encoders, VAE and wav2vec from the
    official files (T5 and CLIP in their original precisions; the DiT in bf16 on a GPU).

    With `offload` the encoders and the VAE are loaded on the CPU and visit the device only while
    they work, so the GPU holds little more than the DiT.
    """
    import torch

    from talkstudio.generators.anytalker.audio import load_wav2vec
    from talkstudio.generators.anytalker.image_encoder import load_image_encoder
    from talkstudio.generators.anytalker.text_encoder import load_text_encoder
    from talkstudio.generators.anytalker.vae import load_wan_vae

    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    resting = "cpu" if offload else device
    return Components(
        transformer=load_transformer(files, device, dtype),
        vae=load_wan_vae(files.vae, resting),
        wav2vec=load_wav2vec(files.wav2vec, resting),
        text_encoder=load_text_encoder(files.t5, files.t5_tokenizer, resting),
        image_encoder=load_image_encoder(files.clip, resting, torch.float16 if cuda else None),
        dtype=dtype, offload=offload,
    )


def models_root(backend: str, models) -> Path:
    """The folder holding a backend's model folders: --models DIR, else $TALKSTUDIO_MODELS."""
    import os

    from talkstudio.errors import InputError, Problem

    root = models or os.environ.get(MODELS_ENV)
    if not root:
        raise InputError(Problem(f"the {backend} backend needs its model folders",
                                 hint=f"pass --models DIR (or set {MODELS_ENV}); `talkstudio doctor` lists what is needed"))
    return Path(root)


def torch_device(backend: str, device: str | None) -> str:
    """The torch device to run on ("auto" or None: cuda when there is one); an InputError without torch."""
    from talkstudio.errors import InputError, Problem

    try:
        import torch
    except ImportError:
        raise InputError(Problem(f"the {backend} backend needs torch",
                                 hint="pip install 'talkstudio[anytalker]'")) from None
    return device if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")


def gpu_gib(device: str) -> float:
    """Memory of the device's GPU in GiB; infinite for the CPU, where nothing is offloaded."""
    import torch

    if not device.startswith("cuda"):
        return float("inf")
    return torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30

