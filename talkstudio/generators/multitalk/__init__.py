"""The `multitalk` and `infinitetalk` backends: talkstudio's chunk protocol around the MultiTalk window.

A chunk request becomes one window: the stage picture at the original's resolution bucket, each
on-stage person's wav2vec features for the window's frames (computed once over the whole scene
track, as the original's pass over the whole file), each person's region from our face binding
(in place of boxes typed by hand), and the frames carried from the previous chunk.

MultiTalk continues from the previous window's last 25 frames (re-noised at every step);
InfiniteTalk keeps the stage picture as frame 0 of every window and pins the last 9 frames.
Neither has the original's 1000-frame cap: chunks follow the timeline to its end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkstudio.generators import GENERATORS, ChunkRequest
from talkstudio.generators.anytalker.audio import TrackFeatures
from talkstudio.stage import cover

VERSION = "multitalk-1"  # 1: wav2vec over the whole scene track
LOW_MEMORY_GIB = 60  # the 14B DiT alone is ~28 GB in bf16: smaller GPUs keep the encoders and VAE off it
SHIFT = {480: 7.0, 720: 11.0}  # the originals' defaults per resolution
# a person's region around their face: the body below and some space either side (the original's
# boxes cover head and shoulders); two regions that meet are split halfway between the faces
REGION_SIDE, REGION_ABOVE = 1.5, 0.5


def create(models=None, device: str | None = None, backend: str = "multitalk", steps: int = 40,
           text_guide: float = 5.0, audio_guide: float = 4.0, shift: float | None = None, resolution: int = 480,
           apg: bool = False, lora: str | None = None, lora_scale: float = 1.0, offload: bool | None = None,
           vae_tiles: bool | None = None, fit: str = "cover") -> MultiTalkGenerator:
    """The backend from the official model folders (`--models DIR` or $TALKSTUDIO_MODELS).

    `fit` is how the stage picture is brought to the model size: "cover" (ours: area/cubic resampling,
    cropped around the picture's centre) or "original" (the original's bilinear resize and centre crop).
    """
    from pathlib import Path

    from talkstudio.generators.folders import weights_identity
    from talkstudio.generators.multitalk.models import load_transformer, locate
    from talkstudio.generators.wan_pipeline import gpu_gib, load_components, models_root, torch_device

    _check_lora(lora)
    if fit not in ("cover", "original"):
        raise ValueError(f"fit must be 'cover' or 'original', not {fit!r}")
    files = locate(models_root(backend, models), backend)
    device = torch_device(backend, device)
    low_memory = gpu_gib(device) < LOW_MEMORY_GIB
    components = load_components(files, load_transformer, device, low_memory if offload is None else offload)
    if lora:
        from talkstudio.generators.multitalk.lora import apply_lora

        apply_lora(components.transformer, Path(lora), lora_scale)
    if low_memory if vae_tiles is None else vae_tiles:
        components.vae.enable_tiling()
    shift = shift or (SHIFT[480] if resolution <= 480 else SHIFT[720])
    settings = Settings(backend, steps, text_guide, audio_guide, shift, resolution, apg,
                        lora, lora_scale, bool(components.vae.use_tiling), fit)
    return MultiTalkGenerator(components, settings, files.people, device, weights_identity(files))


def create_multitalk(**options) -> MultiTalkGenerator:
    return create(backend="multitalk", **options)


def create_infinitetalk(**options) -> MultiTalkGenerator:
    return create(backend="infinitetalk", **options)


def _check_lora(lora: str | None) -> None:
    from pathlib import Path

    from talkstudio.errors import InputError, Problem

    if lora and not Path(lora).is_file():
        raise InputError(Problem(f"lora {lora}: no such file", field="lora",
                                 hint="give the distillation LoRA's .safetensors file (video.options or --opt lora=FILE)"))


@dataclass(frozen=True)
class Settings:
    backend: str
    steps: int
    text_guide: float
    audio_guide: float
    shift: float
    resolution: int
    apg: bool
    lora: str | None
    lora_scale: float
    tiles: bool
    fit: str = "cover"  # or "original": see create()

    def identity(self) -> str:
        from talkstudio.cache import file_digest

        lora = f":lora={file_digest(self.lora)}*{self.lora_scale}" if self.lora else ""
        return (f"{VERSION}:{self.backend}:{self.steps}:{self.shift}:{self.text_guide}:{self.audio_guide}:"
                f"{self.resolution}:{'apg' if self.apg else ''}{lora}{':tiles' if self.tiles else ''}"
                f"{'' if self.fit == 'cover' else ':fit=' + self.fit}")


class MultiTalkGenerator:
    def __init__(self, components, settings: Settings, people: int = 2, device: str = "cpu", weights: str = ""):
        self.components, self.settings, self.people, self.device = components, settings, people, device
        self.info = GENERATORS[settings.backend]
        self.tracks = TrackFeatures()
        self.weights = weights  # weights_identity of the files it was loaded from

    def version(self) -> str:
        return f"{self.settings.identity()}:{self.weights}"

    def generate(self, request: ChunkRequest) -> np.ndarray:
        import torch

        from talkstudio.generators.multitalk.models import model_size
        from talkstudio.generators.multitalk.pipeline import Guidance, Window, generate

        height, width = request.stage.image.shape[:2]
        model_w, model_h = model_size(width, height, self.settings.resolution)
        fit = original_fit if self.settings.fit == "original" else cover
        image, (scale, dx, dy) = fit(request.stage.image, model_w, model_h)
        names = self._people(request)
        boxes = [_box(request.stage.faces[n].box, scale, dx, dy) for n in names]
        with self.components.using(self.components.wav2vec, self.device) as wav2vec:
            # nobody on stage: one silence
            audio = torch.stack([self.tracks.window(wav2vec, request, n) for n in names or [None]])
        carried = None
        if request.carried is not None:
            carried = np.stack([fit(frame, model_w, model_h)[0] for frame in request.carried])
        window = Window(image, person_regions(boxes, model_w, model_h) if len(names) == 2 else None, audio,
                        request.frame_num, request.prompt, carried, pinned=self.settings.backend == "infinitetalk")
        guidance = Guidance(self.settings.text_guide, self.settings.audio_guide, self.settings.apg)
        frames = generate(self.components, window, self.settings.steps, self.settings.shift, guidance,
                          request.seed, self.device)
        return np.stack([cover(frame, width, height)[0] for frame in frames])

    def _people(self, request: ChunkRequest) -> list[str]:
        from talkstudio.errors import InputError, Problem

        names = list(request.stage.faces)
        if len(names) > self.people:
            raise InputError(Problem(
                f"the {self.settings.backend} weights drive at most {self.people} "
                f"{'person' if self.people == 1 else 'people'} at once; this scene has {len(names)} on stage "
                f"({', '.join(names)})",
                hint="set the scene's cast: to fewer people, or use the multi-person weights or another backend"))
        return names


def person_regions(boxes, width: int, height: int) -> np.ndarray:
    """[3, H, W]: person 1's region, person 2's, then the background, from their face boxes."""
    regions = np.zeros((3, height, width), np.float32)
    centres = [x + w / 2 for x, _, w, _ in boxes]
    split = (centres[0] + centres[1]) / 2
    for i, (x, y, w, h) in enumerate(boxes):
        left, right = int(max(0, x + w / 2 - REGION_SIDE * w)), int(min(width, x + w / 2 + REGION_SIDE * w))
        if centres[i] < split:
            right = min(right, int(split))
        else:
            left = max(left, int(split))
        regions[i, int(max(0, y - REGION_ABOVE * h)):, left:right] = 1.0
    regions[2] = 1.0 - np.clip(regions[0] + regions[1], 0, 1)
    return regions


def original_fit(image: np.ndarray, width: int, height: int):
    """The picture as the originals bring it to their bucket (`resize_and_centercrop`): scaled by the larger
    factor to the sizes rounded up, bilinear (Pillow), centre-cropped with torchvision's rounding; returned
    with (scale, dx, dy) as `cover` returns them."""
    import math

    from PIL import Image

    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    scaled_h, scaled_w = math.ceil(scale * h), math.ceil(scale * w)
    scaled = np.asarray(Image.fromarray(image).resize((scaled_w, scaled_h), resample=Image.BILINEAR))
    top, left = int(round((scaled_h - height) / 2.0)), int(round((scaled_w - width) / 2.0))
    return scaled[top:top + height, left:left + width].copy(), (scale, -left, -top)


def box_regions(boxes, source_height: int, source_width: int, width: int, height: int) -> np.ndarray:
    """[3, H, W]: regions from boxes typed by hand, as the original's `bbox` input makes them: each box is
    [top, left, bottom, right] in source pixels (its JSON names them x_min, y_min, x_max, y_max but indexes
    rows first), the background is where no box is, and the masks follow the picture through
    `original_fit` (nearest-neighbour)."""
    import math

    import torch
    import torch.nn.functional as F

    masks = torch.zeros(3, source_height, source_width)
    for i, (top, left, bottom, right) in enumerate(boxes):
        masks[i, int(top):int(bottom), int(left):int(right)] = 1
    masks[2] = (masks[0] + masks[1] == 0).float()
    scale = max(height / source_height, width / source_width)
    scaled_h, scaled_w = math.ceil(scale * source_height), math.ceil(scale * source_width)
    scaled = F.interpolate(masks[None], size=(scaled_h, scaled_w), mode="nearest")[0]
    top, left = int(round((scaled_h - height) / 2.0)), int(round((scaled_w - width) / 2.0))
    return scaled[:, top:top + height, left:left + width].numpy()



def _box(box, scale, dx, dy):
    x, y, w, h = box
    return x * scale + dx, y * scale + dy, w * scale, h * scale
