"""What the learned policies share: an estimate of each tier's quality, and one threshold rule.

A scoring policy estimates, for one request, the quality each tier would give (tiers cheap to
strong). It picks the cheapest tier whose estimate is at most ``threshold`` below the best
estimate among stronger tiers: ``threshold`` is the expected quality a call may give up to
save money (0.05 = five points of accuracy). The same rule, vectorised, draws the evaluation
curves (:func:`steproute.evaluation.choose_tiers`), so what is evaluated is what runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from steproute.policies._artefact import Artefact
from steproute.policies.base import Choice
from steproute.types import StepRequest

__all__ = ["ScoringPolicy", "pick"]


def pick(scores: Sequence[float], threshold: float) -> int:
    """Index of the cheapest tier whose score is at most ``threshold`` below the best stronger one.

    Example:
        >>> pick([0.80, 0.83], 0.05), pick([0.40, 0.90], 0.05)
        (0, 1)
    """
    best_stronger = -math.inf
    chosen = len(scores) - 1
    for i in range(len(scores) - 1, -1, -1):
        if scores[i] >= best_stronger - threshold:
            chosen = i
        if scores[i] > best_stronger:
            best_stronger = scores[i]
    return chosen


class ScoringPolicy:
    """Base of the policies that estimate each tier's quality (``classifier``, ``semantic``)."""

    name = "scoring"
    tiers: tuple[str, ...]
    """The router tier of each estimate, cheap to strong."""
    threshold: float

    def _bind(self, artefact: Artefact, tiers: Sequence[str] | None, threshold: float | None) -> None:
        """Tier names for the artefact's labels (default: the labels), and the threshold."""
        self.labels = artefact.labels
        self.meta = artefact.meta
        self.tiers = tuple(tiers) if tiers is not None else self.labels
        if len(self.tiers) != len(self.labels):
            raise ValueError(f"the artefact estimates {len(self.labels)} tiers ({', '.join(self.labels)}); "
                             f"{len(self.tiers)} given ({', '.join(self.tiers)})")
        self.threshold = float(artefact.threshold if threshold is None else threshold)

    def scores(self, request: StepRequest) -> np.ndarray:  # pragma: no cover - abstract
        """Estimated quality of each tier for this request."""
        raise NotImplementedError

    def scores_many(self, requests: Sequence[StepRequest]) -> np.ndarray:
        """``(len(requests), tiers)`` estimates, for evaluation."""
        return np.array([self.scores(r) for r in requests]).reshape(len(requests), len(self.tiers))

    def choose(self, request: StepRequest) -> Choice:
        scores: list[float] = self.scores(request).tolist()
        i = pick(scores, self.threshold)
        margin = max(scores[i + 1:]) - scores[i] if i + 1 < len(scores) else 0.0
        return Choice(self.tiers[i], self._reason_format().format(*scores), score=round(margin, 4))

    def _reason_format(self) -> str:
        """``"<name>: estimated quality fast={:.2f}, strong={:.2f}; threshold 0.05"``, built once per
        name, tiers and threshold (a decision formats only the estimates)."""
        key = (self.name, self.tiers, self.threshold)
        cached = getattr(self, "_reason_cache", None)
        if cached is None or cached[0] != key:
            shown = ", ".join(f"{t.replace('{', '{{').replace('}', '}}')}={{:.2f}}" for t in self.tiers)
            cached = self._reason_cache = (key, f"{self.name}: estimated quality {shown}; threshold {self.threshold:g}")
        return cached[1]
