"""Talking-video generators: one protocol for every backend, and the registry by name.

A backend declares what it is (`GeneratorInfo`: fps, chunk length, carried
motion frames, what it needs) and turns one `ChunkRequest` into the chunk's
frames. The timeline needs a backend's frame rate before any picture exists
(cues are given in its frames), so every declaration lives here and loading a
backend's code waits until it renders.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from talkstudio.stage import Stage


@dataclass(frozen=True)
class Option:
    """A backend setting, from `video.options` in the screenplay or `render --opt NAME=VALUE`."""

    name: str
    default: object  # None: chosen by the backend at run time ("auto")
    kind: type  # int, float, bool or str
    help: str
    minimum: float | None = None  # for numbers: the smallest value allowed
    exclusive_minimum: bool = False  # the minimum itself is not allowed
    multiple_of: int | None = None

    @property
    def allowed(self) -> str:
        """The bounds in words, for `doctor`; empty when there are none."""
        bounds = []
        if self.minimum is not None:
            bounds.append(f"> {self.minimum}" if self.exclusive_minimum else f">= {self.minimum}")
        if self.multiple_of is not None:
            bounds.append(f"a multiple of {self.multiple_of}")
        return ", ".join(bounds)

    def parse(self, value):
        """The value as this option's kind, in its bounds; ValueError with a plain message when it is not."""
        parsed = self._parse_kind(value)
        if parsed is None or self.kind not in (int, float):
            return parsed
        if self.minimum is not None and (parsed <= self.minimum if self.exclusive_minimum else parsed < self.minimum):
            more = f"more than {self.minimum}" if self.exclusive_minimum else f"{self.minimum} or more"
            raise ValueError(f"{self.name} must be {more}, not {value!r}")
        if self.multiple_of is not None and parsed % self.multiple_of:
            raise ValueError(f"{self.name} must be a multiple of {self.multiple_of}, not {value!r}")
        return parsed

    def _parse_kind(self, value):
        if value is None:  # `shift:` or `shift: null` in YAML: left to the backend, as `auto`
            return None
        if isinstance(value, str) and self.kind is not str:
            text = value.strip().lower()
            if text == "auto":
                return None
            if self.kind is bool:
                if text in ("true", "yes", "on", "1"):
                    return True
                if text in ("false", "no", "off", "0"):
                    return False
                raise ValueError(f"{self.name} is true, false or auto, not {value!r}")
            try:
                return self.kind(text)
            except ValueError:
                raise ValueError(f"{self.name} takes a{'n' if self.kind is int else ''} {self.kind.__name__}, "
                                 f"not {value!r}") from None
        if isinstance(value, bool) != (self.kind is bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{self.name} takes {self.kind.__name__}, not {value!r}")
        if self.kind is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{self.name} takes a whole number, not {value!r}")
        return self.kind(value)


@dataclass(frozen=True)
class GeneratorInfo:
    name: str
    fps: int
    summary: str
    needs_gpu: bool
    frame_num: int = 81  # frames per chunk, 4n+1
    motion_frames: int = 0  # frames of chunk k carried into chunk k+1
    chained: bool = False  # chunk k+1 is conditioned on chunk k's frames
    overlap: str = "drop"  # what stitching does with carried frames: "drop" or "crossfade"
    audio_context_s: float = 2.0  # audio needed before and after a window to draw it
    target: str | None = None  # "module:Class" of the implementation; None while it does not exist
    options: tuple[Option, ...] = ()
    colour_match: bool = False  # default of video.colour_match: generative backends drift in colour over chunks
    max_people: int | None = None  # on stage at once; None: any number
    min_people: int = 0  # on stage at once
    # the backend hears each voice over its whole scene (wav2vec over the track, sliced per window, as
    # the originals do): requests carry the scene's tracks, and a chunk's key their digest
    whole_track: bool = False

    def parse_options(self, values: dict) -> dict:
        """Settings by name, parsed; ValueError naming the unknown or bad one and what is allowed."""
        known = {option.name: option for option in self.options}
        parsed, bad = {}, []
        for name, value in values.items():
            if name not in known:
                allowed = ", ".join(known) or "none"
                bad.append(f"backend '{self.name}' has no option '{name}' (its options: {allowed})")
                continue
            try:
                parsed[name] = known[name].parse(value)
            except ValueError as error:
                bad.append(str(error))
        if bad:
            raise ValueError("; ".join(bad))
        return parsed


ANYTALKER_OPTIONS = (
    Option("steps", None, int, "denoising steps (auto: 40 for the 1.3B checkpoint, 20 for the 14B, as the "
           "original's README runs them; fewer for drafts)", minimum=1),
    Option("guide", 4.5, float, "guidance scale for text and audio together (1.0: none)", minimum=1.0),
    Option("shift", 3.0, float, "flow-matching schedule shift (3.0 at 480p)", minimum=0, exclusive_minimum=True),
    Option("max_area", 832 * 480, int, "pixels the model renders at; frames are scaled to the video size",
           minimum=32 * 32),
    Option("offload", None, bool, "keep T5, CLIP, VAE and wav2vec off the GPU while idle (auto: GPUs under 40 GiB)"),
    Option("vae_tiles", None, bool, "decode the VAE in overlapping tiles (auto: when a whole decode would not fit)"),
    Option("device", None, str, "torch device (auto: cuda when available)"),
)

MULTITALK_OPTIONS = (
    Option("steps", 40, int, "denoising steps (40; 8 or fewer with a distillation LoRA)", minimum=1),
    Option("text_guide", 5.0, float, "text guidance scale (1.0: none, two passes per step instead of three)",
           minimum=1.0),
    Option("audio_guide", 4.0, float, "audio guidance scale (3-5 keep lips in sync)", minimum=1.0),
    Option("shift", None, float, "schedule shift (auto: 7 at 480p, 11 at 720p)", minimum=0, exclusive_minimum=True),
    Option("resolution", 480, int, "480 or 720: the weights' resolution buckets (others scale 480's, for drafts)",
           minimum=64, multiple_of=16),
    Option("apg", False, bool, "adaptive projected guidance (against colour drift)"),
    Option("lora", None, str, "a distillation LoRA .safetensors merged into the DiT"),
    Option("lora_scale", 1.0, float, "strength of the LoRA"),
    Option("offload", None, bool, "keep T5, CLIP, VAE and wav2vec off the GPU while idle (auto: GPUs under 60 GiB)"),
    Option("vae_tiles", None, bool, "decode the VAE in overlapping tiles (auto: GPUs under 60 GiB)"),
    Option("device", None, str, "torch device (auto: cuda when available)"),
)

BINDYOURAVATAR_OPTIONS = (
    Option("steps", 50, int, "denoising steps (CogVideoX DPM; 50 as the original)", minimum=1),
    Option("guide", 7.0, float, "classifier-free guidance: text and voices together (the original's samples use 5-9)",
           minimum=1.0),
    Option("two_stage", None, bool, "render each window twice, the second time routed by SAM2.1's tracked face "
           "masks, as the original's default (auto: on when the sam2 package and its checkpoint are installed)"),
    Option("device", None, str, "torch device (auto: cuda when available)"),
)

GENERATORS: dict[str, GeneratorInfo] = {
    info.name: info
    for info in (
        GeneratorInfo("puppet", 25, "CPU portrait animation; the embedded default and draft preview",
                      needs_gpu=False, target="talkstudio.generators.puppet:PuppetGenerator"),
        GeneratorInfo("anytalker", 24, "AnyTalker: Wan2.1-Fun-1.3B-InP with identity-aware audio attention",
                      needs_gpu=True, motion_frames=5, chained=True, colour_match=True, whole_track=True,
                      target="talkstudio.generators.anytalker:create", options=ANYTALKER_OPTIONS),
        GeneratorInfo("multitalk", 25, "MultiTalk: Wan2.1-I2V-14B with L-RoPE speaker binding, 25 motion frames",
                      needs_gpu=True, motion_frames=25, chained=True, colour_match=True, max_people=2,
                      whole_track=True, target="talkstudio.generators.multitalk:create_multitalk", options=MULTITALK_OPTIONS),
        GeneratorInfo("infinitetalk", 25, "InfiniteTalk: MultiTalk's network kept on the stage picture, 9 pinned frames",
                      needs_gpu=True, motion_frames=9, chained=True, colour_match=True, max_people=2,
                      whole_track=True, target="talkstudio.generators.multitalk:create_infinitetalk", options=MULTITALK_OPTIONS),
        GeneratorInfo("bindyouravatar", 25, "Bind-Your-Avatar: CogVideoX-5B-I2V with face and audio modules and the "
                      "3D-mask embedding router; exactly two people, 49-frame windows", needs_gpu=True, frame_num=49,
                      motion_frames=1, chained=True, colour_match=True, max_people=2, min_people=2, whole_track=True,
                      target="talkstudio.generators.bindyouravatar:create", options=BINDYOURAVATAR_OPTIONS),
    )
}


def frame_rate(video) -> float:
    """A screenplay's frames per second: its own `video.fps`, else its backend's."""
    return video.fps or GENERATORS[video.backend].fps


# The voices handed to a generator have their voiced parts at this RMS level (dBFS), whatever the
# recording's or the TTS's own level, so backends can use absolute thresholds.
SPEECH_LEVEL_DB = -20.0


@dataclass
class ChunkRequest:
    """Everything that determines one chunk's frames."""

    stage: Stage  # the scene's picture and the face of each on-stage character
    audio: dict[str, np.ndarray]  # per on-stage speaker: voice (float32, mono) from `audio_start_frame` on
    rate: int
    phonemes: dict[str, list[tuple[str, float, float]]]  # per speaker, seconds from `audio_start_frame`
    fps: float
    start_frame: int  # first frame of the window, counted from the scene start
    frame_num: int
    audio_start_frame: int = 0  # scene frame where `audio` begins: the window's start minus the context
    prompt: str = ""
    seed: int = 0
    carried: np.ndarray | None = None  # last motion frames of the previous chunk (chained backends)
    audio_key: str = ""  # digest of `audio` and `phonemes`, so backends can reuse per-scene analysis
    # backends with `whole_track`: each on-stage voice over the whole scene (from its first frame, exactly
    # `track_frames` long), and its digest, under which a backend may keep what it computes from it
    track: dict[str, np.ndarray] | None = None
    track_frames: int = 0
    track_key: str = ""


class Generator(Protocol):
    info: GeneratorInfo

    def version(self) -> str:
        """Code and model identity: part of every chunk's cache key."""

    def generate(self, request: ChunkRequest) -> np.ndarray:
        """The window's frames: (frame_num, height, width, 3) uint8 RGB."""


@runtime_checkable
class StreamingGenerator(Protocol):
    """A backend that can hand frames over one at a time (each valid until the next is asked for)."""

    def frames(self, request: ChunkRequest) -> Iterator[np.ndarray]:
        """The window's frames, in order, as (height, width, 3) uint8 RGB."""


def audio_digest(audio: dict[str, np.ndarray], phonemes: dict) -> str:
    """Content hash of a request's voices and phonemes."""
    import hashlib

    import numpy

    digest = hashlib.sha256()
    for name in sorted(audio):
        digest.update(name.encode())
        digest.update(numpy.ascontiguousarray(audio[name], numpy.float32).tobytes())
    digest.update(repr(sorted(phonemes.items())).encode())
    return digest.hexdigest()


_instances: dict[tuple, Generator] = {}


def get_generator(name: str, **options) -> Generator:
    """The backend's implementation (made once per process and options); NotImplementedError for one
    that is declared but not built yet. `options` go to the backend's factory (e.g. models=DIR)."""
    info = GENERATORS[name]
    if info.target is None:
        raise NotImplementedError(f"backend '{name}' is not available in this version; use --backend puppet")
    key = (name, tuple(sorted((k, str(v)) for k, v in options.items() if v is not None)))
    if key not in _instances:
        module_name, _, attr = info.target.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        _instances[key] = factory(**{k: v for k, v in options.items() if v is not None})
    return _instances[key]
