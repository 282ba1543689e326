"""Routing metrics: the quality-vs-strong-share curve, APGR, CPT and AIQ.

A *scoring* policy gives every query an estimated quality per tier (a matrix, tiers cheap to
strong). At threshold ``t`` it picks, per query, the cheapest tier whose estimate is at most
``t`` below the best stronger tier's (:func:`choose_tiers`): ``t`` is the expected quality a
query may give up to save money. Sweeping ``t`` traces the curve from "always the best-looking tier" to
"always the cheapest".

Definitions (RouteLLM; ``../shared/data/README.md``): PGR = (quality − weak) / (strong − weak),
where weak and strong are always-cheapest and always-strongest. APGR is the area under PGR over
the strong-call share 0..1 (random ≈ 0.5). CPT(x) is the smallest strong-call share that
recovers x of the gap. AIQ (RouterBench) is the area under the non-decreasing hull of the
cost–quality points, divided by the cost range between always-cheapest and always-strongest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steproute.evaluation._ece import ece
from steproute.evaluation._format import EvalRow

__all__ = ["Curve", "Outcomes", "Point", "Summary", "aiq", "apgr", "choose_tiers", "cpt", "margins", "summarise", "sweep"]


@dataclass(frozen=True)
class Outcomes:
    """Quality and cost of every query on every tier, as matrices (queries × tiers)."""

    models: tuple[str, ...]
    """Model of each tier, cheap to strong."""
    quality: np.ndarray
    cost: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[EvalRow], models: Sequence[str]) -> Outcomes:
        """Matrices for ``rows``; every row must have an outcome for every model."""
        missing = [(r.id, m) for r in rows for m in models if m not in r.outcomes]
        if missing:
            row_id, model = missing[0]
            raise ValueError(f"row {row_id!r} has no outcome for model {model!r} ({len(missing)} missing in all)")
        q = np.array([[r.outcomes[m].quality for m in models] for r in rows], dtype=float).reshape(len(rows), len(models))
        c = np.array([[r.outcomes[m].cost_usd for m in models] for r in rows], dtype=float).reshape(len(rows), len(models))
        return cls(tuple(models), q, c)

    def at(self, choice: np.ndarray) -> tuple[float, float, float]:
        """Mean quality, total cost and share of queries off the cheapest tier, for a choice per query."""
        idx = np.arange(len(choice))
        return float(self.quality[idx, choice].mean()), float(self.cost[idx, choice].sum()), float((choice > 0).mean())

    def oracle_scores(self) -> np.ndarray:
        """Scores that make the true outcomes the estimate: the curve of a perfect router.

        Ties (both right, both wrong) are broken by a tiny fixed noise, so the sweep passes
        through them one by one, as a perfect router free to spend more would.
        """
        noise = np.random.default_rng(0).random(self.quality.shape) * 1e-6
        return self.quality + noise


def margins(scores: np.ndarray) -> np.ndarray:
    """Per query and tier, how much better the best stronger tier looks (``-inf`` for the strongest)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    stronger_best = np.maximum.accumulate(scores[:, ::-1], axis=1)[:, ::-1]
    out = np.full(scores.shape, -np.inf)
    out[:, :-1] = stronger_best[:, 1:] - scores[:, :-1]
    return out


