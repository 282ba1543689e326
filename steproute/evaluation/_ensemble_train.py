"""``steproute train --policy ensemble``: a classifier and a kNN estimator, blended where cross-validation says it helps.

Both members are cross-validated on the same folds (stratified by step); the blend weight is
the value on :data:`BLEND_GRID` whose blended out-of-fold estimates give the best APGR (the
two single members are the grid's ends, and they win ties). The threshold for the target is
read off the chosen blend's out-of-fold estimates. When the chosen weight is 0 or 1 the
artefact written is that member's own (a plain ``classifier`` or ``knn`` artefact), since a
blend that does not beat it is not worth its decision time; ``meta["blend"]`` says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from steproute.evaluation._calibrate import Target, calibrate
from steproute.evaluation._format import EvalRow
from steproute.evaluation._knn_train import KnnParts, knn_artefact, knn_cross_validation
from steproute.evaluation._metrics import Outcomes, summarise
from steproute.evaluation._train import DEFAULT_TARGET, Progress, cross_validated_scores, train_classifier
from steproute.policies._artefact import Artefact

__all__ = ["BLEND_GRID", "bundle", "choose_blend", "train_ensemble"]

BLEND_GRID = (0.0, 1.0, 0.25, 0.5, 0.75)
"""The kNN member's weight (the classifier's is 1 minus it); the single members first, so they win ties."""


def choose_blend(first: np.ndarray, second: np.ndarray, outcomes: Outcomes,
                 grid: Sequence[float] = BLEND_GRID) -> tuple[float, list[dict[str, float]]]:
    """The weight ``w`` of ``second`` in ``(1 - w) * first + w * second`` with the best APGR,
    and every grid point's APGR (ties: the earlier in ``grid``).

    Example:
        >>> rows = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
        >>> o = Outcomes(("a", "b"), rows, np.ones_like(rows))
        >>> good, bad = rows[:, :1] * [0.5, 0] + [0, 0.7], np.full((4, 2), 0.5)
        >>> choose_blend(good, bad, o)[0]
        0.0
    """
    results = [{"weight": float(w), "apgr": summarise((1 - w) * first + w * second, outcomes, 0.0)[0].apgr}
               for w in grid]
    best = results[0]
    for r in results[1:]:
        if r["apgr"] > best["apgr"] + 1e-12:
            best = r
    return best["weight"], results


def bundle(members: Sequence[tuple[float, Artefact]], labels: Sequence[str], threshold: float,
           meta: dict[str, Any] | None = None) -> Artefact:
    """An ``ensemble`` artefact holding ``members`` (``(weight, artefact)``); member ``i``'s
    arrays are stored as ``m<i>.<name>``, its meta without labels and threshold."""
    arrays: dict[str, np.ndarray] = {}
    listed = []
    for i, (weight, artefact) in enumerate(members):
        arrays.update({f"m{i}.{k}": v for k, v in artefact.arrays.items()})
        inner = {k: v for k, v in artefact.meta.items() if k not in ("labels", "threshold", "cross_validation", "grid")}
        listed.append({"policy": artefact.policy, "weight": float(weight), "meta": inner})
    return Artefact("ensemble", {"labels": list(labels), "threshold": threshold, "members": listed, **(meta or {})}, arrays)


def train_ensemble(rows: Sequence[EvalRow], models: Sequence[str], *, target: Target | None = None, folds: int = 5,
                   encoder: str = "wordllama-l2-256", C: float = 0.3, progress: Progress | None = None,
                   embedding_cache: str | os.PathLike[str] | bool = True, **_: Any) -> Artefact:
    """Train a classifier and a kNN estimator, choose their blend by cross-validation (see the module docstring).

    ``meta["blend"]`` holds each member's and the chosen blend's cross-validated APGR, every
    grid point's, and ``chosen`` (``classifier``, ``knn`` or ``ensemble``): the kind written.
    """
    if folds < 2:
        raise ValueError("--policy ensemble chooses its weights by cross-validation: give --folds 2 or more")
    target = target or DEFAULT_TARGET
    outcomes = Outcomes.of(rows, models)
    parts = KnnParts.of(rows, models, encoder, embedding_cache, progress)
    params, knn_oof, _grid = knn_cross_validation(parts, models, folds, 0, progress)
    clf_oof = cross_validated_scores(rows, models, folds=folds, encoder=encoder, C=C, seed=0, progress=progress,
                                     embedding_cache=embedding_cache)
    weight, grid = choose_blend(clf_oof, knn_oof, outcomes)
    blended = (1 - weight) * clf_oof + weight * knn_oof
    curve = summarise(blended, outcomes, 0.0)[1]
    threshold = calibrate(curve, target, float(outcomes.quality[:, -1].mean())).threshold
    summary = summarise(blended, outcomes, threshold)[0]
    chosen = "classifier" if weight == 0.0 else "knn" if weight == 1.0 else "ensemble"
    by_weight = {g["weight"]: g["apgr"] for g in grid}
    mixed = max((g for g in grid if 0.0 < g["weight"] < 1.0), key=lambda g: g["apgr"])
    meta: dict[str, Any] = {
        "target": target.describe(), "cross_validation": {"folds": folds, **summary.to_json()},
        "blend": {"members": ["classifier", "knn"], "knn_weight": weight, "chosen": chosen,
                  "cv_apgr": {"classifier": by_weight[0.0], "knn": by_weight[1.0], "best_blend": mixed["apgr"]},
                  "best_blend_weight": mixed["weight"],
                  "grid": grid}}
    if chosen == "knn":
        return knn_artefact(parts, models, encoder, params, threshold, meta)
    clf = train_classifier(rows, models, folds=0, encoder=encoder, C=C, progress=progress, embedding_cache=embedding_cache)
    if chosen == "classifier":
        return Artefact("classifier", {**clf.meta, **meta, "threshold": threshold}, clf.arrays)
    knn = knn_artefact(parts, models, encoder, params, 0.0)
    return bundle([(1 - weight, clf), (weight, knn)], models, threshold, meta)
