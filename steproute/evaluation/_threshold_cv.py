"""How well a calibrated threshold generalises: chosen on some folds, measured on the one left out.

One threshold read off a whole calibration set is one number; how far it moves with the rows,
and what it gives on rows it was not chosen on, is what says whether it will hold in
production. :func:`fold_thresholds` splits the rows in ``folds`` (stratified by step), and for
each fold picks the threshold for the target on the *other* folds' rows
(:func:`~steproute.evaluation.calibrate`), then replays it on the fold: its quality and cost
against that fold's always-strongest, and its share of calls off the cheapest tier. The
spread (mean ± sd, min–max) across folds is what ``steproute train`` and ``steproute
calibrate`` print beside the threshold they keep (chosen on every row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steproute.evaluation._calibrate import Target, calibrate
from steproute.evaluation._metrics import Outcomes, choose_tiers, sweep

__all__ = ["FoldThreshold", "ThresholdSpread", "fold_ids", "fold_thresholds"]

_FIGURES = ("threshold", "quality_ratio", "cost_ratio", "strong_share")


@dataclass(frozen=True)
class FoldThreshold:
    """One fold: the threshold the other folds chose (``None``: they could not reach the target)
    and what it gave on this fold's rows (ratios to this fold's always-strongest)."""

    fold: int
    rows: int
    threshold: float | None
    quality: float | None = None
    quality_ratio: float | None = None
    cost_ratio: float | None = None
    strong_share: float | None = None


@dataclass(frozen=True)
class ThresholdSpread:
    """Per-fold thresholds and their spread (see the module docstring)."""

    target: str
    folds: tuple[FoldThreshold, ...]

    def spread(self) -> dict[str, dict[str, float]]:
        """``{figure: {mean, sd, min, max}}`` over the folds that reached the target (sd: sample, ``n − 1``)."""
        out: dict[str, dict[str, float]] = {}
        for name in _FIGURES:
            values = np.array([getattr(f, name) for f in self.folds if f.threshold is not None], dtype=float)
            if len(values):
                out[name] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                             "min": float(values.min()), "max": float(values.max())}
        return out

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "per_fold": [f.__dict__ for f in self.folds], "spread": self.spread(),
                "unreached": sum(f.threshold is None for f in self.folds)}

    def lines(self) -> list[str]:
        """What the commands print: one line per figure, then the folds that missed the target.

        Example:
            >>> spread = ThresholdSpread("q", (FoldThreshold(0, 10, 0.1, 0.8, 0.96, 0.5, 0.4),
            ...                                FoldThreshold(1, 10, 0.3, 0.7, 0.94, 0.3, 0.2)))
            >>> spread.lines()[0]
            'threshold      0.2 ± 0.1414  (0.1–0.3)'
        """
        labels = {"threshold": ("threshold", "{:.4g}"), "quality_ratio": ("quality", "{:.1%}"),
                  "cost_ratio": ("cost", "{:.1%}"), "strong_share": ("strong share", "{:.1%}")}
        out = []
        for name, s in self.spread().items():
            label, fmt = labels[name]
            out.append(f"{label:<14} {fmt.format(s['mean'])} ± {fmt.format(s['sd'])}  "
                       f"({fmt.format(s['min'])}–{fmt.format(s['max'])})")
        missed = [f.fold for f in self.folds if f.threshold is None]
        if missed:
            out.append(f"target not reachable on the other folds' rows for fold(s) {', '.join(map(str, missed))}")
        return out


def fold_ids(steps: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per row, each step's rows dealt round the folds in a seeded random order.

    Example:
        >>> fold_ids(["a", "a", "b", "b"], 2).tolist()
        [0, 1, 0, 1]
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    order = np.random.default_rng(seed).permutation(len(steps))
    by_step = sorted(range(len(order)), key=lambda i: (steps[int(order[i])], i))  # stable: random order within a step
    out = np.empty(len(steps), dtype=int)
    for rank, i in enumerate(by_step):
        out[order[i]] = rank % folds
    return out


def fold_thresholds(scores: np.ndarray, outcomes: Outcomes, target: Target, *, folds: int = 5,
                    steps: Sequence[str] | None = None, seed: int = 0) -> ThresholdSpread:
    """Per fold, the threshold the other folds' rows choose for ``target``, replayed on the fold.

    ``scores`` are estimates made without each row (out-of-fold estimates from training, or a
    trained policy's on a calibration set it never saw).

    Example:
        >>> from steproute.evaluation import EvalRow, Outcome
        >>> rows = [EvalRow(str(i), ({"role": "user", "content": "q"},),
        ...                 {"cheap": Outcome(float(i % 2), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(40)]
        >>> outcomes = Outcomes.of(rows, ["cheap", "strong"])
        >>> spread = fold_thresholds(outcomes.oracle_scores(), outcomes, Target(quality_ratio=0.95), folds=4)
        >>> len(spread.folds), all(f.quality_ratio >= 0.9 for f in spread.folds)
        (4, True)
    """
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    ids = fold_ids(steps if steps is not None else [""] * n, folds, seed)
    out = []
    for k in range(folds):
        test, rest = ids == k, ids != k
        if not test.any() or not rest.any():
            continue
        fit = Outcomes(outcomes.models, outcomes.quality[rest], outcomes.cost[rest])
        try:
            point = calibrate(sweep(scores[rest], fit), target, float(fit.quality[:, -1].mean()))
        except ValueError:
            out.append(FoldThreshold(k, int(test.sum()), None))
            continue
        held = Outcomes(outcomes.models, outcomes.quality[test], outcomes.cost[test])
        quality, cost, share = held.at(choose_tiers(scores[test], point.threshold))
        strong_q, strong_c = float(held.quality[:, -1].mean()), float(held.cost[:, -1].sum())
        out.append(FoldThreshold(k, int(test.sum()), point.threshold, quality,
                                 quality / strong_q if strong_q > 0 else math.nan,
                                 cost / strong_c if strong_c > 0 else math.nan, share))
    return ThresholdSpread(target.describe(), tuple(out))
