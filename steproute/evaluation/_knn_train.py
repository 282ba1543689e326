"""Building a ``knn`` artefact: the references, and k, weighting and representation chosen by cross-validation.

Each distinct text is embedded once per run (:func:`~steproute.evaluation._embeddings.embed_texts`,
with its on-disk cache); every fold and every point of the grid slices the same embeddings.
Per fold, what is learned from rows (the text measures' mean and spread, each step's mean
outcome) comes from that fold's training rows only. For one representation the held-out
rows' nearest references are sorted once, and every ``k``, weighting and prior strength is
read off that sort, so the grid costs little more than one pass.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steproute.evaluation._calibrate import Target, calibrate
from steproute.evaluation._embeddings import embed_texts
from steproute.evaluation._format import EvalRow
from steproute.evaluation._metrics import Outcomes, apgr, summarise, sweep
from steproute.evaluation._train import DEFAULT_TARGET, Progress, request_of
from steproute.policies._artefact import Artefact, pack_strings
from steproute.policies.features import HAND_FEATURES, get_encoder, hand_features, routing_text
from steproute.policies.knn import neighbour_estimates

__all__ = ["KNN_GRID", "KnnParts", "knn_artefact", "knn_cross_validation", "step_folds", "train_knn"]

KNN_GRID: dict[str, tuple[Any, ...]] = {
    "k": (5, 10, 20, 50, 100, 200, 400),
    "weighting": ("uniform", "distance"),
    "prior_strength": (0.0, 5.0, 20.0),
    "hand_weight": (0.0, 0.2),
    "step_penalty": (0.0, 0.5, 4.0),
}
"""What cross-validation chooses from (the first three are read off one sort per representation)."""
CONTEXT_WEIGHT = 0.5
DISTANCE_FLOOR = 0.05
STEP_PRIOR = 10.0
"""Pseudo-rows of the overall mean in each step's mean (a step with few rows leans on the whole)."""


@dataclass(frozen=True)
class KnnParts:
    """Every row's embeddings, text measures, step and outcomes: computed once per run."""

    query: np.ndarray
    context: np.ndarray
    hand: np.ndarray
    steps: tuple[str, ...]
    quality: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[EvalRow], models: Sequence[str], encoder: str = "wordllama-l2-256",
           cache: str | os.PathLike[str] | bool = True, progress: Progress | None = None) -> KnnParts:
        outcomes = Outcomes.of(rows, models)  # every row needs every model's outcome: checked before embedding
        texts = [routing_text(request_of(r)) for r in rows]
        n = len(texts)
        both = embed_texts(get_encoder(encoder), [q for q, _, _ in texts] + [c for _, c, _ in texts], cache=cache,
                           progress=progress)
        context = both[n:].copy()
        context[[not c for _, c, _ in texts]] = 0.0  # no earlier turns: no context vector, as at runtime
        hand = np.array([hand_features(*t) for t in texts], dtype=float).reshape(n, len(HAND_FEATURES))
        return cls(both[:n], context, hand, tuple(r.step for r in rows), outcomes.quality)

    def references(self, idx: np.ndarray, hand_weight: float, hand_mean: np.ndarray, hand_scale: np.ndarray) -> np.ndarray:
        """The rows at ``idx`` as points: ``[query | context × CONTEXT_WEIGHT | standardised hand × hand_weight]``."""
        return np.hstack([self.query[idx], CONTEXT_WEIGHT * self.context[idx],
                          hand_weight * (self.hand[idx] - hand_mean) / hand_scale]).astype(np.float32)


