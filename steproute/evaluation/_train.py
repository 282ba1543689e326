"""Training the learned policies from rows of the evaluation format (needs the ``learn`` extra)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from steproute.evaluation._calibrate import Target, calibrate
from steproute.evaluation._embeddings import embed_texts
from steproute.evaluation._evaluate import request_of
from steproute.evaluation._format import EvalRow
from steproute.evaluation._metrics import Outcomes, summarise
from steproute.evaluation._threshold_cv import fold_thresholds
from steproute.policies._artefact import Artefact, pack_strings
from steproute.policies.classifier import analyse
from steproute.policies.features import HAND_FEATURES, get_encoder, hand_features, routing_text, step_tokens

__all__ = ["DEFAULT_TARGET", "Progress", "cross_validated_scores", "request_of", "train_classifier"]

DEFAULT_TARGET = Target(quality_ratio=0.95)
"""Default operating point: 95% of the strongest tier's quality at the lowest cost."""

Progress = Callable[[str, int], Any]
"""``progress(stage, total)`` returns an object with ``update(n)`` and ``close()`` (a tqdm bar)."""


def _sklearn():
    try:
        import scipy.sparse as sp
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("training needs the 'learn' extra: pip install 'steproute[learn]'") from exc
    return sp, DictVectorizer, TfidfVectorizer, LogisticRegression


def _analysed(terms: list[str]) -> list[str]:
    """The TF-IDF analyser of rows analysed once per run: the row's terms are already its terms."""
    return terms


class _Parts:
    """What each row brings to the features, whatever the fold: computed once per run.

    Cross-validation fits one model per fold. Only what is *learned from rows* is fitted per
    fold, on that fold's training rows, so the held-out fold never shapes its own features:
    the TF-IDF vocabulary and IDF weights, the hand features' mean and scale, the step columns
    (:class:`_Features`). A row's terms, embeddings and hand measures depend on the row alone,
    so they are computed once here (each distinct text embedded once, and read from the
    on-disk cache when it has it) and every fold slices them.
    """

    def __init__(self, terms: list[list[str]], emb: np.ndarray, hand: np.ndarray, steps: list[dict]) -> None:
        self.terms, self.emb, self.hand, self.steps = terms, emb, hand, steps

    @classmethod
    def of(cls, rows: Sequence[EvalRow], encoder: Any, cache: str | os.PathLike[str] | bool = False,
           progress: Progress | None = None) -> _Parts:
        texts = [routing_text(request_of(r)) for r in rows]
        n = len(texts)
        both = embed_texts(encoder, [q for q, _, _ in texts] + [c for _, c, _ in texts], cache=cache, progress=progress)
        emb = np.hstack([both[:n], both[n:]])
        hand = np.array([hand_features(*t) for t in texts], dtype=float).reshape(n, len(HAND_FEATURES))
        steps = [dict.fromkeys(step_tokens(r.step, r.kind), 1.0) for r in rows]
        return cls([analyse(q) for q, _, _ in texts], emb, hand, steps)

    def take(self, idx: Sequence[int] | np.ndarray) -> _Parts:
        """The parts of the rows at ``idx``, in that order."""
        return _Parts([self.terms[i] for i in idx], self.emb[idx], self.hand[idx], [self.steps[i] for i in idx])


