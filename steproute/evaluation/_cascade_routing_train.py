"""Cascade routing offline: train its calibrated quality model, choose λ, replay it.

Training (on the training rows only):

1. out-of-fold pre-call estimates of every tier (the ``classifier``, cross-validated) and
   out-of-fold post-call estimates of every judged tier's recorded answer (the ``cascade``
   answer scorer, trained per fold);
2. isotonic calibration of each (scikit-learn's ``IsotonicRegression``), itself cross-fitted
   so that λ is chosen on estimates no calibrator saw;
3. a sweep of λ (and κ, the worth of the answer check) through the very rule that runs
   (:mod:`steproute.policies.cascade_value`): the cheapest point that meets the target
   (default: 95% of the strongest tier's quality) sets them;
4. the final classifier, scorer and calibrators fitted on every row, stored in one artefact.

Example:
    >>> import numpy as np
    >>> model = isotonic_knots(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 1.0, 0.0, 1.0]), 4)
    >>> [round(float(v), 2) for v in model[1]]
    [0.0, 0.5, 0.5, 1.0]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from steproute.evaluation._calibrate import Target
from steproute.evaluation._cascade import CascadeTable, Progress, train_cascade
from steproute.evaluation._format import EvalRow
from steproute.evaluation._train import cross_validated_scores, train_classifier
from steproute.policies._artefact import Artefact
from steproute.policies.answer_scorer import AnswerScorer
from steproute.policies.cascade_value import CascadeRoutingPolicy, accepts, mixed, start_tier, start_values

__all__ = [
    "KAPPAS",
    "LAMBDAS",
    "RoutingEvaluation",
    "RoutingPoint",
    "calibrate_routing",
    "choose_point",
    "evaluate_cascade_routing",
    "isotonic_knots",
    "replay_routing",
    "simulate",
    "train_cascade_routing",
]

KAPPAS = (0.0, 0.25, 0.5, 0.75, 1.0)
LAMBDAS = tuple(float(x) for x in np.concatenate([[0.0], np.geomspace(1e-3, 3.0, 400)]))
"""The λ swept (quality per unit of cost; the strongest tier's mean call costs 1)."""
KNOTS = 256
"""Knots stored per calibrated step function (an isotonic fit has at most as many as distinct inputs)."""
_ANY = Target(quality_ratio=0.0)


@dataclass(frozen=True)
class RoutingPoint:
    """Cascade routing at one λ, replayed over rows."""

    lam: float
    kappa: float
    quality: float
    cost_usd: float
    """Every attempt's cost, summed over the rows (a skipped tier costs nothing)."""
    strong_share: float
    """Share of rows that called the strongest tier."""
    skipped_share: float
    """Share of rows that did not call the cheapest tier."""
    escalation_rate: float
    """Share of rows that called more than one tier."""


def isotonic_knots(raw: np.ndarray, quality: np.ndarray, knots: int = KNOTS) -> tuple[np.ndarray, np.ndarray]:
    """An isotonic (non-decreasing) fit of ``quality`` on ``raw``, as ``knots`` knots for
    :func:`numpy.interp` (the same values as the fit's ``predict``)."""
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, quality)
    x, y = np.asarray(fit.X_thresholds_, dtype=float), np.asarray(fit.y_thresholds_, dtype=float)
    if len(x) > knots:  # keep the ends, sample the rest evenly (rare: knots are step corners)
        keep = np.unique(np.round(np.linspace(0, len(x) - 1, knots)).astype(int))
        x, y = x[keep], y[keep]
    pad = knots - len(x)
    return np.concatenate([x, np.full(pad, x[-1])]), np.concatenate([y, np.full(pad, y[-1])])


def simulate(pre: np.ndarray, post: np.ndarray, table: CascadeTable, costs: np.ndarray, lam: float, kappa: float,
             low: int = 0, high: int | None = None) -> RoutingPoint:
    """Replay the rule over rows: ``pre`` (rows × tiers) and ``post`` (rows × judged tiers)
    calibrated estimates; quality and cost from ``table``'s recorded outcomes."""
    n, m = table.quality.shape
    high = m - 1 if high is None else high
    values = start_values(pre, costs, lam, kappa)
    tier = start_tier(values, low, high)
    done = np.zeros(n, dtype=bool)
    quality, cost, calls = np.zeros(n), np.zeros(n), np.zeros(n)
    for j in range(m):
        here = ~done & (tier == j)
        cost[here] += table.cost[here, j]
        calls[here] += 1
        keep = here if j >= high else here & accepts(post[:, j], values[:, j + 1])
        quality[keep] = table.quality[keep, j]
        done |= keep
        tier[here & ~keep] = j + 1
    reached_last = tier == m - 1
    strong = float(reached_last.mean()) if n else 0.0
    skipped = float((start_tier(values, low, high) > 0).mean()) if n else 0.0
    return RoutingPoint(lam, kappa, float(quality.mean()) if n else 0.0, float(cost.sum()), strong, skipped,
                        float((calls > 1).mean()) if n else 0.0)