def _hand_stats(hand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sd = hand.std(axis=0)
    return hand.mean(axis=0), np.where(sd > 0, sd, 1.0)


def _step_means(steps: Sequence[str], quality: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted step names, each step's mean outcome per tier (shrunk to the overall mean), the overall mean."""
    names = sorted(set(steps))
    overall = quality.mean(axis=0)
    index = {s: i for i, s in enumerate(names)}
    ids = np.array([index[s] for s in steps])
    sums = np.zeros((len(names), quality.shape[1]))
    np.add.at(sums, ids, quality)
    counts = np.bincount(ids, minlength=len(names))[:, None]
    return names, (sums + STEP_PRIOR * overall) / (counts + STEP_PRIOR), overall


def step_folds(steps: Sequence[str], folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` indices of each fold, stratified by step: the classifier's folds
    (:func:`~steproute.evaluation._train.cross_validated_scores`), so members' estimates line up."""
    from sklearn.model_selection import StratifiedKFold

    s = np.array(steps)
    counts = {x: int((s == x).sum()) for x in set(steps)}
    strata = np.array([x if counts[x] >= folds else "_rare" for x in steps])
    y = strata if len(set(strata)) > 1 else np.zeros(len(steps))
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(steps)), y))


def _nearest(parts: KnnParts, train: np.ndarray, test: np.ndarray, hand_weight: float, step_penalty: float,
             kmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each test row: its ``kmax`` nearest training rows' distances (ascending), outcomes, and its step's mean."""
    mean, scale = _hand_stats(parts.hand[train])
    ref = parts.references(train, hand_weight, mean, scale).astype(np.float64)
    x = parts.references(test, hand_weight, mean, scale).astype(np.float64)
    names, step_mean, overall = _step_means([parts.steps[i] for i in train], parts.quality[train])
    index = {s: i for i, s in enumerate(names)}
    train_steps = np.array([index[parts.steps[i]] for i in train])
    test_steps = np.array([index.get(parts.steps[i], -1) for i in test])
    prior = np.array([step_mean[s] if s >= 0 else overall for s in test_steps])
    kmax = min(kmax, len(train))
    dist = np.zeros((len(test), kmax))
    qual = np.zeros((len(test), kmax, parts.quality.shape[1]))
    norm2 = np.einsum("ij,ij->i", ref, ref)
    for start in range(0, len(test), 512):
        xs = x[start:start + 512]
        d2 = norm2[None, :] + np.einsum("ij,ij->i", xs, xs)[:, None] - 2.0 * xs @ ref.T
        ts = test_steps[start:start + 512]
        if step_penalty:
            d2 += step_penalty * ((train_steps[None, :] != ts[:, None]) & (ts[:, None] >= 0))
        top = np.argpartition(d2, kmax - 1, axis=1)[:, :kmax] if kmax < len(train) else np.tile(np.arange(kmax), (len(xs), 1))
        order = np.argsort(np.take_along_axis(d2, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        dist[start:start + 512] = np.sqrt(np.maximum(np.take_along_axis(d2, top, axis=1), 0.0))
        qual[start:start + 512] = parts.quality[train][top]
    return dist, qual, prior


def _quick_apgr(scores: np.ndarray, outcomes: Outcomes) -> float:
    """APGR of out-of-fold estimates on a coarser sweep (200 points): enough to rank the grid."""
    curve = sweep(scores, outcomes, max_points=200)
    return apgr(curve, float(outcomes.quality[:, 0].mean()), float(outcomes.quality[:, -1].mean()))


def knn_cross_validation(parts: KnnParts, models: Sequence[str], folds: int = 5, seed: int = 0,
                         progress: Progress | None = None,
                         grid: dict[str, tuple[Any, ...]] | None = None) -> tuple[dict[str, Any], np.ndarray, list[dict]]:
    """``(chosen parameters, their out-of-fold estimates, every grid point's CV APGR)``: the
    parameters with the best APGR of out-of-fold estimates (ties: the first in grid order)."""
    grid = {**KNN_GRID, **(grid or {})}
    n = len(parts.steps)
    splits = step_folds(parts.steps, folds, seed)
    outcomes = Outcomes(tuple(models), parts.quality, np.zeros_like(parts.quality))
    kmax = max(grid["k"])
    representations = list(itertools.product(grid["hand_weight"], grid["step_penalty"]))
    bar = progress("cross-validation (k, weighting, representation)", len(representations) * folds) if progress else None
    results: list[dict] = []
    best: tuple[float, dict[str, Any], np.ndarray] | None = None
    for hand_weight, step_penalty in representations:
        found = [(test, *_nearest(parts, train, test, hand_weight, step_penalty, kmax)) for train, test in splits]
        if bar:
            bar.update(folds)
        for k, weighting, strength in itertools.product(grid["k"], grid["weighting"], grid["prior_strength"]):
            oof = np.zeros(parts.quality.shape)
            for test, dist, qual, prior in found:
                oof[test] = neighbour_estimates(dist, qual, prior, min(k, dist.shape[1]), weighting, strength,
                                                DISTANCE_FLOOR)
            params = {"k": k, "weighting": weighting, "prior_strength": strength, "hand_weight": hand_weight,
                      "step_penalty": step_penalty}
            score = _quick_apgr(oof, outcomes) if n else 0.0
            results.append({**params, "apgr": round(score, 4)})
            if best is None or score > best[0] + 1e-12:
                best = (score, params, oof)
    if bar:
        bar.close()
    assert best is not None
    return best[1], best[2], results


def knn_artefact(parts: KnnParts, models: Sequence[str], encoder: str, params: dict[str, Any], threshold: float,
                 meta: dict[str, Any] | None = None) -> Artefact:
    """The artefact holding every row as a reference, with ``params``."""
    idx = np.arange(len(parts.steps))
    mean, scale = _hand_stats(parts.hand)
    names, step_mean, overall = _step_means(parts.steps, parts.quality)
    index = {s: i for i, s in enumerate(names)}
    references = parts.references(idx, float(params["hand_weight"]), mean, scale).astype(np.float16)
    arrays: dict[str, np.ndarray] = {"references": references,
              "quality": parts.quality.astype(np.float32),
              "step_ids": np.array([index[s] for s in parts.steps], dtype=np.int32), "steps": pack_strings(names),
              "step_mean": step_mean, "global_mean": overall, "hand_mean": mean, "hand_scale": scale}
    return Artefact("knn", {"labels": list(models), "encoder": encoder, "threshold": threshold, "rows": len(idx),
                            "embedding_dim": int(parts.query.shape[1]), "context_weight": CONTEXT_WEIGHT,
                            "distance_floor": DISTANCE_FLOOR, "k": int(params["k"]), "weighting": params["weighting"],
                            "prior_strength": float(params["prior_strength"]),
                            "hand_weight": float(params["hand_weight"]), "step_penalty": float(params["step_penalty"]),
                            **(meta or {})}, arrays)


def train_knn(rows: Sequence[EvalRow], models: Sequence[str], *, target: Target | None = None, folds: int = 5,
              encoder: str = "wordllama-l2-256", progress: Progress | None = None,
              embedding_cache: str | os.PathLike[str] | bool = True, grid: dict[str, tuple[Any, ...]] | None = None,
              **_: Any) -> Artefact:
    """A ``knn`` artefact holding every row as a reference.

    With ``folds`` >= 2, ``k``, the weighting, the prior strength and the representation's
    weights are chosen from ``grid`` (default :data:`KNN_GRID`) by the APGR of out-of-fold
    estimates (folds stratified by step), and the threshold for ``target`` is read off those
    estimates; with fewer folds the first value of each is used and the threshold is 0.

    Example:
        >>> from steproute.evaluation import EvalRow, Outcome
        >>> rows = [EvalRow(f"q{i}", ({"role": "user", "content": f"question {i}"},),
        ...                 {"cheap": Outcome(float(i % 2), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(20)]
        >>> art = train_knn(rows, ("cheap", "strong"), folds=0, embedding_cache=False)
        >>> art.arrays["references"].shape, art.meta["k"]
        ((20, 519), 5)
    """
    target = target or DEFAULT_TARGET
    parts = KnnParts.of(rows, models, encoder, embedding_cache, progress)
    meta: dict[str, Any] = {"target": target.describe()}
    threshold = 0.0
    if folds >= 2:
        params, oof, results = knn_cross_validation(parts, models, folds, 0, progress, grid)
        outcomes = Outcomes.of(rows, models)
        curve = summarise(oof, outcomes, 0.0)[1]
        threshold = calibrate(curve, target, float(outcomes.quality[:, -1].mean())).threshold
        summary = summarise(oof, outcomes, threshold)[0]
        meta["cross_validation"] = {"folds": folds, **summary.to_json()}
        meta["grid"] = sorted(results, key=lambda r: -r["apgr"])[:10]
    else:
        params = {key: values[0] for key, values in {**KNN_GRID, **(grid or {})}.items()}
    return knn_artefact(parts, models, encoder, params, threshold, meta)
