"""The learned routers' training data and their cross-fitting.

Per-step rows (the data set the benchmark publishes): each step's input along the strongest
tier's run of a task, answered by every tier, each answer graded by the step's check. A
workload with no per-step checks (one shared model) gets a row per routed call of each fixed
tier's run instead, graded by the task's success, with that tier's outcome only.

Per-request rows: a task's whole request, with each tier's task success and cost.

Cross-fitting: tasks are split into folds; a task is routed by a router trained on the other
folds' rows only.

Measured tiers (:func:`step_tiers`): one tier per step, the cheapest whose mean step quality on
the rows is at least ``ratio`` of the best tier's — the table a user writes after reading
``steproute eval`` per step.

Example:
    >>> fold_of(["a", "b", "c", "d", "e"], 2)
    {'a': 0, 'b': 1, 'c': 0, 'd': 1, 'e': 0}
    >>> rows = [EvalRow(f"r{i}", (), {"tiny": Outcome(q, 1.0), "medium": Outcome(1.0, 9.0)}, step="plan")
    ...         for i, q in enumerate([1.0, 1.0, 0.0])]
    >>> step_tiers(rows, ("tiny", "medium")), step_tiers(rows, ("tiny", "medium"), ratio=0.6)
    ({'plan': 'medium'}, {'plan': 'tiny'})
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from steproute.evaluation import EvalRow, Outcome

MIN_ROWS = 4
"""Fewest rows a fold's router is trained on (TF-IDF needs a few documents)."""

__all__ = ["MIN_ROWS", "call_rows", "fold_of", "outside_fold", "request_rows", "step_row", "step_tiers", "train_fold_artefacts"]


def fold_of(task_ids: Sequence[str], folds: int) -> dict[str, int]:
    """Each task's fold (round robin in the given order, which is already shuffled)."""
    k = max(1, min(folds, len(task_ids)))
    return {tid: i % k for i, tid in enumerate(task_ids)}


def outside_fold(rows: Iterable[EvalRow], fold: Mapping[str, int], k: int) -> list[EvalRow]:
    """The rows of tasks not in fold ``k`` (what fold ``k``'s router learns from)."""
    return [r for r in rows if fold.get(str(r.meta.get("task"))) != k]


def step_row(workload: str, task_id: str, step: str, kind: str | None, messages: Sequence[Mapping[str, Any]],
             outcomes: Mapping[str, Outcome], meta: Mapping[str, Any]) -> EvalRow:
    """One per-step row: ``step``'s input of ``task_id`` and each tier's graded answer."""
    return EvalRow(f"{workload}-{task_id}-{step}", tuple(dict(m) for m in messages), dict(outcomes), step=step,
                   kind=kind, meta={"task": task_id, **meta})


def call_rows(workload: str, task_id: str, tier: str, entries: Iterable[Mapping[str, Any]], success: bool) -> list[EvalRow]:
    """Rows from one fixed-tier run's logged calls (a workload without per-step checks): each call's
    messages, with that tier's outcome graded by the task's success."""
    rows = []
    for i, entry in enumerate(entries):
        messages = entry.get("messages") or []
        if not messages:
            continue
        rows.append(EvalRow(f"{workload}-{task_id}-{tier}-{i}", tuple(dict(m) for m in messages),
                            {tier: Outcome(float(success), float(entry.get("cost_usd") or 0.0))},
                            step=str(entry.get("step") or "default"), kind=entry.get("kind"),
                            meta={"task": task_id, "graded_by": "task success"}))
    return rows


def request_rows(workload: str, tasks: Mapping[str, str],
                 results: Mapping[str, Mapping[str, tuple[bool, float]]]) -> list[EvalRow]:
    """One row per task: ``tasks[id]`` (the whole request) and, per tier, ``results[tier][id]``
    (success, cost) of the always-that-tier run."""
    rows = []
    for tid, text in tasks.items():
        outcomes = {tier: Outcome(float(by_task[tid][0]), by_task[tid][1]) for tier, by_task in results.items() if tid in by_task}
        rows.append(EvalRow(f"{workload}-{tid}", ({"role": "user", "content": text},), outcomes, step="request",
                            meta={"task": tid}))
    return rows


def _train(rows: Sequence[EvalRow], tiers: Sequence[str], default_threshold: float) -> tuple[Any, float]:
    from steproute.evaluation._train import train_classifier

    complete = all(all(t in r.outcomes for t in tiers) for r in rows)
    folds = 3 if complete and len(rows) >= 15 else 0
    artefact = train_classifier(rows, tuple(tiers), folds=folds, embedding_cache=True)
    threshold = float(artefact.meta.get("threshold", 0.0)) if folds else default_threshold
    return artefact, threshold


def train_fold_artefacts(rows: Sequence[EvalRow], fold: Mapping[str, int], tiers: Sequence[str], out_dir: Path,
                         name: str, default_threshold: float,
                         log: Callable[[str], None] = lambda _: None) -> dict[int, tuple[Path | None, float]]:
    """For each fold: a classifier trained on the rows of the other folds' tasks, saved under
    ``out_dir``; its path and threshold (calibrated by cross-validation when there are enough
    rows with every tier's outcome, else ``default_threshold``). A fold with fewer than
    ``MIN_ROWS`` rows to learn from gets no router (``None``: its tasks go to the strongest tier,
    and the log says so)."""
    from steproute.policies._artefact import save_artefact

    out: dict[int, tuple[Path | None, float]] = {}
    for k in sorted(set(fold.values())):
        train = outside_fold(rows, fold, k)
        if not train:
            train = list(rows)
            log(f"{name} fold {k}: no other fold to train on; trained on every row (not cross-fitted)")
        if len(train) < MIN_ROWS:
            out[k] = (None, default_threshold)
            log(f"{name} fold {k}: {len(train)} rows to learn from (< {MIN_ROWS}): no router trained; "
                f"its tasks go to the strongest tier")
            continue
        artefact, threshold = _train(train, tiers, default_threshold)
        path = out_dir / f"{name}-fold{k}.steproute"
        save_artefact(artefact, os.fspath(path))
        out[k] = (path, threshold)
        log(f"{name} fold {k}: trained on {len(train)} rows, threshold {threshold:.3g}")
    return out


def step_tiers(rows: Iterable[EvalRow], tiers: Sequence[str], ratio: float = 0.95) -> dict[str, str]:
    """Per step, the cheapest of ``tiers`` (cheap to strong) whose mean quality over the step's rows
    is at least ``ratio`` of the best tier's mean; a tier a step's rows never answered is not a
    candidate (rows with one tier's outcome each, as :func:`call_rows` writes, count per tier)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        by_tier = sums.setdefault(str(row.step or "default"), {})
        for tier, outcome in row.outcomes.items():
            by_tier.setdefault(tier, []).append(float(outcome.quality))
    out = {}
    for step, by_tier in sums.items():
        means = {t: sum(q) / len(q) for t, q in by_tier.items() if q and t in tiers}
        if not means:
            continue
        best = max(means.values())
        out[step] = next(t for t in tiers if t in means and means[t] >= ratio * best)
    return out
