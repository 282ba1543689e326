"""Replaying a policy (an artefact, or a step of a configuration) over rows of the evaluation format."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from steproute.evaluation._ece import reliability
from steproute.evaluation._format import EvalRow
from steproute.evaluation._metrics import Curve, Outcomes, Point, Summary, summarise, sweep
from steproute.types import StepRequest

__all__ = ["Evaluation", "evaluate", "models_by_cost", "split_rows"]


def request_of(row: EvalRow, step: str | None = None) -> StepRequest:
    return StepRequest(step or row.step, row.messages, kind=row.kind)


def models_by_cost(rows: Sequence[EvalRow]) -> tuple[str, ...]:
    """The models in the rows, cheapest first (by mean cost where they answered)."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        for model, outcome in row.outcomes.items():
            totals.setdefault(model, []).append(outcome.cost_usd)
    return tuple(sorted(totals, key=lambda m: (float(np.mean(totals[m])), m)))


def split_rows(rows: Sequence[EvalRow], test_share: float, seed: int = 0) -> tuple[list[EvalRow], list[EvalRow]]:
    """A random split that holds out ``test_share`` of every step's rows (as the judges' hold-out does)."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be between 0 and 1, got {test_share}")
    rng = np.random.default_rng(seed)
    by_step: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_step.setdefault(row.step, []).append(i)
    test: set[int] = set()
    for indices in by_step.values():
        picked = rng.permutation(indices)[: round(len(indices) * test_share)]
        test.update(int(i) for i in picked)
    return [r for i, r in enumerate(rows) if i not in test], [r for i, r in enumerate(rows) if i in test]


@dataclass(frozen=True)
class Evaluation:
    """A policy's figures on a data set, its curve, and the oracle's curve for reference."""

    policy: str
    summary: Summary
    curve: Curve
    oracle: Curve
    tiers: tuple[str, ...]
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Each row's estimate per tier (a scoring policy's), for calibration and the reliability table."""
    outcomes: Outcomes | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = {"policy": self.policy, "tiers": list(self.tiers), **self.summary.to_json(),
               "curve": [p.__dict__ for p in self.curve.points[:: max(1, len(self.curve.points) // 200)]]}
        if self.scores is not None and self.outcomes is not None and self.summary.ece is not None:
            out["reliability"] = [b.__dict__ for b in reliability(self.scores, self.outcomes.quality)]
        return out


def is_artefact(path: Path) -> bool:
    import zipfile

    return path.suffix not in (".yaml", ".yml", ".toml") and zipfile.is_zipfile(path)


def evaluate(rows: Sequence[EvalRow], policy: str | os.PathLike[str], *, step: str | None = None,
             models: Mapping[str, str] | None = None, threshold: float | None = None, progress: Any = None) -> Evaluation:
    """Replay ``policy`` over ``rows``.

    ``policy`` is an artefact file (``classifier`` or ``semantic``; its models are the rows'
    model names) or a configuration file, whose policy for each row's step (or ``step``)
    decides; a tier answers with its first deployment's model, or the one ``models`` maps
    it to. Scoring policies are swept over their threshold (the curve); others give one point.
    """
    path = Path(policy)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such artefact or configuration file")
    requests = [request_of(r, step) for r in rows]
    if is_artefact(path):
        from steproute.policies._artefact import load_artefact

        artefact = load_artefact(path)
        cls = _policy_class(artefact.policy)
        scorer = cls(artefact, None, threshold)
        labels = scorer.labels
        return _scored(f"{artefact.policy} {path.name}", scorer, requests, Outcomes.of(rows, labels), labels, progress)
    from steproute.policies._scoring import ScoringPolicy
    from steproute.router import StepRouter

    router = StepRouter.from_file(path)
    tier_model = {t: router.deployments(t)[0].model for t in router.tiers}
    tier_model.update(models or {})
    order = tuple(tier_model[t] for t in router.tiers)
    outcomes = Outcomes.of(rows, order)
    steps = {r.step for r in requests}
    if len(steps) == 1:
        plan_policy = router.policy_of(next(iter(steps)))
        if isinstance(plan_policy, ScoringPolicy) and tuple(plan_policy.tiers) == router.tiers:
            return _scored(f"{plan_policy.name} ({path.name})", plan_policy, requests, outcomes, router.tiers, progress,
                           threshold)
    bar = progress("deciding", len(requests)) if progress else None
    choice = np.empty(len(requests), dtype=int)
    for i, request in enumerate(requests):
        choice[i] = router.tiers.index(router.decide(request).tier)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    quality, cost, share = outcomes.at(choice)
    point = Curve((Point(float("nan"), share, quality, cost),))
    scores = np.zeros(outcomes.quality.shape)
    scores[np.arange(len(choice)), choice] = 1.0  # the decisions as a 0/1 estimate: one point on the curve
    summary = replace(summarise(scores, outcomes, 0.0)[0], ece=None)  # decisions, not estimates: no calibration error
    return Evaluation(f"config {path.name}", summary, point, sweep(outcomes.oracle_scores(), outcomes), router.tiers)


def _policy_class(kind: str) -> Any:
    if kind == "classifier":
        from steproute.policies.classifier import ClassifierPolicy

        return ClassifierPolicy
    if kind == "semantic":
        from steproute.policies.semantic import SemanticPolicy

        return SemanticPolicy
    if kind in ("knn", "ensemble"):
        from steproute.policies.ensemble import EnsemblePolicy
        from steproute.policies.knn import KnnPolicy

        return KnnPolicy if kind == "knn" else EnsemblePolicy
    if kind == "irt":
        from steproute.policies.irt import IrtPolicy

        return IrtPolicy
    raise ValueError(f"no policy reads a {kind!r} artefact")


def _scored(name: str, scorer: Any, requests: Sequence[StepRequest], outcomes: Outcomes, tiers: Sequence[str],
            progress: Any, threshold: float | None = None) -> Evaluation:
    """Score every request, sweep the threshold, summarise at ``threshold`` (default: the policy's)."""
    bar = progress("scoring", len(requests)) if progress else None
    scores = np.zeros(outcomes.quality.shape)
    for i, request in enumerate(requests):
        scores[i] = scorer.scores(request)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    summary, curve = summarise(scores, outcomes, scorer.threshold if threshold is None else threshold)
    return Evaluation(name, summary, curve, sweep(outcomes.oracle_scores(), outcomes), tuple(tiers), scores, outcomes)