class _Features:
    """The classifier's feature matrix; the column order is the one ClassifierPolicy reads."""

    def __init__(self, encoder: str, max_terms: int = 50_000) -> None:
        _, DictVectorizer, TfidfVectorizer, _ = _sklearn()
        self.encoder = get_encoder(encoder)
        self.tfidf = TfidfVectorizer(analyzer=_analysed, min_df=2, sublinear_tf=True, max_features=max_terms)
        self.steps = DictVectorizer()

    def _parts(self, rows: Sequence[EvalRow] | _Parts) -> _Parts:
        return rows if isinstance(rows, _Parts) else _Parts.of(rows, self.encoder)

    def fit_transform(self, rows: Sequence[EvalRow] | _Parts):
        sp = _sklearn()[0]
        parts = self._parts(rows)
        terms = self.tfidf.fit_transform(parts.terms)
        hand = parts.hand
        self.hand_mean = hand.mean(axis=0)
        self.hand_scale = np.where(hand.std(axis=0) > 0, hand.std(axis=0), 1.0)
        one_hot = self.steps.fit_transform(parts.steps)
        return sp.hstack([terms, sp.csr_matrix(parts.emb), sp.csr_matrix((hand - self.hand_mean) / self.hand_scale),
                          one_hot]).tocsr()

    def transform(self, rows: Sequence[EvalRow] | _Parts):
        sp = _sklearn()[0]
        parts = self._parts(rows)
        return sp.hstack([self.tfidf.transform(parts.terms), sp.csr_matrix(parts.emb),
                          sp.csr_matrix((parts.hand - self.hand_mean) / self.hand_scale),
                          self.steps.transform(parts.steps)]).tocsr()


def _fit_tier(X, quality: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """A logistic regression on soft labels: each row counts as right with weight ``quality``."""
    sp, _, _, LogisticRegression = _sklearn()
    mean = float(quality.mean())
    if mean <= 0.0 or mean >= 1.0:  # one class only: a constant estimate
        p = min(max(mean, 1e-4), 1 - 1e-4)
        return np.zeros(X.shape[1]), math.log(p / (1 - p))
    y = np.concatenate([np.ones(len(quality)), np.zeros(len(quality))])
    w = np.concatenate([quality, 1.0 - quality])
    keep = w > 0
    model = LogisticRegression(C=C, max_iter=3000)
    model.fit(sp.vstack([X, X]).tocsr()[keep], y[keep], sample_weight=w[keep])
    return model.coef_[0], float(model.intercept_[0])


def _fit(rows: Sequence[EvalRow], models: Sequence[str], encoder: str, C: float, parts: _Parts | None = None):
    features = _Features(encoder)
    X = features.fit_transform(rows if parts is None else parts)
    fitted = []
    for model in models:  # each tier learns from the rows that have its outcome (all, for benchmarks)
        have = np.array([model in r.outcomes for r in rows])
        if not have.any():
            raise ValueError(f"no row has an outcome for model {model!r}")
        quality = np.array([r.outcomes[model].quality for r in rows if model in r.outcomes])
        fitted.append(_fit_tier(X[have], quality, C))
    return features, np.array([c for c, _ in fitted]), np.array([b for _, b in fitted])


def _predict(features: _Features, coef: np.ndarray, intercept: np.ndarray, rows: Sequence[EvalRow] | _Parts) -> np.ndarray:
    z = features.transform(rows) @ coef.T + intercept
    return 1.0 / (1.0 + np.exp(-z))


def cross_validated_scores(rows: Sequence[EvalRow], models: Sequence[str], *, folds: int = 5, encoder: str = "wordllama-l2-256",
                           C: float = 0.3, seed: int = 0, progress: Progress | None = None,
                           embedding_cache: str | os.PathLike[str] | bool = True) -> np.ndarray:
    """Out-of-fold estimates for every row (folds stratified by step), to measure or calibrate honestly.

    Each text is embedded once (``embedding_cache``: see :func:`train_classifier`); the
    features learned from rows are fitted per fold (see :class:`_Parts`).
    """
    parts = _Parts.of(rows, get_encoder(encoder), embedding_cache, progress)
    return _cross_validated(rows, parts, models, folds, encoder, C, seed, progress)


def _cross_validated(rows: Sequence[EvalRow], parts: _Parts, models: Sequence[str], folds: int, encoder: str, C: float,
                     seed: int, progress: Progress | None) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    steps = np.array([r.step for r in rows])
    counts = {s: int((steps == s).sum()) for s in set(steps)}
    strata = np.array([s if counts[s] >= folds else "_rare" for s in steps])
    scores = np.zeros((len(rows), len(models)))
    bar = progress("cross-validation folds", folds) if progress else None
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(rows)), strata if len(set(strata)) > 1 else np.zeros(len(rows))):
        features, coef, intercept = _fit([rows[i] for i in train], models, encoder, C, parts.take(train))
        scores[test] = _predict(features, coef, intercept, parts.take(test))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return scores


