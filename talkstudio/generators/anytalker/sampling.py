"""Sampling for AnyTalker: flow-matching UniPC on the original's sigma schedule, and batched CFG.

The original (FlowUniPCMultistepScheduler, shift 5 at construction) spaces its sigmas
linearly between shift5(1 - 1/1000) and 0, then shifts them again by the sampling
shift (3.0 at 832x480). diffusers' UniPCMultistepScheduler with flow sigmas, given
exactly that list, takes the same steps (tested against the original).
"""

from __future__ import annotations

import numpy as np

TRAIN_TIMESTEPS = 1000
CONSTRUCTION_SHIFT = 5.0


def _shift(sigmas, shift: float):
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def anytalker_sigmas(steps: int, shift: float) -> np.ndarray:
    """The `steps` sigmas the original samples at (the final zero is added by the scheduler)."""
    import torch

    highest = float(_shift(torch.tensor(1 - 1 / TRAIN_TIMESTEPS, dtype=torch.float32), CONSTRUCTION_SHIFT))
    return _shift(np.linspace(highest, 0.0, steps + 1)[:-1], shift)


def make_scheduler(steps: int = 40, shift: float = 3.0):
    """A UniPC (bh2, order 2, x0 prediction) flow-matching scheduler set to the original's schedule."""
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(num_train_timesteps=TRAIN_TIMESTEPS, prediction_type="flow_prediction",
                                        use_flow_sigmas=True, flow_shift=1.0, solver_order=2, solver_type="bh2",
                                        predict_x0=True, lower_order_final=True, final_sigmas_type="zero")
    scheduler.set_timesteps(sigmas=anytalker_sigmas(steps, shift), device="cpu")
    return scheduler


def guided(model_output_pair, scale: float):
    """One guide scale for text and audio together: uncond + scale * (cond - uncond).

    `model_output_pair` is the batched forward over [cond, uncond] (both CFG passes in one call).
    """
    cond, uncond = model_output_pair.chunk(2)
    return uncond + scale * (cond - uncond)
