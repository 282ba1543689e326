"""``semantic``: estimate each tier's quality from the most similar reference queries.

The artefact holds reference queries (their embeddings and step) and how each tier did on
them. A request's estimate per tier is the similarity-weighted mean quality of its
``neighbours`` nearest references (softmax of cosine similarity at ``temperature``, with a
``same_step_bonus`` for references of the same step), shrunk towards the overall mean by
``prior_weight``. The tier is picked by the same threshold rule as ``classifier``.

The default encoder is the static one (no torch); ``--encoder all-minilm-l6-v2`` at training
uses all-MiniLM-L6-v2 (the ``semantic`` extra), loaded lazily when the policy starts.

Example:
    .. code-block:: yaml

        steps:
          answer:
            policy: semantic
            artefact: answer-semantic.steproute   # steproute train --policy semantic ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from steproute.policies._artefact import Artefact, built, load_artefact, unpack_strings
from steproute.policies._scoring import ScoringPolicy
from steproute.policies.features import get_encoder, routing_text
from steproute.types import StepRequest

__all__ = ["SemanticPolicy"]


class SemanticPolicy(ScoringPolicy):
    """Route by the outcomes of the nearest reference queries (see the module docstring)."""

    name = "semantic"

    def __init__(self, artefact: Artefact, tiers: Sequence[str] | None = None, threshold: float | None = None) -> None:
        a, meta = artefact.arrays, artefact.meta
        self._bind(artefact, tiers, threshold)
        self._embeddings = a["embeddings"].astype(np.float32)
        self._quality = a["quality"].astype(np.float64)
        self._step_of = a["step_ids"]
        self._steps = {s: i for i, s in enumerate(unpack_strings(a["steps"]))}
        self._prior = self._quality.mean(axis=0)
        self.neighbours = min(int(meta["neighbours"]), len(self._embeddings))
        self.temperature = float(meta["temperature"])
        self.prior_weight = float(meta["prior_weight"])
        self.same_step_bonus = float(meta["same_step_bonus"])
        self._encoder = get_encoder(meta["encoder"])

    @classmethod
    def load(cls, path: str | os.PathLike[str], tiers: Sequence[str] | None = None,
             threshold: float | None = None) -> SemanticPolicy:
        artefact = load_artefact(path, "semantic")
        return built(path, lambda: cls(artefact, tiers, threshold))

    def _estimate(self, similarity: np.ndarray) -> np.ndarray:
        k = self.neighbours
        top = np.argpartition(-similarity, k - 1)[:k] if k < len(similarity) else np.arange(len(similarity))
        s = similarity[top]
        w = np.exp((s - s.max()) / self.temperature)
        return (w @ self._quality[top] + self.prior_weight * self._prior) / (w.sum() + self.prior_weight)

    def scores(self, request: StepRequest) -> np.ndarray:
        query, _, _ = routing_text(request)
        return self.estimate(self._encoder.encode_one(query), request.step)

    def estimate(self, embedding: np.ndarray, step: str) -> np.ndarray:
        """Estimated quality of each tier for a query already embedded (by this artefact's encoder).

        Training's cross-validation embeds every query once and asks this for each fold.

        Example:
            >>> import numpy as np
            >>> from steproute.policies._artefact import Artefact, pack_strings
            >>> policy = SemanticPolicy(Artefact("semantic", {"labels": ["fast", "strong"], "encoder": "wordllama-l2-256",
            ...     "threshold": 0.05, "neighbours": 1, "temperature": 0.2, "prior_weight": 0.0, "same_step_bonus": 0.0},
            ...     {"embeddings": np.eye(2, 256, dtype=np.float16), "quality": np.array([[1.0, 1.0], [0.0, 1.0]]),
            ...      "step_ids": np.zeros(2, dtype=np.int32), "steps": pack_strings(["answer"])}))
            >>> policy.estimate(np.eye(2, 256, dtype=np.float32)[1], "answer").tolist()
            [0.0, 1.0]
        """
        similarity = self._embeddings @ embedding
        step_id = self._steps.get(step)
        if step_id is not None and self.same_step_bonus:
            similarity = similarity + self.same_step_bonus * (self._step_of == step_id)
        return self._estimate(similarity)
