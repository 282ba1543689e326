"""Offline evaluation of routing policies: data format, loaders, metrics, calibration, training.

Runtime modules never import this package; it uses :mod:`steproute.policies`. Training and
plots need the ``learn`` extra (scikit-learn, wordllama, matplotlib).

Example:
    >>> import numpy as np
    >>> rows = [EvalRow(str(i), ({"role": "user", "content": "q"},),
    ...                 {"cheap": Outcome(float(i % 2), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(4)]
    >>> outcomes = Outcomes.of(rows, ["cheap", "strong"])
    >>> summary, curve = summarise(outcomes.oracle_scores(), outcomes, threshold=0.001)
    >>> summary.quality, summary.strong_share, summary.cpt50
    (1.0, 0.5, 0.25)
"""

from __future__ import annotations

from steproute.evaluation._calibrate import Target, calibrate
from steproute.evaluation._cascade import (
    CascadeEvaluation,
    CascadePoint,
    evaluate_cascade,
    replay_cascade,
    train_cascade,
)
from steproute.evaluation._decision_log import from_decision_log
from steproute.evaluation._ece import ReliabilityBin, ece, reliability
from steproute.evaluation._evaluate import Evaluation, evaluate, models_by_cost, split_rows
from steproute.evaluation._format import DataError, EvalRow, Loaded, Outcome, read_rows, write_rows
from steproute.evaluation._metrics import (
    Curve,
    Outcomes,
    Point,
    Summary,
    aiq,
    apgr,
    choose_tiers,
    cpt,
    summarise,
    sweep,
)
from steproute.evaluation._routellm import load_gsm8k, load_mmlu, load_mt_bench, load_routellm

__all__ = [
    "CascadeEvaluation",
    "CascadePoint",
    "Curve",
    "DataError",
    "EvalRow",
    "Evaluation",
    "Loaded",
    "Outcome",
    "Outcomes",
    "Point",
    "ReliabilityBin",
    "Summary",
    "Target",
    "aiq",
    "apgr",
    "calibrate",
    "choose_tiers",
    "cpt",
    "ece",
    "evaluate",
    "evaluate_cascade",
    "from_decision_log",
    "load_gsm8k",
    "load_mmlu",
    "load_mt_bench",
    "load_routellm",
    "models_by_cost",
    "read_rows",
    "reliability",
    "replay_cascade",
    "split_rows",
    "summarise",
    "sweep",
    "train_cascade",
    "write_rows",
]
