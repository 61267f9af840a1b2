"""Stage 4: the chunk plan. Each scene is cut into windows of `frame_num` frames (4n+1).

A chained backend carries the last `motion_frames` frames of window k into
window k+1, so each later window adds `frame_num - motion_frames` new frames.
Scenes are independent: nothing is carried across a cut. The last window runs
past the scene's end (its audio is padded with silence) and is trimmed.
"""

from __future__ import annotations

from dataclasses import dataclass

from talkstudio.errors import InputError, Problem
from talkstudio.generators import GeneratorInfo


@dataclass(frozen=True)
class ChunkSpan:
    scene: str
    index: int  # within the scene
    start: int  # first frame of the window, from the scene start
    frame_num: int  # frames the generator makes for this window
    keep_from: int  # window frames before this one are carried from the previous chunk
    keep_to: int  # window frames from this one on lie past the scene's end

    @property
    def new_frames(self) -> range:
        """The scene frames this chunk contributes to the video."""
        return range(self.start + self.keep_from, self.start + self.keep_to)


MAX_FRAME_NUM = 1001  # a window's frames are held at once by non-streaming backends


def check_frame_num(frame_num: int, motion_frames: int) -> None:
    if frame_num < 5 or (frame_num - 1) % 4 or frame_num > MAX_FRAME_NUM:
        raise InputError(Problem(f"chunk length {frame_num} is not of the form 4n+1 (5, 9, ..., 81, ..., "
                                 f"{MAX_FRAME_NUM})",
                                 hint="use --frame-num 81 or another 4n+1 number"))
    if motion_frames >= frame_num:
        raise InputError(Problem(f"chunk length {frame_num} must exceed the {motion_frames} carried motion frames",
                                 hint="use a longer --frame-num"))


def plan_scene(scene: str, frames: int, frame_num: int, motion_frames: int) -> list[ChunkSpan]:
    """Windows covering `frames` frames, each later one starting `frame_num - motion_frames` after the last."""
    check_frame_num(frame_num, motion_frames)
    step = frame_num - motion_frames
    spans, start, index = [], 0, 0
    while True:
        keep_from = 0 if index == 0 else motion_frames
        keep_to = min(frame_num, frames - start)
        spans.append(ChunkSpan(scene, index, start, frame_num, keep_from, keep_to))
        if start + frame_num >= frames:
            return spans
        start += step
        index += 1


def scene_plans(screenplay, timeline, info: GeneratorInfo, frame_num: int | None = None) -> list[list[ChunkSpan]]:
    """Each scene's windows, from the timeline's scene lengths in frames."""
    motion = info.motion_frames if info.chained else 0
    return [plan_scene(scene.id, span.end_frame - span.start_frame, info.frame_num if frame_num is None else frame_num, motion)
            for scene, span in zip(screenplay.scenes, timeline.scenes)]