def _meets(point: RoutingPoint, target: Target, strong_quality: float) -> bool:
    if target.strong_share is not None:
        return point.strong_share <= target.strong_share + 1e-12
    floor = target.quality_floor if target.quality_floor is not None else (target.quality_ratio or 0.0) * strong_quality
    return point.quality >= floor - 1e-12


def choose_point(points: Sequence[RoutingPoint], target: Target, strong_quality: float) -> RoutingPoint:
    """The cheapest point meeting ``target`` (a share cap: the best quality within it)."""
    meeting = [p for p in points if _meets(p, target, strong_quality)]
    if not meeting:
        raise ValueError(f"no λ meets the target ({target.describe()}) on the training rows")
    if target.strong_share is not None:
        return max(meeting, key=lambda p: (p.quality, -p.cost_usd))
    return min(meeting, key=lambda p: (p.cost_usd, -p.quality))


def _probabilities(scorer: AnswerScorer, table: CascadeTable, rows: np.ndarray) -> np.ndarray:
    return np.array([[scorer.probability(table.questions[i], table.responses[i][j]) for j in range(len(table.models) - 1)]
                     for i in rows]).reshape(len(rows), len(table.models) - 1)


def _cross_fitted(raw: np.ndarray, quality: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Isotonic estimates of every row by calibrators fitted on the other folds."""
    out = np.zeros_like(raw)
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        for j in range(raw.shape[1]):
            x, y = isotonic_knots(raw[train, j], quality[train, j])
            out[test, j] = np.interp(raw[test, j], x, y)
    return out


def _mix(scorer: np.ndarray, pre_raw: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Per judged tier, the logistic regression of its quality on the logits of the scorer's
    probability and of the pre-call estimate (soft labels, as the scorer's own fit)."""
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((scorer.shape[1], 3))
    for j in range(scorer.shape[1]):
        x = np.column_stack([_logit(scorer[:, j]), _logit(pre_raw[:, j])])
        y = quality[:, j]
        labels = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
        weights = np.concatenate([y, 1.0 - y])
        keep = weights > 0
        model = LogisticRegression(C=1.0, max_iter=1000).fit(np.vstack([x, x])[keep], labels[keep], sample_weight=weights[keep])
        out[j] = [model.coef_[0][0], model.coef_[0][1], model.intercept_[0]]
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p))


