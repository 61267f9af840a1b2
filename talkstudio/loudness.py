"""Loudness normalisation of the mix (EBU R128 integrated loudness, BS.1770 true peak), in blocks.

Speech is peaky: reaching -16 LUFS with a plain gain would often push the true
peak far over -1 dBTP. So the mix gets a gain to the target and a look-ahead
true-peak limiter; both form one gain curve that the caller applies to every
track, so the mix stays exactly the sum of the tracks and every track stays
exactly zero where its speaker is silent.

Everything streams over the mix in blocks that a `source(start, end)` callable
produces, so memory does not grow with the length of the programme. The meter
is pyloudnorm's BS.1770-4 meter (its K-weighting filters and gating) fed block
by block; it matches `pyloudnorm.Meter.integrated_loudness` on the whole signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Source = Callable[[int, int], np.ndarray]  # the mix's samples [start, end), float32

BLOCK = 1 << 18  # samples per processing block (~12 s at 22 kHz)
OVERSAMPLING = 4  # BS.1770-4 annex 2 true-peak estimate
RESAMPLE_PAD = 64  # context each side of a block for the oversampling filter
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


def preload_meter() -> None:
    """Import the meter's libraries (pyloudnorm, scipy.signal: about a second) in a background thread,
    so that the import overlaps work that runs in native code (speech synthesis, face finding)."""
    import threading

    def load():
        import pyloudnorm  # noqa: F401
        import scipy.signal  # noqa: F401

    threading.Thread(target=load, name="preload-meter", daemon=True).start()


class LoudnessMeter:
    """Integrated loudness (LUFS) of a mono signal given in consecutive blocks."""

    def __init__(self, rate: int, total: int):
        import pyloudnorm

        meter = pyloudnorm.Meter(rate)
        self.stages = [(f.b, f.a, f.passband_gain) for f in meter._filters.values()]
        self.states = [np.zeros(max(len(a), len(b)) - 1) for b, a, _ in self.stages]
        self.rate, self.total = rate, total
        self.gate_s, step = meter.block_size, 1.0 - meter.overlap
        count = int(np.round((total / rate - self.gate_s) / (self.gate_s * step))) + 1 if total else 0
        # the same block bounds as pyloudnorm's integrated_loudness
        self.lower = np.array([int(self.gate_s * (j * step) * rate) for j in range(count)], np.int64)
        self.upper = np.minimum([int(self.gate_s * (j * step + 1) * rate) for j in range(count)], total)
        self.bounds = np.unique(np.concatenate([self.lower, self.upper, [0]]))
        self.energy_at = np.zeros(len(self.bounds))  # sum of squares before each bound
        self.position, self.energy, self.next_bound = 0, 0.0, 1

    def feed(self, block: np.ndarray) -> None:
        from scipy.signal import lfilter

        y = block.astype(np.float64)
        for i, (b, a, gain) in enumerate(self.stages):
            y, self.states[i] = lfilter(b, a, y, zi=self.states[i])
            y = gain * y
        running = self.energy + np.cumsum(y * y)
        end = self.position + len(y)
        while self.next_bound < len(self.bounds) and self.bounds[self.next_bound] <= end:
            self.energy_at[self.next_bound] = running[self.bounds[self.next_bound] - self.position - 1]
            self.next_bound += 1
        self.position, self.energy = end, float(running[-1]) if len(running) else self.energy

    def result(self) -> float | None:
        """Gated integrated loudness; None when too short, silent or below the absolute gate."""
        if self.total < MIN_SECONDS * self.rate or not len(self.lower):
            return None
        index = {bound: i for i, bound in enumerate(self.bounds)}
        z = (self.energy_at[[index[u] for u in self.upper]] - self.energy_at[[index[lo] for lo in self.lower]])
        z = z / (self.gate_s * self.rate)
        with np.errstate(divide="ignore"):
            blocks = -0.691 + 10.0 * np.log10(z)
        gated = blocks >= -70.0
        if not gated.any():
            return None
        relative = -0.691 + 10.0 * np.log10(np.mean(z[gated])) - 10.0
        kept = (blocks > relative) & (blocks > -70.0)
        if not kept.any():
            return None
        return float(-0.691 + 10.0 * np.log10(np.mean(z[kept])))


def integrated_loudness(samples: np.ndarray, rate: int) -> float | None:
    """Integrated loudness of an array in LUFS; None when silent or too short."""
    return measure(lambda s, e: samples[s:e], len(samples), rate)


def measure(source: Source, total: int, rate: int) -> float | None:
    meter = LoudnessMeter(rate, total)
    for start in range(0, total, BLOCK):
        meter.feed(source(start, min(start + BLOCK, total)))
    return meter.result()


def sample_true_peaks(source: Source, total: int, start: int, end: int) -> np.ndarray:
    """For samples [start, end): the largest magnitude among each and its oversampled neighbours."""
    from scipy.signal import resample_poly

    lo, hi = max(start - RESAMPLE_PAD, 0), min(end + RESAMPLE_PAD, total)
    padded = source(lo, hi).astype(np.float64)
    up = np.abs(resample_poly(padded, OVERSAMPLING, 1))
    up = up[: (hi - lo) * OVERSAMPLING].reshape(hi - lo, OVERSAMPLING).max(axis=1)
    peaks = np.maximum(np.abs(padded), up)
    return peaks[start - lo:end - lo].astype(np.float32)


def true_peak(samples: np.ndarray) -> float:
    total = len(samples)
    return max((float(sample_true_peaks(lambda s, e: samples[s:e], total, b, min(b + BLOCK, total)).max())
                for b in range(0, total, BLOCK)), default=0.0)


def limiter_curve(peaks: np.ndarray, ceiling: float, rate: int) -> np.ndarray:
    """A smooth gain curve g <= ceiling / peak at every sample (look-ahead min filter, then averaging).

    Each sample's gain is the mean over a window of minima over windows that all
    contain that sample, so it can never exceed the gain that sample needs.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    attack, release = _attack_release(rate)
    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12)).astype(np.float64)
    # minimum over [n - release, n + attack]
    held = minimum_filter1d(needed, size=attack + release + 1, origin=(release - attack) // 2, mode="nearest")
    # the average over [n - attack, n + attack] of minima whose windows all contain n
    return uniform_filter1d(held, size=2 * attack + 1, mode="nearest")


def _attack_release(rate: int) -> tuple[int, int]:
    attack, release = max(int(ATTACK_S * rate), 1), max(int(RELEASE_S * rate), 1)
    return attack, release + (release - attack) % 2  # so that the filter's origin places the window exactly


PEAK_GROUP = 64  # true peaks are kept as the maximum of each group of samples (1.3 ms at 48 kHz, well inside
# the 5 ms attack): a 60-minute mix keeps 11 MB of them, and the gain is never higher than a sample needs


@dataclass
class GainCurve:
    """The normalisation: a static gain, then (when `ceiling` is set) the limiter over the scaled mix."""

    source: Source
    total: int
    rate: int
    gain: float
    ceiling: float | None = None
    peaks: np.ndarray | None = None  # grouped true peaks of the source, needed with a ceiling

    def block(self, start: int, end: int) -> np.ndarray | float:
        """The gain for samples [start, end): the same values the whole-signal computation gives."""
        if self.ceiling is None:
            return self.gain
        attack, release = _attack_release(self.rate)
        margin = release + 2 * attack + PEAK_GROUP
        lo, hi = max(start - margin, 0) // PEAK_GROUP * PEAK_GROUP, min(end + margin, self.total)
        peaks = np.repeat(self.peaks[lo // PEAK_GROUP:-(-hi // PEAK_GROUP)], PEAK_GROUP)[:hi - lo]
        curve = limiter_curve(peaks * np.float32(self.gain), self.ceiling, self.rate)
        return self.gain * curve[start - lo:end - lo]

    def apply(self, start: int, end: int) -> np.ndarray:
        """The normalised mix for samples [start, end)."""
        return (self.source(start, end) * self.block(start, end)).astype(np.float32)


def normalise(source: Source, total: int, rate: int, target_lufs: float, ceiling_dbtp: float
              ) -> tuple[GainCurve, Loudness]:
    """The gain curve that brings the mix to `target_lufs` with its true peak under `ceiling_dbtp`."""
    measured, peaks = _measure_and_peaks(source, total, rate)
    peak = float(peaks.max()) if len(peaks) else 0.0
    if measured is None:
        gain = min(1.0, 10 ** (ceiling_dbtp / 20) / peak) if peak else 1.0
        loudness = Loudness(target_lufs, ceiling_dbtp, round(20 * np.log10(gain), 3), 0.0, None,
                            round(20 * np.log10(peak * gain), 3) if peak else None)
        return GainCurve(source, total, rate, gain), loudness
    ceiling = 10 ** ((ceiling_dbtp - SAFETY_DB) / 20)
    gain_db = target_lufs - measured
    for _ in range(ROUNDS):
        if peak * 10 ** (gain_db / 20) <= ceiling:
            curve, reached = GainCurve(source, total, rate, 10 ** (gain_db / 20)), measured + gain_db
            break
        curve = GainCurve(source, total, rate, 10 ** (gain_db / 20), ceiling, peaks)
        reached = measure(curve.apply, total, rate)
        if reached is None or abs(reached - target_lufs) < 0.05:
            break
        gain_db += target_lufs - reached
    result_peak, deepest = _result_peak_and_reduction(curve)
    return curve, Loudness(
        target_lufs, ceiling_dbtp, round(float(gain_db), 3), round(float(20 * np.log10(deepest)), 3),
        round(reached, 3) if reached is not None else None,
        round(float(20 * np.log10(result_peak)), 3) if result_peak else None,
    )


def _measure_and_peaks(source: Source, total: int, rate: int) -> tuple[float | None, np.ndarray]:
    """Integrated loudness and grouped true peaks of the source, in one pass."""
    meter = LoudnessMeter(rate, total)
    groups = []
    for start in range(0, total, BLOCK):
        end = min(start + BLOCK, total)
        meter.feed(source(start, end))
        peaks = sample_true_peaks(source, total, start, end)
        groups.append(np.pad(peaks, (0, -len(peaks) % PEAK_GROUP)).reshape(-1, PEAK_GROUP).max(axis=1))
    return meter.result(), (np.concatenate(groups) if groups else np.zeros(0, np.float32))


def _result_peak_and_reduction(curve: GainCurve) -> tuple[float, float]:
    """True peak of the normalised mix, and the deepest limiter reduction, in one pass."""
    from scipy.signal import resample_poly

    peak, deepest = 0.0, 1.0
    for start in range(0, curve.total, BLOCK):
        end = min(start + BLOCK, curve.total)
        lo, hi = max(start - RESAMPLE_PAD, 0), min(end + RESAMPLE_PAD, curve.total)
        gain = np.asarray(curve.block(lo, hi), np.float64)
        y = curve.source(lo, hi) * gain
        up = np.abs(resample_poly(y, OVERSAMPLING, 1))[(start - lo) * OVERSAMPLING:(end - lo) * OVERSAMPLING]
        peak = max(peak, float(up.max(initial=0.0)), float(np.abs(y[start - lo:end - lo]).max(initial=0.0)))
        if gain.ndim:
            deepest = min(deepest, float(gain[start - lo:end - lo].min()) / curve.gain)
    return peak, deepest
