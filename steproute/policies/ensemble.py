"""``ensemble``: a weighted average of several learned policies' per-tier estimates.

The artefact (``steproute train --policy ensemble``) bundles its members (``classifier``,
``semantic`` or ``knn`` artefacts) and their weights, chosen by cross-validation on the
training rows; the tier is picked from the blended estimate by the same threshold rule as
every scoring policy. Training writes an ensemble only when cross-validation says the blend
beats each member alone; otherwise it writes the best member's own artefact and says so.

Example:
    .. code-block:: yaml

        steps:
          answer:
            policy: ensemble
            artefact: answer-ensemble.steproute   # steproute train --policy ensemble ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from steproute.policies._artefact import Artefact, built, load_artefact, member_artefacts
from steproute.policies._scoring import ScoringPolicy
from steproute.types import StepRequest

__all__ = ["EnsemblePolicy", "member_policy"]


def member_policy(artefact: Artefact) -> Any:
    """The scoring policy that reads one member artefact (labels as tiers, threshold 0)."""
    if artefact.policy == "classifier":
        from steproute.policies.classifier import ClassifierPolicy

        return ClassifierPolicy(artefact)
    if artefact.policy == "semantic":
        from steproute.policies.semantic import SemanticPolicy

        return SemanticPolicy(artefact)
    if artefact.policy == "knn":
        from steproute.policies.knn import KnnPolicy

        return KnnPolicy(artefact)
    raise ValueError(f"an ensemble cannot hold a {artefact.policy!r} member")


class EnsemblePolicy(ScoringPolicy):
    """Route by the weighted mean of the members' estimates (see the module docstring)."""

    name = "ensemble"

    def __init__(self, artefact: Artefact, tiers: Sequence[str] | None = None, threshold: float | None = None) -> None:
        self._bind(artefact, tiers, threshold)
        members = [(w, member_policy(m)) for w, m in member_artefacts(artefact.meta, artefact.arrays) if w > 0]
        total = sum(w for w, _ in members)
        self.members = [(w / total, p) for w, p in members]
        """``(weight, policy)`` of each member with a weight above 0; the weights sum to 1."""

    @classmethod
    def load(cls, path: str | os.PathLike[str], tiers: Sequence[str] | None = None,
             threshold: float | None = None) -> EnsemblePolicy:
        """Load an artefact written by ``steproute train --policy ensemble``."""
        artefact = load_artefact(path, "ensemble")
        return built(path, lambda: cls(artefact, tiers, threshold))

    def scores(self, request: StepRequest) -> np.ndarray:
        """The members' estimates, weighted.

        Example:
            >>> class Const:
            ...     def __init__(self, v): self.v = v
            ...     def scores(self, request): return np.array(self.v)
            >>> policy = EnsemblePolicy.__new__(EnsemblePolicy)
            >>> policy.members = [(0.25, Const([0.5, 1.0])), (0.75, Const([0.5, 0.0]))]
            >>> policy.scores(StepRequest("answer", [])).tolist()
            [0.5, 0.25]
        """
        total = None
        for weight, member in self.members:
            s = weight * member.scores(request)
            total = s if total is None else total + s
        assert total is not None  # an ensemble has a member (the artefact check)
        return total
