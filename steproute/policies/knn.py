"""``knn``: plain k-nearest-neighbours over a standardised representation of the request.

How it differs from ``semantic`` (a softmax over the cosine similarity of the latest message
alone, 300 neighbours, fixed temperature, shrunk to the overall mean): a request here is a
point with four parts — the static embedding of the latest user message, the embedding of the
earlier user turns (scaled by ``context_weight``), the seven text measures standardised with
the training rows' mean and spread (scaled by ``hand_weight``), and its step (a reference of
another step is ``step_penalty`` further away, in squared distance). The ``k`` nearest
references by Euclidean distance vote with ``uniform`` or ``distance`` (inverse-distance)
weights, scaled to sum to ``k``; each tier's estimate is their mean outcome shrunk to the
*step's* mean outcome with ``prior_strength`` pseudo-references (Bayesian smoothing). ``k``,
the weighting, the prior strength and the representation's weights are chosen by
cross-validation on the training rows (``steproute train --policy knn``).

A decision is numpy only: the request's vector against the stored references (a
matrix-vector product; the context block is skipped when the request has no earlier turns),
one partial sort, one weighted mean. References are stored as float16.

Example:
    .. code-block:: yaml

        steps:
          answer:
            policy: knn
            artefact: answer-knn.steproute   # steproute train --policy knn ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from steproute.policies._artefact import Artefact, built, load_artefact, unpack_strings
from steproute.policies._scoring import ScoringPolicy
from steproute.policies.features import get_encoder, hand_features, routing_text
from steproute.types import StepRequest

__all__ = ["KnnPolicy", "neighbour_estimates"]


def neighbour_estimates(distance: np.ndarray, quality: np.ndarray, prior: np.ndarray, k: int, weighting: str,
                        prior_strength: float, distance_floor: float) -> np.ndarray:
    """Per-tier estimates from neighbours already sorted nearest first.

    ``distance``: ``(queries, K)`` distances of each query's ``K >= k`` nearest references,
    ascending; ``quality``: ``(queries, K, tiers)`` their outcomes; ``prior``: ``(queries,
    tiers)`` the step's mean outcome. The first ``k`` vote with weight 1 (``uniform``) or
    ``1 / (distance + distance_floor)`` (``distance``), scaled to sum to ``k``; the result is
    ``(sum(w q) + prior_strength * prior) / (k + prior_strength)``.

    Example:
        >>> d = np.array([[0.0, 1.0, 3.0]]); q = np.array([[[1.0], [0.0], [0.0]]])
        >>> neighbour_estimates(d, q, np.array([[0.5]]), 2, "uniform", 2.0, 0.0).tolist()
        [[0.5]]
        >>> neighbour_estimates(d, q, np.array([[0.5]]), 2, "distance", 0.0, 1.0).round(4).tolist()
        [[0.6667]]
    """
    d, q = distance[:, :k], quality[:, :k]
    if weighting == "uniform":
        w = np.ones_like(d)
    elif weighting == "distance":
        w = 1.0 / (d + distance_floor)
        w *= k / w.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"weighting must be 'uniform' or 'distance', not {weighting!r}")
    return (np.einsum("nk,nkt->nt", w, q) + prior_strength * prior) / (k + prior_strength)


class KnnPolicy(ScoringPolicy):
    """Route by the mean outcome of the k nearest training queries (see the module docstring)."""

    name = "knn"

    def __init__(self, artefact: Artefact, tiers: Sequence[str] | None = None, threshold: float | None = None) -> None:
        a, meta = artefact.arrays, artefact.meta
        self._bind(artefact, tiers, threshold)
        d = int(meta["embedding_dim"])
        ref = a["references"].astype(np.float32)  # [query emb | context emb × context_weight | hand × hand_weight]
        self._main = np.ascontiguousarray(np.hstack([ref[:, :d], ref[:, 2 * d:]]))
        self._context = np.ascontiguousarray(ref[:, d:2 * d])
        self._norm2 = np.einsum("ij,ij->i", ref, ref).astype(np.float64)
        self._quality = a["quality"].astype(np.float64)
        self._step_of = a["step_ids"]
        self._steps = {s: i for i, s in enumerate(unpack_strings(a["steps"]))}
        self._step_mean = a["step_mean"].astype(np.float64)
        self._global_mean = a["global_mean"].astype(np.float64)
        self._hand_mean, self._hand_scale = a["hand_mean"].astype(np.float64), a["hand_scale"].astype(np.float64)
        self.k = min(int(meta["k"]), len(ref))
        self.weighting = str(meta["weighting"])
        self.prior_strength = float(meta["prior_strength"])
        self.context_weight = float(meta["context_weight"])
        self.hand_weight = float(meta["hand_weight"])
        self.step_penalty = float(meta["step_penalty"])
        self.distance_floor = float(meta["distance_floor"])
        self._encoder = get_encoder(meta["encoder"])

    @classmethod
    def load(cls, path: str | os.PathLike[str], tiers: Sequence[str] | None = None,
             threshold: float | None = None) -> KnnPolicy:
        """Load an artefact written by ``steproute train --policy knn``."""
        artefact = load_artefact(path, "knn")
        return built(path, lambda: cls(artefact, tiers, threshold))

    def scores(self, request: StepRequest) -> np.ndarray:
        query, context, turns = routing_text(request)
        q = self._encoder.encode_one(query)
        c = self._encoder.encode_one(context) if context else None
        return self.estimate(q, c, hand_features(query, context, turns), request.step)

    def estimate(self, query: np.ndarray, context: np.ndarray | None, hand: Sequence[float], step: str) -> np.ndarray:
        """Estimated quality of each tier for a request already embedded and measured.

        Example:
            >>> from steproute.policies._artefact import pack_strings
            >>> meta = {"labels": ["fast", "strong"], "encoder": "wordllama-l2-256", "threshold": 0.0, "embedding_dim": 2,
            ...         "k": 1, "weighting": "uniform", "prior_strength": 0.0, "context_weight": 0.5,
            ...         "hand_weight": 0.0, "step_penalty": 0.0, "distance_floor": 0.05}
            >>> arrays = {"references": np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]], dtype=np.float16),
            ...     "quality": np.array([[1.0, 1.0], [0.0, 1.0]]), "step_ids": np.zeros(2, dtype=np.int32),
            ...     "steps": pack_strings(["answer"]), "step_mean": np.array([[0.5, 1.0]]), "global_mean": np.array([0.5, 1.0]),
            ...     "hand_mean": np.zeros(1), "hand_scale": np.ones(1)}
            >>> KnnPolicy(Artefact("knn", meta, arrays)).estimate(np.array([0.0, 1.0]), None, [0.0], "answer").tolist()
            [0.0, 1.0]
        """
        h = (np.asarray(hand, dtype=np.float64) - self._hand_mean) / self._hand_scale * self.hand_weight
        x = np.concatenate([np.asarray(query, dtype=np.float32), h.astype(np.float32)])
        dot = self._main @ x
        x2 = float(x @ x)
        if context is not None and self.context_weight:
            xc = np.asarray(context, dtype=np.float32) * self.context_weight
            dot += self._context @ xc
            x2 += float(xc @ xc)
        d2 = self._norm2 + x2 - 2.0 * dot.astype(np.float64)
        step_id = self._steps.get(step)
        prior = self._global_mean if step_id is None else self._step_mean[step_id]
        if step_id is not None and self.step_penalty:
            d2 += self.step_penalty * (self._step_of != step_id)
        k = self.k
        top = np.argpartition(d2, k - 1)[:k] if k < len(d2) else np.arange(len(d2))
        top = top[np.argsort(d2[top], kind="stable")]
        distance = np.sqrt(np.maximum(d2[top], 0.0))
        return neighbour_estimates(distance[None], self._quality[top][None], prior[None], k, self.weighting,
                                   self.prior_strength, self.distance_floor)[0]