def choose_tiers(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the chosen tier per query: the cheapest whose score is at most ``threshold`` below
    the best stronger tier's. A negative threshold asks the cheaper tier to look *better*.

    Example:
        >>> choose_tiers(np.array([[0.9, 0.95], [0.3, 0.9]]), 0.1).tolist()
        [0, 1]
    """
    return (margins(scores) <= threshold).argmax(axis=1)


@dataclass(frozen=True)
class Point:
    """The policy at one threshold: share of calls off the cheapest tier, mean quality, total cost,
    and the share of calls on each tier (cheap to strong; empty for a point not from a sweep)."""

    threshold: float
    strong_share: float
    quality: float
    cost_usd: float
    tier_shares: tuple[float, ...] = ()


@dataclass(frozen=True)
class Curve:
    """Points of a threshold sweep, by rising strong-call share."""

    points: tuple[Point, ...]

    @property
    def shares(self) -> np.ndarray:
        return np.array([p.strong_share for p in self.points])

    @property
    def qualities(self) -> np.ndarray:
        return np.array([p.quality for p in self.points])

    @property
    def costs(self) -> np.ndarray:
        return np.array([p.cost_usd for p in self.points])


def _thresholds(scores: np.ndarray, max_points: int) -> np.ndarray:
    m = margins(scores)
    values = np.unique(m[np.isfinite(m)])
    if len(values) > max_points:
        values = np.unique(np.quantile(values, np.linspace(0, 1, max_points)))
    return np.concatenate([[values[0] - 1.0 if len(values) else -1.0], values])


def sweep(scores: np.ndarray, outcomes: Outcomes, *, max_points: int = 2000) -> Curve:
    """The curve of a scoring policy as its threshold sweeps over every margin in ``scores``.

    For two tiers every distinct margin is a point (up to ``max_points``), so the curve is
    exact: queries with equal scores move together, which is what the policy would do.
    """
    points = []
    tiers = outcomes.quality.shape[1]
    for t in _thresholds(np.asarray(scores, dtype=float), max_points):
        choice = choose_tiers(scores, float(t))
        quality, cost, share = outcomes.at(choice)
        shares = np.bincount(choice, minlength=tiers) / max(len(choice), 1)
        points.append(Point(float(t), share, quality, cost, tuple(float(v) for v in shares)))
    points.sort(key=lambda p: (p.strong_share, p.quality))
    return Curve(tuple(points))


def _pgr(curve: Curve, weak: float, strong: float) -> tuple[np.ndarray, np.ndarray]:
    gap = strong - weak
    if gap <= 0:
        raise ValueError(f"the strongest tier's quality ({strong:.4f}) is not above the cheapest's ({weak:.4f}): "
                         "PGR is undefined")
    x = np.concatenate([[0.0], curve.shares, [1.0]])
    q = np.concatenate([[weak], curve.qualities, [strong]])
    # keep the best quality at each share: ties in share come from thresholds that move nothing
    order = np.lexsort((q, x))
    x, q = x[order], q[order]
    return x, (q - weak) / gap


def apgr(curve: Curve, weak: float, strong: float) -> float:
    """Area under the PGR curve over strong-call share 0..1."""
    x, pgr = _pgr(curve, weak, strong)
    return float(np.trapezoid(pgr, x))


def cpt(curve: Curve, weak: float, strong: float, target: float) -> float:
    """Smallest strong-call share at which PGR reaches ``target`` (0.5 for CPT(50%)), interpolated."""
    x, pgr = _pgr(curve, weak, strong)
    for i in range(1, len(x)):
        if pgr[i] >= target:
            if pgr[i] == pgr[i - 1] or x[i] == x[i - 1]:
                return float(x[i])
            return float(x[i - 1] + (target - pgr[i - 1]) / (pgr[i] - pgr[i - 1]) * (x[i] - x[i - 1]))
    return 1.0


def aiq(costs: np.ndarray, qualities: np.ndarray, cost_low: float, cost_high: float) -> float:
    """Area under the non-decreasing cost–quality hull over ``[cost_low, cost_high]``, divided by the range.

    The hull at cost ``c`` is the best quality reachable for at most ``c``, mixing any two
    operating points (so it is concave) — RouterBench's AIQ.
    """
    if cost_high <= cost_low:
        raise ValueError("AIQ needs a cost range: the strongest tier must cost more than the cheapest")
    pts = sorted(zip(np.asarray(costs, float), np.asarray(qualities, float), strict=True))
    hull: list[tuple[float, float]] = []
    for c, q in pts:  # upper concave hull, then made non-decreasing
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append((c, q))
    best = -np.inf
    mono = []
    for c, q in hull:
        best = max(best, q)
        mono.append((c, best))
    grid = np.linspace(cost_low, cost_high, 2001)
    hc = np.array([c for c, _ in mono])
    hq = np.array([q for _, q in mono])
    values = np.interp(grid, hc, hq, left=np.nan, right=hq[-1])
    values = np.where(np.isnan(values), hq[0] if hc[0] <= cost_low else 0.0, values)
    return float(np.trapezoid(values, grid) / (cost_high - cost_low))


@dataclass(frozen=True)
class Summary:
    """A policy's figures on a data set (what ``steproute eval --json`` prints)."""

    rows: int
    models: tuple[str, ...]
    threshold: float
    quality: float
    cost_usd: float
    strong_share: float
    apgr: float
    cpt50: float
    cpt80: float
    aiq: float | None
    weak_quality: float
    strong_quality: float
    oracle_quality: float
    weak_cost_usd: float
    strong_cost_usd: float
    ece: float | None = None
    """Expected calibration error of the estimates (10 bins; :func:`~steproute.evaluation.ece`); ``None``
    when the scores are not quality estimates (a configuration's decisions)."""

    def to_json(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def summarise(scores: np.ndarray, outcomes: Outcomes, threshold: float) -> tuple[Summary, Curve]:
    """Every figure for a scoring policy at ``threshold``, and its curve."""
    curve = sweep(scores, outcomes)
    weak = float(outcomes.quality[:, 0].mean())
    strong = float(outcomes.quality[:, -1].mean())
    quality, cost, share = outcomes.at(choose_tiers(scores, threshold))
    cost_low, cost_high = float(outcomes.cost[:, 0].sum()), float(outcomes.cost[:, -1].sum())
    aiq_value = aiq(curve.costs, curve.qualities, cost_low, cost_high) if cost_high > cost_low else None
    return Summary(
        rows=len(outcomes.quality), models=outcomes.models, threshold=threshold, quality=quality, cost_usd=cost,
        strong_share=share, apgr=apgr(curve, weak, strong), cpt50=cpt(curve, weak, strong, 0.5),
        cpt80=cpt(curve, weak, strong, 0.8), aiq=aiq_value, weak_quality=weak, strong_quality=strong,
        oracle_quality=float(outcomes.quality.max(axis=1).mean()), weak_cost_usd=cost_low, strong_cost_usd=cost_high,
        ece=ece(scores, outcomes.quality) if len(outcomes.quality) else None,
    ), curve
