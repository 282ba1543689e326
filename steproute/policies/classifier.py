"""``classifier``: a trained model predicts how well each tier will do; the cheapest good enough wins.

Features (:mod:`steproute.policies.features`): TF-IDF of the latest user message (words and
word pairs), static embeddings of that message and of the earlier user turns, a few text
measures, and the step's name and kind. One logistic regression per tier predicts the
quality that tier will give. Training (``steproute train``) uses scikit-learn; running does
not: the artefact holds the vocabulary, IDF weights and coefficients, and a decision is a
sparse dot product (about 0.1 ms, no scikit-learn import).

Example:
    .. code-block:: yaml

        steps:
          answer:
            policy: classifier
            artefact: answer.steproute      # from: steproute train --data train.jsonl --out answer.steproute
            threshold: 0.05                 # optional: the artefact's calibrated one otherwise
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from itertools import pairwise, repeat

import numpy as np

from steproute.policies._artefact import Artefact, built, load_artefact, unpack_strings
from steproute.policies._scoring import ScoringPolicy
from steproute.policies.features import (
    MAX_EMBED_CHARS,
    StaticEncoder,
    get_encoder,
    hand_features,
    routing_text,
    step_tokens,
    words,
)
from steproute.types import StepRequest

__all__ = ["ClassifierPolicy", "analyse"]

def analyse(text: str) -> list[str]:
    """Terms of a text: its :func:`~steproute.policies.features.words` and adjacent word pairs.

    Example:
        >>> analyse("Which planet is red?")
        ['which', 'planet', 'is', 'red', 'which planet', 'planet is', 'is red']
    """
    return terms(words(text))


def terms(text_words: list[str]) -> list[str]:
    return text_words + list(map(" ".join, pairwise(text_words)))


class ClassifierPolicy(ScoringPolicy):
    """Route by a trained per-tier quality estimate (see the module docstring)."""

    name = "classifier"

    def __init__(self, artefact: Artefact, tiers: Sequence[str] | None = None, threshold: float | None = None) -> None:
        a = artefact.arrays
        self._bind(artefact, tiers, threshold)
        self._vocab = {term: i for i, term in enumerate(unpack_strings(a["terms"]))}
        self._idf = a["idf"].astype(np.float64)
        self._steps = {tok: i for i, tok in enumerate(unpack_strings(a["steps"]))}
        self._hand_mean, self._hand_scale = a["hand_mean"], a["hand_scale"]
        coef = a["coef"].astype(np.float64)  # tiers × [terms | query emb | context emb | hand | steps]
        v, d, h = len(self._vocab), int(artefact.meta["embedding_dim"]), len(self._hand_mean)
        self._dim = d
        self._w_terms = np.ascontiguousarray(coef[:, :v].T)
        # query and context embeddings and the standardised hand features are one dense block
        self._w_dense = np.ascontiguousarray(coef[:, v:v + 2 * d + h])
        self._w_steps = np.ascontiguousarray(coef[:, v + 2 * d + h:].T)
        self._intercept = a["intercept"].astype(np.float64)
        self._encoder = get_encoder(artefact.meta["encoder"])
        self._static = isinstance(self._encoder, StaticEncoder)

    @classmethod
    def load(cls, path: str | os.PathLike[str], tiers: Sequence[str] | None = None,
             threshold: float | None = None) -> ClassifierPolicy:
        """Load an artefact written by ``steproute train``."""
        artefact = load_artefact(path, "classifier")
        return built(path, lambda: cls(artefact, tiers, threshold))

    def scores(self, request: StepRequest) -> np.ndarray:
        query, context, turns = routing_text(request)
        z = self._intercept.copy()
        query_words = words(query)
        found = np.fromiter(map(self._vocab.get, terms(query_words), repeat(-1)), dtype=np.intp)
        found = found[found >= 0]
        if len(found):
            idx, counts = np.unique(found, return_counts=True)
            vals = np.log(counts) + 1.0  # sublinear term frequency, as TfidfVectorizer(sublinear_tf=True)
            vals *= self._idf[idx]
            vals /= math.sqrt(float(vals @ vals))
            z += vals @ self._w_terms[idx]
        d = self._dim
        dense = np.empty(self._w_dense.shape[1])
        if self._static and len(query) <= MAX_EMBED_CHARS:
            dense[:d] = self._encoder.encode_words(query_words)  # the words TF-IDF already split: no second pass
        else:
            dense[:d] = self._encoder.encode_one(query)
        dense[d:2 * d] = self._encoder.encode_one(context) if context else 0.0
        dense[2 * d:] = hand_features(query, context, turns)
        dense[2 * d:] -= self._hand_mean
        dense[2 * d:] /= self._hand_scale
        z += self._w_dense @ dense
        for tok in step_tokens(request.step, request.kind):
            i = self._steps.get(tok)
            if i is not None:
                z += self._w_steps[i]
        return 1.0 / (1.0 + np.exp(-z))