def _knots(raw: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [isotonic_knots(raw[:, j], quality[:, j]) for j in range(raw.shape[1])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def train_cascade_routing(rows: Sequence[EvalRow], models: Sequence[str], *, target: Target | None = None, folds: int = 5,
                          seed: int = 0, encoder: str = "wordllama-l2-256", kappas: Sequence[float] = KAPPAS,
                          lambdas: Sequence[float] = LAMBDAS, progress: Progress | None = None,
                          embedding_cache: str | os.PathLike[str] | bool = True) -> Artefact:
    """Train a ``cascade_routing`` artefact (see the module docstring) for ``models`` (cheap
    to strong), on rows whose cheaper models carry a recorded ``response``."""
    target = target or Target(quality_ratio=0.95)
    table = CascadeTable.of(rows, models)
    if folds < 2 or len(table) < folds * 4:
        raise ValueError(f"cascade routing needs folds >= 2 and at least {max(folds, 2) * 4} rows (got {len(table)})")
    pre_raw = cross_validated_scores(rows, models, folds=folds, encoder=encoder, seed=seed, progress=progress,
                                     embedding_cache=embedding_cache)
    fold_of = np.random.default_rng(seed).permutation(len(table)) % folds
    post_raw = np.zeros((len(table), len(models) - 1))
    for k in range(folds):
        train = np.flatnonzero(fold_of != k)
        scorer = AnswerScorer.of(train_cascade([rows[int(i)] for i in train], models, target=_ANY, folds=folds, seed=seed))
        test = np.flatnonzero(fold_of == k)
        post_raw[test] = _probabilities(scorer, table, test)
    quality = table.quality
    mix = _mix(post_raw, pre_raw, quality)
    post_mixed = np.column_stack([mixed(mix[j], post_raw[:, j], pre_raw[:, j]) for j in range(len(models) - 1)])
    pre = _cross_fitted(pre_raw, quality, fold_of)
    post = _cross_fitted(post_mixed, quality[:, :-1], fold_of)
    costs = table.cost.mean(axis=0) / max(float(table.cost[:, -1].mean()), 1e-12)
    strong_quality = float(quality[:, -1].mean())
    points = [simulate(pre, post, table, costs, lam, kappa) for kappa in kappas for lam in lambdas]
    point = choose_point(points, target, strong_quality)
    classifier = train_classifier(rows, models, folds=0, encoder=encoder, embedding_cache=embedding_cache)
    scorer_artefact = train_cascade(rows, models, target=_ANY, folds=folds, seed=seed)
    pre_x, pre_y = _knots(pre_raw, quality)
    post_x, post_y = _knots(post_mixed, quality[:, :-1])
    meta: dict[str, Any] = {
        "labels": list(models), "threshold": point.lam, "lambda": point.lam, "kappa": point.kappa,
        "target": target.describe(), "trained_on": len(table),
        "cross_validation": {"folds": folds, **asdict(point), "strong_quality": strong_quality,
                             "strong_cost_usd": float(table.cost[:, -1].sum())},
        "classifier": dict(classifier.meta), "scorer": dict(scorer_artefact.meta),
    }
    arrays = {"costs": costs, "pre_x": pre_x, "pre_y": pre_y, "post_x": post_x, "post_y": post_y, "post_mix": mix,
              **{f"classifier.{k}": v for k, v in classifier.arrays.items()},
              **{f"scorer.{k}": v for k, v in scorer_artefact.arrays.items()}}
    return Artefact("cascade_routing", meta, arrays)


@dataclass(frozen=True)
class RoutingEvaluation:
    """Cascade routing replayed over rows: at the artefact's λ, and over every λ."""

    point: RoutingPoint
    strong_quality: float
    strong_cost_usd: float
    curve: list[RoutingPoint] = field(repr=False)

    @property
    def quality_ratio(self) -> float:
        return self.point.quality / self.strong_quality if self.strong_quality else 0.0

    @property
    def cost_ratio(self) -> float:
        return self.point.cost_usd / self.strong_cost_usd if self.strong_cost_usd else 0.0


def evaluate_cascade_routing(rows: Sequence[EvalRow], artefact: Artefact, *, lam: float | None = None) -> RoutingEvaluation:
    """Replay a trained artefact over ``rows`` through the runtime policy's own estimators and rule."""
    return replay_routing(rows, CascadeRoutingPolicy.of(artefact), artefact.labels, lam=lam)


def replay_routing(rows: Sequence[EvalRow], policy: CascadeRoutingPolicy, models: Sequence[str], *,
                   lam: float | None = None, step: str | None = None) -> RoutingEvaluation:
    """Replay a cascade routing over ``rows`` (``models``: the outcome model of each of its
    tiers, cheap to strong) at ``lam`` (default: the policy's) and over every λ of :data:`LAMBDAS`."""
    from steproute.evaluation._evaluate import request_of

    table = CascadeTable.of(rows, models)
    raw = np.array([policy.estimator.scores(request_of(r, step)) for r in rows]).reshape(len(rows), len(models))
    pre = policy.model.pre(raw)
    post_raw = _probabilities(policy.scorer, table, np.arange(len(table)))
    post = np.column_stack([policy.model.post(j, post_raw[:, j], raw[:, j]) for j in range(post_raw.shape[1])])
    chosen = policy.lam if lam is None else lam
    point = simulate(pre, post, table, policy.model.costs, chosen, policy.kappa)
    curve = [simulate(pre, post, table, policy.model.costs, x, policy.kappa) for x in LAMBDAS]
    strong_quality, strong_cost = table.strong()
    return RoutingEvaluation(point, strong_quality, strong_cost, curve)


def calibrate_routing(rows: Sequence[EvalRow], policy: CascadeRoutingPolicy, models: Sequence[str], target: Target, *,
                      step: str | None = None) -> RoutingPoint:
    """The λ that meets ``target`` at the lowest cost on ``rows`` (``steproute calibrate``).
    ``ValueError`` when no λ does."""
    result = replay_routing(rows, policy, models, step=step)
    return choose_point(result.curve, target, result.strong_quality)
