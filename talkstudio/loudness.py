"""Loudness normalisation of the mix (EBU R128 integrated loudness, BS.1770 true peak).

Speech is peaky: reaching -16 LUFS with a plain gain would often push the true
peak far over -1 dBTP. So the mix gets a gain to the target and a look-ahead
true-peak limiter, and both are returned as one gain curve. The caller applies
that curve to every track, so the mix stays exactly the sum of the tracks and
every track stays exactly zero where its speaker is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OVERSAMPLING = 4  # BS.1770-4 annex 2 true-peak estimate
MIN_SECONDS = 0.4  # one gating block: shorter audio has no integrated loudness
ATTACK_S = 0.005  # gain reaches its reduced value this long before a peak
RELEASE_S = 0.060  # and holds this long after it
SAFETY_DB = 0.2  # inter-sample effects of the gain curve itself
ROUNDS = 4  # limiting lowers loudness a little; a few rounds converge within 0.1 LU


@dataclass
class Loudness:
    target_lufs: float
    ceiling_dbtp: float
    gain_db: float  # static gain before limiting
    limited_db: float  # deepest gain reduction of the limiter (0 when it did nothing)
    integrated_lufs: float | None  # of the result; None when silent or too short to measure
    true_peak_dbtp: float | None


def integrated_loudness(samples: np.ndarray, rate: int) -> float | None:
    """Integrated loudness in LUFS; None when silent or shorter than one gating block."""
    if len(samples) < MIN_SECONDS * rate or not np.any(samples):
        return None
    import pyloudnorm

    value = pyloudnorm.Meter(rate).integrated_loudness(samples.astype(np.float64))
    return float(value) if np.isfinite(value) else None


def sample_true_peaks(samples: np.ndarray, block: int = 1 << 19) -> np.ndarray:
    """Per original sample, the largest magnitude among it and its oversampled neighbours."""
    from scipy.signal import resample_poly

    peaks = np.abs(samples).astype(np.float32)
    pad = 64
    for begin in range(0, len(samples), block):
        lo, hi = max(begin - pad, 0), min(begin + block + pad, len(samples))
        up = np.abs(resample_poly(samples[lo:hi].astype(np.float64), OVERSAMPLING, 1))
        up = up[: (hi - lo) * OVERSAMPLING].reshape(hi - lo, OVERSAMPLING).max(axis=1)
        keep = slice(begin - lo, begin - lo + min(block, len(samples) - begin))
        peaks[begin : begin + len(up[keep])] = np.maximum(peaks[begin : begin + len(up[keep])], up[keep])
    return peaks


def true_peak(samples: np.ndarray) -> float:
    return float(sample_true_peaks(samples).max()) if len(samples) else 0.0


def limiter_curve(peaks: np.ndarray, ceiling: float, rate: int) -> np.ndarray:
    """A smooth gain curve g <= ceiling / peak at every sample (look-ahead min filter, then averaging).

    Each sample's gain is the mean over a window of minima over windows that all
    contain that sample, so it can never exceed the gain that sample needs.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12)).astype(np.float64)
    attack, release = max(int(ATTACK_S * rate), 1), max(int(RELEASE_S * rate), 1)
    release += (release - attack) % 2  # so that origin below places the window exactly
    # minimum over [n - release, n + attack]
    size = attack + release + 1
    held = minimum_filter1d(needed, size=size, origin=(release - attack) // 2, mode="nearest")
    # the average over [n - attack, n + attack] of minima whose windows all contain n
    return uniform_filter1d(held, size=2 * attack + 1, mode="nearest")


def normalise_curve(mix: np.ndarray, rate: int, target_lufs: float, ceiling_dbtp: float) -> tuple[np.ndarray | float, Loudness]:
    """The gain (curve, or a scalar when no limiting is needed) that normalises `mix`."""
    measured = integrated_loudness(mix, rate)
    if measured is None:
        peak = true_peak(mix)
        if peak == 0.0:
            return 1.0, Loudness(target_lufs, ceiling_dbtp, 0.0, 0.0, None, None)
        gain = min(1.0, 10 ** (ceiling_dbtp / 20) / peak)
        return gain, Loudness(target_lufs, ceiling_dbtp, round(20 * np.log10(gain), 3), 0.0, None,
                              round(20 * np.log10(peak * gain), 3))
    ceiling = 10 ** ((ceiling_dbtp - SAFETY_DB) / 20)
    gain_db = target_lufs - measured
    peaks = sample_true_peaks(mix)
    curve: np.ndarray | float = 10 ** (gain_db / 20)
    for _ in range(ROUNDS):
        scaled_peaks = peaks * np.float32(10 ** (gain_db / 20))
        if scaled_peaks.max() <= ceiling:
            curve = 10 ** (gain_db / 20)
            break
        curve = 10 ** (gain_db / 20) * limiter_curve(scaled_peaks, ceiling, rate)
        reached = integrated_loudness((mix * curve).astype(np.float32), rate)
        if reached is None or abs(reached - target_lufs) < 0.05:
            break
        gain_db += target_lufs - reached
    result = (mix * curve).astype(np.float32)
    reached = integrated_loudness(result, rate)
    peak = true_peak(result)
    limited = float(np.min(curve)) / 10 ** (gain_db / 20) if isinstance(curve, np.ndarray) else 1.0
    return curve, Loudness(
        target_lufs, ceiling_dbtp, round(float(gain_db), 3), round(float(20 * np.log10(limited)), 3),
        round(reached, 3) if reached is not None else None, round(float(20 * np.log10(peak)), 3) if peak else None,
    )
