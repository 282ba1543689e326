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
from collections import Counter
from collections.abc import Sequence
from itertools import chain, pairwise, repeat
from operator import itemgetter

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

_STEP_CACHE = 4096
"""(step, kind) pairs whose step part is kept."""
_CACHE_WORDS = 500_000
"""Words whose term and token ids are kept."""
_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)
_NONE_FOLLOW: dict[str, int] = {}
_sum_rows = np.add.reduce

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
        self._steps = {tok: i for i, tok in enumerate(unpack_strings(a["steps"]))}
        self._hand_mean, self._hand_scale = a["hand_mean"], a["hand_scale"]
        coef = a["coef"].astype(np.float64)  # tiers × [terms | query emb | context emb | hand | steps]
        v, d, h = len(self._vocab), int(artefact.meta["embedding_dim"]), len(self._hand_mean)
        idf = a["idf"].astype(np.float64)
        # one row per term: its squared IDF weight, then IDF × its coefficient for each tier: for a
        # text whose terms occur once each, the sum of its terms' rows is the TF-IDF norm² and the
        # tiers' dot products (one gather, one sum)
        self._term_rows = np.ascontiguousarray(np.hstack([(idf * idf)[:, None], idf[:, None] * coef[:, :v].T]))
        self._w_query = np.ascontiguousarray(coef[:, v:v + d])
        self._w_context = np.ascontiguousarray(coef[:, v + d:v + 2 * d])
        # the hand measures' scaling folded into their weights: w · (x − mean) / scale = (w / scale) · x − const
        self._w_hand = np.ascontiguousarray(coef[:, v + 2 * d:v + 2 * d + h] / self._hand_scale)
        self._w_steps = np.ascontiguousarray(coef[:, v + 2 * d + h:].T)
        self._intercept = a["intercept"].astype(np.float64) - self._w_hand @ self._hand_mean
        self._by_step: dict[tuple[str, str | None], np.ndarray] = {}
        self._followers: dict[str, dict[str, int]] = {}
        """For each word that starts a word-pair term: the words that can follow it, and that pair's index."""
        for term, i in self._vocab.items():
            first, space, second = term.partition(" ")
            if space:
                self._followers.setdefault(first, {})[second] = i
        self._words: dict[str, tuple[int, list[int], dict[str, int]]] = {}
        """Each word seen: its unigram's vocabulary index (-1: none), its token ids (static encoder) and
        its followers (the pairs it starts): small dictionaries, not a probe into the whole vocabulary."""
        self._encoder = get_encoder(artefact.meta["encoder"])
        self._static = isinstance(self._encoder, StaticEncoder)
        self._table: np.ndarray = self._encoder.table if self._static else np.zeros((0, 0), np.float32)

    @classmethod
    def load(cls, path: str | os.PathLike[str], tiers: Sequence[str] | None = None,
             threshold: float | None = None) -> ClassifierPolicy:
        """Load an artefact written by ``steproute train``."""
        artefact = load_artefact(path, "classifier")
        return built(path, lambda: cls(artefact, tiers, threshold))

    def _word(self, word: str) -> tuple[int, list[int], dict[str, int]]:
        if len(self._words) >= _CACHE_WORDS:
            self._words.clear()
        record = self._words[word] = (self._vocab.get(word, -1), self._encoder.word_ids(word) if self._static else [],
                                      self._followers.get(word, _NONE_FOLLOW))
        return record

    def _step_part(self, step: str, kind: str | None) -> np.ndarray:
        """The intercept plus the step's one-hot columns, per (step, kind): a handful per application."""
        z = self._by_step.get((step, kind))
        if z is None:
            z = self._intercept.copy()
            for tok in step_tokens(step, kind):
                i = self._steps.get(tok)
                if i is not None:
                    z += self._w_steps[i]
            if len(self._by_step) >= _STEP_CACHE:
                self._by_step.clear()
            self._by_step[(step, kind)] = z
        return z

    def scores(self, request: StepRequest) -> np.ndarray:
        """Estimated quality of each tier: the logistic of the linear model over the request's features.

        The same numbers as scikit-learn's ``predict_proba`` on the training pipeline's
        features with the artefact's parameters, computed without it (a few numpy calls).

        Example:
            >>> from steproute.evaluation import EvalRow, Outcome
            >>> from steproute.evaluation._train import train_classifier
            >>> rows = [EvalRow(f"q{i}", ({"role": "user", "content": "prove it" if i % 2 else "say hi"},),
            ...                 {"cheap": Outcome(float(i % 2 == 0), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(40)]
            >>> policy = ClassifierPolicy(train_classifier(rows, ("cheap", "strong"), folds=0, embedding_cache=False))
            >>> bool(policy.scores(StepRequest("x", [{"role": "user", "content": "prove it"}]))[0] < 0.5)
            True
        """
        query, context, turns = routing_text(request)
        query_words = words(query)
        known = list(map(self._words.get, query_words))  # one lookup a word: its term and its tokens
        if None in known:
            known = [k if k is not None else self._word(w) for k, w in zip(known, query_words, strict=True)]
        # TF-IDF (sublinear TF × IDF, L2-normalised, as TfidfVectorizer(sublinear_tf=True)) over
        # analyse()'s terms: the words, then the adjacent pairs (each word's followers say which pairs are terms)
        found: list[int] = list(map(_first, known))  # type: ignore[arg-type]  # all known now
        found += map(dict.get, map(_third, known), query_words[1:], repeat(-1))  # type: ignore[arg-type]
        distinct = set(found)
        distinct.discard(-1)
        z = self._w_hand @ np.array(hand_features(query, context, turns))
        z += self._step_part(request.step, request.kind)
        if len(distinct) + found.count(-1) == len(found):  # each term once: TF 1, the rows' sum is all
            if distinct:
                s = _sum_rows(self._term_rows.take(np.fromiter(distinct, np.intp, len(distinct)), axis=0), axis=0)
                z += s[1:] / math.sqrt(s[0])
        else:
            counts = Counter(found)
            counts.pop(-1, None)
            n = len(counts)
            rows = self._term_rows.take(np.fromiter(counts, np.intp, n), axis=0)
            tf = np.log(np.fromiter(counts.values(), np.float64, n))
            tf += 1.0
            z += (tf @ rows[:, 1:]) / math.sqrt((tf * tf) @ rows[:, 0])
        if self._static and len(query) <= MAX_EMBED_CHARS:  # the words TF-IDF already split, their token ids remembered
            # StaticEncoder.encode_ids, inline: the tokens' vectors summed in order (float32), scaled to length 1
            ids = np.fromiter(chain.from_iterable(map(_second, known)), np.intp)  # type: ignore[arg-type]
            if len(ids):
                v = _sum_rows(self._table.take(ids, axis=0), axis=0)
                norm = math.sqrt(float(v @ v))
                if norm > 0:
                    v /= norm
                z += self._w_query @ v
        else:
            z += self._w_query @ self._encoder.encode_one(query)
        if context:
            z += self._w_context @ self._encoder.encode_one(context)
        z *= -1.0
        np.exp(z, out=z)
        z += 1.0
        return np.reciprocal(z, out=z)
