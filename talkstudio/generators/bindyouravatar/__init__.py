"""The `bindyouravatar` backend: talkstudio's chunk protocol around the Bind-Your-Avatar window.

A chunk request becomes one 49-frame window at the model's 480x720:
  - the two on-stage people, ordered left to right; voice k is face k's (speaker matrix eye(2));
  - each face's identity (InsightFace antelopev2 + EVA02-CLIP features, `identity.py`) from the stage
    picture, computed once per stage; the first-frame condition is the original's white canvas with the two
    faces on it;
  - the inpainting frame: the stage picture for a scene's first chunk, the previous chunk's last frame
    after that, so chunks chain (the original renders one 49-frame clip; its inpainting frame is how a
    scene's picture reaches it); the carried frame is dropped when stitching;
  - each voice's wav2vec2-base-960h rows, one per frame with two of context each side, computed once over
    the whole scene track (as Hallo, whose audio code Bind-Your-Avatar's audio module follows) and sliced;
  - with `two_stage` (the original's default: on when SAM2 is installed and its checkpoint downloaded) the
    window is rendered twice, the second time with SAM2's tracked face masks as the routing (two_stage.py).
"""

from __future__ import annotations

import numpy as np

from talkstudio.generators import GENERATORS, ChunkRequest
from talkstudio.generators.anytalker.audio import TrackFeatures
from talkstudio.stage import cover

VERSION = "bindyouravatar-1"
MODEL_SIZE = (720, 480)  # width, height: the router's position table and the training size
CONTEXT_ROWS = 2  # audio rows either side of a frame


def create(models=None, device: str | None = None, steps: int = 50, guide: float = 7.0,
           two_stage: bool | None = None) -> BindYourAvatarGenerator:
    """The backend from the released folders (`--models DIR` or $TALKSTUDIO_MODELS). two_stage None: on when
    the sam2 package imports and the folder holds its checkpoint; True without them is an InputError."""
    from talkstudio.generators.bindyouravatar import two_stage as stages
    from talkstudio.generators.bindyouravatar.models import locate
    from talkstudio.generators.folders import weights_identity
    from talkstudio.generators.wan_pipeline import models_root, torch_device

    files = locate(models_root("bindyouravatar", models))
    device = torch_device("bindyouravatar", device)
    if two_stage is None:  # the checkpoint first: without it sam2 is not even imported
        two_stage = files.sam2 is not None and not stages.sam2_missing(files.sam2)
    tracker = stages.load_tracker(files, device) if two_stage else None  # before the big models load
    return BindYourAvatarGenerator(load_components(files, device), steps, guide, device, tracker=tracker,
                                   weights=weights_identity(files))


def load_components(files, device: str):
    """Every network of the backend, on `device` (bf16 on a GPU, float32 on the CPU)."""
    import json

    import torch
    from diffusers import AutoencoderKLCogVideoX
    from transformers import AutoTokenizer, T5EncoderModel

    from talkstudio.generators.anytalker.audio import load_wav2vec
    from talkstudio.generators.bindyouravatar.identity import load_identity_encoders
    from talkstudio.generators.bindyouravatar.models import load_transformer
    from talkstudio.generators.bindyouravatar.pipeline import Components

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    transformer = load_transformer(files, dtype=dtype).to(device)
    vae = AutoencoderKLCogVideoX.from_pretrained(str(files.vae), torch_dtype=dtype).to(device).eval()
    components = Components(
        transformer=transformer, vae=vae,
        scheduler=json.loads((files.scheduler / "scheduler_config.json").read_text()),
        tokenizer=AutoTokenizer.from_pretrained(str(files.tokenizer), local_files_only=True),
        text_encoder=T5EncoderModel.from_pretrained(str(files.text_encoder), torch_dtype=dtype).to(device).eval(),
        dtype=dtype, wav2vec=load_wav2vec(files.wav2vec, device),
        identity=load_identity_encoders(files.eva_clip, files.antelope, files.parsing, device))
    return components


class BindYourAvatarGenerator:
    info = GENERATORS["bindyouravatar"]

    def __init__(self, components, steps: int = 50, guide: float = 7.0, device: str = "cpu", tracker=None,
                 weights: str = ""):
        self.components, self.steps, self.guide, self.device = components, steps, guide, device
        self.tracker = tracker  # a two_stage.MaskTracker: the two-stage mode; None: one pass
        self.tracks = TrackFeatures()
        self._identities: dict[str, tuple] = {}  # stage key -> (faces, first-frame condition)
        self.weights = weights  # weights_identity of the files it was loaded from

    def version(self) -> str:
        two_stage = ":two_stage" if self.tracker is not None else ""
        return f"{VERSION}:{self.steps}:{self.guide}{two_stage}:{self.weights}"

    def generate(self, request: ChunkRequest) -> np.ndarray:
        from talkstudio.generators.bindyouravatar.pipeline import Window, generate

        height, width = request.stage.image.shape[:2]
        names = two_people(request)
        picture, transform = cover(request.stage.image, *MODEL_SIZE)
        moved = [request.stage.faces[n].transformed(*transform) for n in names]  # at the model size
        faces, condition = self._identity(request.stage.key, picture, moved)
        background = picture if request.carried is None else cover(request.carried[-1], *MODEL_SIZE)[0]
        window = Window(condition, faces, self._audio(request, names), np.eye(2, dtype=np.float32), background,
                        request.frame_num, request.prompt)
        if self.tracker is None:
            frames = generate(self.components, window, self.steps, self.guide, request.seed, self.device)
        else:
            from talkstudio.generators.bindyouravatar.two_stage import face_prompt, generate_two_pass

            frames = generate_two_pass(self.components, window, self.tracker, [face_prompt(f) for f in moved],
                                       self.steps, self.guide, request.seed, self.device)
        return np.stack([cover(frame, width, height)[0] for frame in frames])

    def _identity(self, stage_key: str, picture, faces):
        """The two faces' identity inputs and the first-frame condition, once per stage (`faces` in `picture`)."""
        import torch

        from talkstudio.generators.bindyouravatar.identity import condition_image, five_points

        if stage_key not in self._identities:
            encoded = [self.components.identity.encode(picture, five_points(face)) for face in faces]
            embeddings = torch.stack([torch.as_tensor(e[0]).reshape(-1) for e in encoded])
            levels = [torch.stack([torch.as_tensor(e[1][level]) for e in encoded]) for level in range(5)]
            condition = cover(condition_image(encoded[0][2], encoded[1][2]), *MODEL_SIZE)[0]  # made at 720x480
            self._identities[stage_key] = ((embeddings, levels), condition)
        return self._identities[stage_key]

    def _audio(self, request: ChunkRequest, names):
        """[2, frames + 4, layers, channels]: each voice's rows for the window, two either side (clamped at the
        scene's ends)."""
        import torch

        wav2vec = self.components.wav2vec
        index = torch.arange(request.start_frame - CONTEXT_ROWS, request.start_frame + request.frame_num + CONTEXT_ROWS)
        rows = []
        for name in names:
            track = self.tracks.track(wav2vec, request, name)
            rows.append(track[index.clamp(0, len(track) - 1)])
        return torch.stack(rows)


def two_people(request: ChunkRequest) -> list[str]:
    """The on-stage people, left to right; an InputError unless there are exactly two."""
    from talkstudio.errors import InputError, Problem

    names = sorted(request.stage.faces, key=lambda n: request.stage.faces[n].centre[0])
    if len(names) != 2:
        raise InputError(Problem(f"bindyouravatar drives exactly two people; this scene has {len(names)} on stage",
                                 hint="list two people in the scene's cast:, or render it with another backend"))
    return names

