"""Bind-Your-Avatar's two-stage mode: render a window, track the two faces through it, render it again with
the tracked face masks as fixed identity routing.

The original (`--two_stage_generate`, on in its default config) does this for every clip:

    1. pass 1: the ordinary router-driven generation
    2. SAM2.1-L's video predictor, prompted on frame 0 of pass 1's video with each face's box and five
       landmarks (faces left to right, each tracked on its own), gives each face's mask in every frame
    3. the masks, resized to the latent token grid, become one-hot routing per token: face 1, face 2 (which
       wins where both are) or neither
    4. pass 2: the same window again with that routing in place of the router's, drawing on from pass 1's
       random generator (it is not seeded again), and pass 2's frames are the clip

Here the faces are found again on pass 1's first frame, as the original does (it runs InsightFace's
buffalo_l there; we use the face mesh every backend binds with): each stage face takes the detected face
nearest to it, and keeps its stage geometry (moved to the model size) when none is near. Then
the frames go to SAM2 as JPEG files written from pass 1's 8-bit frames (the original writes an mp4 and
extracts JPEGs from it with supervision's ImageSink: cv2.imwrite at OpenCV's default quality, as here).
SAM2 is the `sam2` package (1.1.0) with the checkpoint in the models folder; nothing is downloaded at run
time. On the CPU SAM2.1-L is slow (seconds a frame); `--opt two_stage=false` renders one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from talkstudio.errors import InputError, Problem

if TYPE_CHECKING:
    import torch

SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"  # in the sam2 package, as the original's sam2_tools.py


@dataclass(frozen=True)
class FacePrompt:
    """One face on frame 0, in the frames' pixels: its box (x0, y0, x1, y1) and five landmarks [5, 2]
    (RetinaFace order: eyes image-left first, nose, mouth corners)."""

    box: tuple[float, float, float, float]
    points: np.ndarray


def face_prompt(face) -> FacePrompt:
    """The prompt for a talkstudio FaceGeometry (already in the frames' pixels)."""
    from talkstudio.generators.bindyouravatar.identity import five_points

    x, y, w, h = face.box
    return FacePrompt((float(x), float(y), float(x + w), float(y + h)), five_points(face))


def found_again(frame: np.ndarray, faces: Sequence[FacePrompt]) -> list[FacePrompt]:
    """Each face's prompt from the face detected on `frame` nearest its own box centre (within its width),
    else the prompt it had: a chained window's people may have moved since the stage picture."""
    from talkstudio.faces import detect_faces

    detected = [face_prompt(face) for face in detect_faces(np.ascontiguousarray(frame))]
    prompts = []
    for face in faces:
        centre, width = _centre(face.box), face.box[2] - face.box[0]
        near = [(float(np.hypot(*(_centre(d.box) - centre))), d) for d in detected]
        near = [item for item in near if item[0] <= width]
        prompts.append(min(near, key=lambda item: item[0])[1] if near else face)
    return prompts


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


class MaskTracker(Protocol):
    def track(self, frames: np.ndarray, faces: Sequence[FacePrompt]) -> np.ndarray:
        """frames [n, H, W, 3] uint8 RGB; faces prompted on frame 0 -> masks [len(faces), n, H, W] bool."""


def routing_from_masks(masks, grid) -> torch.Tensor:
    """[1, tokens, 2] one-hot identity routing from face masks [2, frames, H, W] (bool or numbers, > 0 is the
    face) on the latent token grid (latent frames, rows, columns), as the original's
    process_masks_to_routing_logits: each mask trilinearly resized to the grid (align_corners=False), > 0.5;
    [1, 0] for face 1, [0, 1] for face 2 (which overrides face 1), [0, 0] for neither; tokens frame by frame,
    row by row."""
    import torch
    import torch.nn.functional as F

    masks = torch.as_tensor(masks)
    if masks.ndim != 4 or masks.shape[0] != 2:
        raise ValueError(f"masks must be [2, frames, H, W], not {tuple(masks.shape)}")
    grid = tuple(int(n) for n in grid)
    inside = [F.interpolate((mask > 0).float()[None, None], size=grid, mode="trilinear", align_corners=False)[0, 0]
              > 0.5 for mask in masks]
    second = inside[1].reshape(-1)
    first = inside[0].reshape(-1) & ~second
    return torch.stack([first, second], dim=-1).float()[None]


def token_grid(components, window) -> tuple[int, int, int]:
    """(latent frames, rows, columns) of the window's video tokens."""
    from talkstudio.generators.bindyouravatar.pipeline import VAE_SPATIAL, VAE_TEMPORAL

    height, width = window.image.shape[:2]
    side = VAE_SPATIAL * components.transformer.config.patch_size
    return (window.frames - 1) // VAE_TEMPORAL + 1, height // side, width // side


def generate_two_pass(components, window, tracker: MaskTracker, faces: Sequence[FacePrompt], steps: int = 50,
                      guide: float = 7.0, seed: int = 2025, device: str = "cpu") -> np.ndarray:
    """Pass 2's frames [frames, H, W, 3] uint8: pass 1 with the router, its faces tracked, pass 2 with their
    masks as the routing, continuing pass 1's generator."""
    import torch

    from talkstudio.generators.bindyouravatar import pipeline

    generator = torch.Generator().manual_seed(seed)  # one generator for both passes, as the original's
    first = pipeline.denoise(components, window, steps, guide, seed, device, generator=generator)
    first = pipeline.to_pixels(pipeline.decode(components, first, device))
    masks = tracker.track(first, found_again(first[0], faces))
    routing = routing_from_masks(masks, token_grid(components, window))
    second = pipeline.denoise(components, replace(window, routing=routing), steps, guide, seed, device,
                              generator=generator)
    return pipeline.to_pixels(pipeline.decode(components, second, device))


# ---- SAM2 ----------------------------------------------------------------------------------------------


def sam2_missing(checkpoint: Path | None) -> list[str]:
    """What the two-stage mode lacks here (empty: it can run): the sam2 package, its checkpoint."""
    missing = []
    try:
        import sam2.build_sam  # noqa: F401
    except Exception as error:  # noqa: BLE001 - not installed, or installed without hydra-core / iopath
        missing.append(f"the sam2 package ({type(error).__name__}: {error})")
    if checkpoint is None or not Path(checkpoint).is_file():
        missing.append("SAM2.1-L's checkpoint Bindyouravatar/sam2/sam2.1_hiera_large.pt")
    return missing


def load_tracker(files, device: str) -> Sam2Tracker:
    """The SAM2 tracker on the models folder's checkpoint; InputError saying how to get what is missing."""
    from talkstudio.generators.bindyouravatar.models import DOWNLOADS

    missing = sam2_missing(files.sam2)
    if missing:
        hints = []
        if any(m.startswith("the sam2 package") for m in missing):
            # its video predictor needs neither torchvision nor the CUDA extension; --no-deps keeps pip from
            # replacing torch, --no-build-isolation from fetching another one to build with
            hints.append("pip install hydra-core iopath && pip install --no-deps --no-build-isolation sam2==1.1.0")
        if files.sam2 is None or not Path(files.sam2).is_file():
            hints.append(DOWNLOADS["sam2"].replace("DIR", str(files.root)))
        raise InputError(Problem("bindyouravatar's two_stage mode needs SAM2; missing: " + "; ".join(missing),
                                 hint="; ".join(hints) + " (or render with --opt two_stage=false)"))
    return Sam2Tracker(files.sam2, device)


class Sam2Tracker:
    """SAM2.1's video predictor as the original's tools/sam2_tools.py drives it: one inference state over the
    frames (JPEG files, as it reads them), then for each face in turn: reset, prompt frame 0 with the box and
    the five landmarks as positive points (object id 1, 2, ...), propagate forward over every frame, mask =
    logits > 0 at the frames' size. On CUDA it runs under bf16 autocast with TF32 matmuls on Ampere and newer,
    as that script does."""

    def __init__(self, checkpoint: Path | None, device: str = "cpu", config: str = SAM2_CONFIG,
                 overrides: Sequence[str] = (), predictor=None):
        self.checkpoint, self.device, self.config, self.overrides = checkpoint, device, config, list(overrides)
        self._predictor = predictor

    @property
    def predictor(self):
        if self._predictor is None:
            from sam2.build_sam import build_sam2_video_predictor

            self._predictor = build_sam2_video_predictor(
                self.config, str(self.checkpoint) if self.checkpoint is not None else None, device=self.device,
                hydra_overrides_extra=self.overrides)
        return self._predictor

    def track(self, frames: np.ndarray, faces: Sequence[FacePrompt]) -> np.ndarray:
        import tempfile

        import torch

        frames = np.asarray(frames)
        masks = np.zeros((len(faces), *frames.shape[:3]), dtype=bool)
        predictor = self.predictor
        with (tempfile.TemporaryDirectory(prefix="talkstudio-sam2-") as folder, self._precision(),
              torch.inference_mode()):
            _write_jpegs(frames, Path(folder))
            state = predictor.init_state(video_path=folder)
            for k, face in enumerate(faces):
                predictor.reset_state(state)
                predictor.add_new_points_or_box(
                    inference_state=state, frame_idx=0, obj_id=k + 1,
                    box=np.asarray(face.box, dtype=np.float32),
                    points=np.asarray(face.points, dtype=np.float32),
                    labels=np.ones(len(face.points), dtype=np.int32))
                for index, ids, logits in predictor.propagate_in_video(state, start_frame_idx=0):
                    masks[k, index] = (logits[list(ids).index(k + 1)] > 0.0)[0].cpu().numpy()
        return masks

    def _precision(self):
        """bf16 autocast and TF32 on CUDA (restored afterwards: the DiT shares the process); nothing elsewhere."""
        import contextlib

        import torch

        if not str(self.device).startswith("cuda"):
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        if torch.cuda.get_device_properties(torch.device(self.device)).major >= 8:
            matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

            def restore():
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn

            stack.callback(restore)
        stack.enter_context(torch.autocast(device_type="cuda", dtype=torch.bfloat16))
        return stack


def _write_jpegs(frames: np.ndarray, folder: Path) -> None:
    """00000.jpg, 00001.jpg, ...: what sam2's predictor reads, written as the original's frame extraction
    writes them (cv2.imwrite, default quality)."""
    import cv2

    for index, frame in enumerate(frames):
        if not cv2.imwrite(str(folder / f"{index:05d}.jpg"), np.ascontiguousarray(frame[..., ::-1])):
            raise OSError(f"could not write the frames for SAM2 into {folder}")
