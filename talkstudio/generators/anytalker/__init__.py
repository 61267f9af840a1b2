"""The `anytalker` backend: talkstudio's chunk protocol around the AnyTalker window pipeline.

A chunk request becomes one window: the stage picture at the model's size (the
original's area rule), each on-stage character's face and the window's frames of
their voice's wav2vec features (computed over the whole scene track once, as the
original computes them over the whole track), and for chunks after the first the
frames carried from the previous chunk. The frames come back at the video's size.
"""

from __future__ import annotations

import numpy as np

from talkstudio.generators import GENERATORS, ChunkRequest
from talkstudio.generators.anytalker.audio import TrackFeatures
from talkstudio.generators.anytalker.models import model_size
from talkstudio.stage import cover

VERSION = "anytalker-1"  # 1: wav2vec over the whole scene track
LOW_MEMORY_GIB = 40  # GPUs smaller than this get offloading and tiled VAE decoding by default


STEPS = {"1.3B": 40, "14B": 20}  # the original's README commands (its script's own default is 20 for both)


def create(models=None, device: str | None = None, steps: int | None = None, guide: float = 4.5, shift: float = 3.0,
           max_area: int = 832 * 480, offload: bool | None = None, vae_tiles: bool | None = None) -> AnyTalkerGenerator:
    """The backend from the official model folders (`--models DIR` or $TALKSTUDIO_MODELS).

    `offload` and `vae_tiles` left to auto turn on for GPUs under LOW_MEMORY_GIB: the 1.3B DiT
    in bf16 needs ~3 GB, but T5-XXL holds ~11 GB and a whole-window VAE decode at 480p peaks
    at several GB more, which is what does not fit on 24 GB cards.
    """
    from talkstudio.generators.anytalker.models import load_transformer, locate
    from talkstudio.generators.folders import weights_identity
    from talkstudio.generators.wan_pipeline import gpu_gib, load_components, models_root, torch_device

    root = models_root("anytalker", models)
    variant = _variant(root)
    files = locate(root, variant)
    steps = steps or STEPS[variant]
    device = torch_device("anytalker", device)
    low_memory = gpu_gib(device) < LOW_MEMORY_GIB
    offload = low_memory if offload is None else offload
    vae_tiles = low_memory if vae_tiles is None else vae_tiles
    components = load_components(files, load_transformer, device, offload=offload)
    if vae_tiles:
        components.vae.enable_tiling()
    return AnyTalkerGenerator(components, steps, shift, guide, max_area, device, vae_tiles, weights_identity(files))


class AnyTalkerGenerator:
    info = GENERATORS["anytalker"]

    def __init__(self, components, steps: int = 40, shift: float = 3.0, guide: float = 4.5,
                 max_area: int = 832 * 480, device: str = "cpu", vae_tiles: bool = False, weights: str = ""):
        self.components, self.device = components, device
        self.steps, self.shift, self.guide, self.max_area = steps, shift, guide, max_area
        self.vae_tiles = vae_tiles
        self.tracks = TrackFeatures()
        self.weights = weights  # weights_identity of the files it was loaded from

    def version(self) -> str:
        # tiled decoding blends tile seams, so its frames differ slightly from a whole decode
        tiles = ":tiles" if self.vae_tiles else ""
        return f"{VERSION}:{self.steps}:{self.shift}:{self.guide}:{self.max_area}{tiles}:{self.weights}"

    def generate(self, request: ChunkRequest) -> np.ndarray:
        from talkstudio.generators.anytalker.pipeline import Window, generate

        height, width = request.stage.image.shape[:2]
        model_w, model_h = model_size(width, height, self.max_area)
        image, (scale, dx, dy) = cover(request.stage.image, model_w, model_h)
        names = list(request.stage.faces)
        faces = [_box(request.stage.faces[n].box, scale, dx, dy) for n in names]
        with self.components.using(self.components.wav2vec, self.device) as wav2vec:
            audio = [self.tracks.window(wav2vec, request, n) for n in names]
        carried = None
        if request.carried is not None:
            carried = np.stack([cover(frame, model_w, model_h)[0] for frame in request.carried])
        window = Window(image, faces, audio, request.frame_num, request.prompt, carried)
        frames = generate(self.components, window, self.steps, self.shift, self.guide, request.seed, self.device)
        return np.stack([cover(frame, width, height)[0] for frame in frames])


def _variant(root) -> str:
    """The 1.3B checkpoint when it is there; the 14B multi-person one when only it was downloaded."""
    from talkstudio.generators.anytalker.models import VARIANTS

    folder = root / "AnyTalker"
    if (folder / VARIANTS["1.3B"][0]).exists() or not (folder / VARIANTS["14B"][0]).exists():
        return "1.3B"
    return "14B"



def _box(box, scale, dx, dy):
    x, y, w, h = box
    return x * scale + dx, y * scale + dy, w * scale, h * scale
