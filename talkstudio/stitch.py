"""Stage 6: joining chunk frames into one stream without visible seams.

A chained backend re-creates the frames it carries from the previous chunk.
With overlap "drop" those copies are dropped; with "crossfade" the previous
chunk holds its last frames back and the next chunk blends its copies into
them. Optional colour matching pulls each chunk's colour statistics to the
stage image, the usual cure for slow colour drift in long generated videos.
"""

from __future__ import annotations

import numpy as np

from talkstudio.plan import ChunkSpan


def stitch(frames: np.ndarray, span: ChunkSpan, mode: str, motion_frames: int, last: bool,
           previous_tail: np.ndarray | None = None) -> np.ndarray:
    """The frames this chunk adds to the video, in order.

    `previous_tail` is the previous window's last `motion_frames` frames (what it carried over).
    """
    start, end = span.keep_from, span.keep_to
    head = frames[:0]
    if mode == "crossfade":
        if start:
            if previous_tail is None or len(previous_tail) != start:
                raise ValueError("a cross-faded chunk needs the previous chunk's last frames")
            head = crossfade(previous_tail, frames[:start])
        if not last:
            end -= motion_frames  # held back: the next chunk fades into them
    return np.concatenate([head, frames[start:end]]) if len(head) else frames[start:end]


def crossfade(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Blend two equally long frame runs, from all `first` to all `second`."""
    count = len(first)
    weights = ((np.arange(count) + 1) / (count + 1)).reshape(-1, 1, 1, 1)
    return (first.astype(np.float32) * (1 - weights) + second.astype(np.float32) * weights).round().astype(np.uint8)


def colour_match(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each Lab channel's mean and spread over the chunk moved to the reference image's (as MultiTalk's
    colour correction, but with one transfer for the whole chunk, so frames within it cannot flicker)."""
    import cv2

    lab = cv2.cvtColor(frames.reshape(-1, frames.shape[2], 3).astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(reference.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    mean, std = lab.mean(axis=(0, 1)), lab.std(axis=(0, 1)) + 1e-6
    ref_mean, ref_std = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1)) + 1e-6
    moved = cv2.cvtColor((lab - mean) * (ref_std / std) + ref_mean, cv2.COLOR_LAB2RGB)
    return np.clip(moved * 255, 0, 255).round().astype(np.uint8).reshape(frames.shape)
