"""Calibration error of a scoring policy's quality estimates: ECE and its reliability table.

A scoring policy estimates, per query and tier, the quality that tier would give. The estimates
are *calibrated* when, among the (query, tier) pairs estimated at about ``p``, the mean actual
quality is about ``p``. ECE (expected calibration error, Naeini et al. 2015; Guo et al. 2017)
measures the gap: the estimates are put in ``bins`` equal-width bins over [0, 1]; in each bin
the gap is ``|mean estimate − mean outcome|``; ECE is the mean gap weighted by the bins' share
of the pairs. Every tier's estimates are pooled (a pair is one query on one tier). 0 is
perfectly calibrated; always estimating 0.9 where the outcome averages 0.6 gives 0.3.
Estimates outside [0, 1] count in the edge bins; outcomes may be fractional (a judge's score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ReliabilityBin", "ece", "reliability"]


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability table: its range, how many (query, tier) pairs fell in it,
    their mean estimate and their mean outcome."""

    low: float
    high: float
    count: int
    mean_estimate: float
    mean_outcome: float


def _binned(estimates: np.ndarray, outcomes: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    p = np.asarray(estimates, dtype=float).ravel()
    y = np.asarray(outcomes, dtype=float).ravel()
    if p.shape != y.shape:
        raise ValueError(f"estimates and outcomes differ in size: {p.size} against {y.size}")
    which = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)  # 1.0 (and above) in the last bin
    count = np.bincount(which, minlength=bins)
    return count, np.bincount(which, weights=p, minlength=bins), np.bincount(which, weights=y, minlength=bins)


def ece(estimates: np.ndarray, outcomes: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of ``estimates`` against ``outcomes`` (same shape, any number
    of tiers), over ``bins`` equal-width bins of [0, 1].

    Example:
        >>> ece(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 1.0, 1.0, 1.0]))  # (0.1 + 0.8 + 0.2 + 0.1) / 4
        0.3
        >>> ece(np.full((10, 2), 0.9), np.tile([1.0, 1.0, 1.0, 0.0, 0.0], (2, 2)).T)  # estimates 0.9, right 60%
        0.3
    """
    count, p_sum, y_sum = _binned(estimates, outcomes, bins)
    total = int(count.sum())
    if total == 0:
        raise ValueError("no estimates: the calibration error is undefined")
    return round(float(np.abs(p_sum - y_sum).sum() / total), 12)


def reliability(estimates: np.ndarray, outcomes: np.ndarray, bins: int = 10) -> list[ReliabilityBin]:
    """The reliability table behind :func:`ece`: one row per non-empty bin.

    Example:
        >>> [(b.low, b.count, b.mean_estimate, b.mean_outcome) for b in
        ...  reliability(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 1.0, 1.0, 1.0]), bins=2)]
        [(0.0, 2, 0.15, 0.5), (0.5, 2, 0.85, 1.0)]
    """
    count, p_sum, y_sum = _binned(estimates, outcomes, bins)
    return [ReliabilityBin(round(i / bins, 12), round((i + 1) / bins, 12), int(count[i]),
                           round(float(p_sum[i] / count[i]), 12), round(float(y_sum[i] / count[i]), 12))
            for i in range(bins) if count[i]]