def train_classifier(rows: Sequence[EvalRow], models: Sequence[str], *, target: Target = DEFAULT_TARGET, folds: int = 5,
                     encoder: str = "wordllama-l2-256", C: float = 0.3, progress: Progress | None = None,
                     embedding_cache: str | os.PathLike[str] | bool = True) -> Artefact:
    """Train a ``classifier`` artefact on ``rows`` for ``models`` (cheap to strong).

    With ``folds`` >= 2 the rows are first cross-validated: the out-of-fold curve gives the
    default threshold (for ``target``) and the figures stored in the artefact's ``training``
    metadata; the final model is then fitted on every row. Each distinct text is embedded
    once per run; the spread of the threshold across folds (each fold's chosen on the others'
    out-of-fold estimates, :func:`~steproute.evaluation._threshold_cv.fold_thresholds`) is in
    ``training.cross_validation.thresholds``. ``embedding_cache`` keeps the embeddings on disk across runs (``True``: in
    steproute's cache folder, ``$STEPROUTE_CACHE_DIR/embeddings`` or
    ``~/.cache/steproute/embeddings``; a folder; ``False``: none). ``progress`` shows the
    embedding, each fold and the final fit.

    Example:
        >>> from steproute.evaluation import EvalRow, Outcome
        >>> rows = [EvalRow(f"q{i}", ({"role": "user", "content": f"question {i % 7} about {'maths' if i % 2 else 'maps'}"},),
        ...                 {"cheap": Outcome(float(i % 2 == 0), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(40)]
        >>> artefact = train_classifier(rows, ("cheap", "strong"), folds=0, embedding_cache=False)
        >>> artefact.labels
        ('cheap', 'strong')
    """
    meta: dict[str, Any] = {"labels": list(models), "encoder": encoder, "C": C, "rows": len(rows),
                            "target": target.describe(), "hand_features": list(HAND_FEATURES)}
    threshold = 0.0
    # cross-validation replays every tier: rows need all outcomes (checked before the embedding's minutes)
    outcomes = Outcomes.of(rows, models) if folds >= 2 else None
    parts = _Parts.of(rows, get_encoder(encoder), embedding_cache, progress)
    if outcomes is not None:
        oof = _cross_validated(rows, parts, models, folds, encoder, C, 0, progress)
        strong = float(outcomes.quality[:, -1].mean())
        _, curve = summarise(oof, outcomes, 0.0)
        threshold = calibrate(curve, target, strong).threshold
        summary, _ = summarise(oof, outcomes, threshold)
        spread = fold_thresholds(oof, outcomes, target, folds=folds, steps=[r.step for r in rows])
        meta["cross_validation"] = {"folds": folds, **summary.to_json(), "thresholds": spread.to_json()}
    bar = progress("final fit", 1) if progress else None
    features, coef, intercept = _fit(rows, models, encoder, C, parts)
    if bar:
        bar.update(1)
        bar.close()
    meta.update(threshold=threshold, embedding_dim=features.encoder.dim)
    arrays = {
        "terms": pack_strings([str(t) for t in features.tfidf.get_feature_names_out()]),
        "idf": features.tfidf.idf_.astype(np.float32),
        "steps": pack_strings(list(features.steps.feature_names_)),
        "hand_mean": features.hand_mean, "hand_scale": features.hand_scale,
        "coef": coef.astype(np.float32), "intercept": intercept,
    }
    return Artefact("classifier", meta, arrays)


FeatureParts = _Parts
"""What each row brings to the classifier's features, computed once per run (other trainers reuse it)."""
FeatureMatrix = _Features
"""The classifier's feature matrix, fitted per fold (other trainers reuse it)."""
