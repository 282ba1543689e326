"""Building a ``semantic`` artefact: the reference set and its tuned neighbourhood."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from steproute.evaluation._calibrate import Target, calibrate
from steproute.evaluation._embeddings import embed_texts
from steproute.evaluation._format import EvalRow
from steproute.evaluation._metrics import Outcomes, summarise
from steproute.evaluation._threshold_cv import fold_thresholds
from steproute.evaluation._train import DEFAULT_TARGET, request_of
from steproute.policies._artefact import Artefact, pack_strings
from steproute.policies.features import get_encoder, routing_text

__all__ = ["SEMANTIC_DEFAULTS", "train_semantic"]

SEMANTIC_DEFAULTS = {"neighbours": 300, "temperature": 0.2, "prior_weight": 1.0, "same_step_bonus": 0.3}


def _artefact(rows: Sequence[EvalRow], models: Sequence[str], encoder: str, threshold: float, meta: dict,
              embeddings: np.ndarray) -> Artefact:
    steps = sorted({r.step for r in rows})
    index = {s: i for i, s in enumerate(steps)}
    arrays: dict[str, np.ndarray] = {
        "embeddings": embeddings.astype(np.float16), "quality": Outcomes.of(rows, models).quality.astype(np.float32),
        "step_ids": np.array([index[r.step] for r in rows], dtype=np.int32), "steps": pack_strings(steps)}
    return Artefact("semantic", {"labels": list(models), "encoder": encoder, "threshold": threshold,
                                 "rows": len(rows), **SEMANTIC_DEFAULTS, **meta}, arrays)


def train_semantic(rows: Sequence[EvalRow], models: Sequence[str], *, target: Target | None = None, folds: int = 5,
                   encoder: str = "wordllama-l2-256", progress: Any = None,
                   embedding_cache: str | os.PathLike[str] | bool = True, **_: Any) -> Artefact:
    """A ``semantic`` artefact holding every row as a reference.

    With ``folds`` >= 2 the threshold for ``target`` is read off out-of-fold estimates (each
    fold's rows answered from the other folds' references). Every query is embedded once per
    run (the folds slice the same embeddings) and kept on disk as ``embedding_cache`` says
    (see :func:`~steproute.evaluation._train.train_classifier`).

    Example:
        >>> from steproute.evaluation import EvalRow, Outcome
        >>> rows = [EvalRow(f"q{i}", ({"role": "user", "content": f"question {i}"},),
        ...                 {"cheap": Outcome(float(i % 2), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(20)]
        >>> train_semantic(rows, ("cheap", "strong"), folds=0, embedding_cache=False).arrays["embeddings"].shape
        (20, 256)
    """
    from steproute.policies.semantic import SemanticPolicy

    target = target or DEFAULT_TARGET
    meta: dict[str, Any] = {"target": target.describe()}
    threshold = 0.0
    outcomes = Outcomes.of(rows, models)  # every row needs every model's outcome: checked before embedding
    queries = [routing_text(request_of(r))[0] for r in rows]
    embeddings = embed_texts(get_encoder(encoder), queries, cache=embedding_cache, progress=progress)
    if folds >= 2:
        oof = np.zeros(outcomes.quality.shape)
        order = np.random.default_rng(0).permutation(len(rows))
        bar = progress("cross-validation folds", folds) if progress else None
        for f in range(folds):
            test = order[f::folds]
            train = np.setdiff1d(order, test)
            policy = SemanticPolicy(_artefact([rows[i] for i in train], models, encoder, 0.0, {}, embeddings[train]))
            oof[test] = [policy.estimate(embeddings[i], rows[i].step) for i in test]
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        curve = summarise(oof, outcomes, 0.0)[1]
        threshold = calibrate(curve, target, float(outcomes.quality[:, -1].mean())).threshold
        summary = summarise(oof, outcomes, threshold)[0]
        spread = fold_thresholds(oof, outcomes, target, folds=folds, steps=[r.step for r in rows])
        meta["cross_validation"] = {"folds": folds, **summary.to_json(), "thresholds": spread.to_json()}
    return _artefact(rows, models, encoder, threshold, meta, embeddings)
