"""Talking-video generators, by name, with what each declares about itself.

The timeline needs a backend's frame rate before any picture exists (cues are
expressed in its frames), so every backend's declaration lives here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratorInfo:
    name: str
    fps: int
    summary: str
    needs_gpu: bool


GENERATORS: dict[str, GeneratorInfo] = {
    info.name: info
    for info in (
        GeneratorInfo("puppet", 25, "CPU portrait animation; the embedded default and draft preview", needs_gpu=False),
        GeneratorInfo("anytalker", 24, "AnyTalker: Wan2.1-Fun-1.3B-InP with identity-aware audio attention", needs_gpu=True),
        GeneratorInfo("multitalk", 25, "MultiTalk / InfiniteTalk: Wan2.1-I2V-14B with L-RoPE speaker binding", needs_gpu=True),
    )
}
DEFAULT_GENERATOR = "puppet"
