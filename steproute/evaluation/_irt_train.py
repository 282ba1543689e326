"""Training an ``irt`` artefact: one latent difficulty per query, one latent ability per tier.

The model (see :mod:`steproute.policies.irt`), for tier ``t`` and a query with features ``φ``::

    logit P(t answers well) = a_t · (β_t − w·φ) + θ_t · (D φ)

``w·φ`` is the query's difficulty, ``β_t`` the tier's ability, ``a_t = exp(α_t)`` its
discrimination, ``D φ`` a ``dims``-dimensional direction and ``θ_t`` the tier's loading on it.
Every parameter is fitted at once by L-BFGS (scipy) on the log-loss of every (row, tier)
outcome the rows hold (fractional quality as a soft target), with an L2 penalty ``1/(2C)`` on
``w`` and ``D``. A tier with few outcomes fits three numbers (and ``θ_t``), not a model of its
own: the difficulty comes from all tiers' outcomes. The features are the classifier's
(:class:`~steproute.evaluation._train.FeatureMatrix`), each text embedded once per run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from steproute.evaluation._calibrate import Target, calibrate
from steproute.evaluation._format import EvalRow
from steproute.evaluation._metrics import Outcomes, summarise
from steproute.evaluation._train import DEFAULT_TARGET, FeatureMatrix, FeatureParts, Progress
from steproute.policies._artefact import Artefact, pack_strings
from steproute.policies.features import HAND_FEATURES, get_encoder

__all__ = ["IRT_DEFAULTS", "IrtFit", "fit_irt", "train_irt"]

IRT_DEFAULTS: dict[str, Any] = {"dims": 1, "C": 0.3}
"""Extra directions beside the difficulty, and the L2 strength on the feature weights."""
_THETA_L2 = 1.0
_ALPHA_L2 = 1.0
_MAX_ITER = 300
"""L-BFGS iterations at most (the fit is non-convex; more iterations cost training time)."""
_SPREAD_L2 = 10.0
"""Pulls the tiers' discriminations towards each other: a tier with few outcomes takes the others' slope."""


class IrtFit:
    """A fitted IRT model over a feature matrix, with difficulty scaled to the training queries.

    ``difficulty`` (features) and ``difficulty_intercept`` give a query's difficulty in standard
    deviations of the training queries' (mean 0); ``ability`` and ``discrimination`` (tiers) are
    on that scale; ``coef`` and ``intercept`` are each tier's logit, collapsed to one linear row.
    """

    def __init__(self, w: np.ndarray, D: np.ndarray, alpha: np.ndarray, beta: np.ndarray, theta: np.ndarray,
                 train_b: np.ndarray) -> None:
        a = np.exp(alpha)
        m, s = float(train_b.mean()), float(train_b.std())
        s = s if s > 1e-12 else 1.0
        self.coef = -a[:, None] * w[None, :] + theta @ D.T  # tiers × features
        self.intercept = a * beta
        self.difficulty, self.difficulty_intercept = w / s, -m / s
        self.ability, self.discrimination = (beta - m) / s, a * s
        self.theta = theta

    def predict(self, X: Any) -> np.ndarray:
        """``(rows, tiers)`` probabilities for a feature matrix."""
        return 1.0 / (1.0 + np.exp(-(X @ self.coef.T + self.intercept)))

    def difficulty_of(self, X: Any) -> np.ndarray:
        return X @ self.difficulty + self.difficulty_intercept


def fit_irt(X: Any, quality: np.ndarray, have: np.ndarray, *, dims: int = 1, C: float = 0.3, seed: int = 0) -> IrtFit:
    """Fit the joint model on a ``(rows, features)`` matrix and ``(rows, tiers)`` quality / has-outcome.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(300, 3)); p = 1 / (1 + np.exp(-(np.array([-1.0, 1.0]) - 2 * X[:, :1])))
        >>> fit = fit_irt(X, (rng.random((300, 2)) < p).astype(float), np.ones((300, 2), bool), dims=0)
        >>> bool(fit.ability[0] < fit.ability[1]), bool(np.corrcoef(fit.difficulty_of(X), X[:, 0])[0, 1] > 0.9)
        (True, True)
    """
    from scipy.optimize import minimize

    F = X.shape[1]
    T = quality.shape[1]
    mask = have.astype(float)
    Q = np.where(have, quality, 0.0)
    k = dims
    counts = mask.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"tier {int(np.argmin(counts))} has no outcome in the rows")
    mean_q = np.clip((Q * mask).sum(axis=0) / counts, 1e-3, 1 - 1e-3)
    rng = np.random.default_rng(seed)
    sizes = [F, F * k, T, T, T * k]

    def unpack(x: np.ndarray) -> list[np.ndarray]:
        out, at = [], 0
        for size in sizes:
            out.append(x[at:at + size])
            at += size
        return out

    def loss(x: np.ndarray) -> tuple[float, np.ndarray]:
        w, Dflat, alpha, beta, thflat = unpack(x)
        D, theta = Dflat.reshape(F, k), thflat.reshape(T, k)
        h = X @ np.column_stack([w, D])
        b, d = h[:, 0], h[:, 1:]
        a = np.exp(alpha)
        gap = beta[None, :] - b[:, None]
        z = a * gap + d @ theta.T
        value = float((mask * (np.logaddexp(0.0, z) - Q * z)).sum())
        r = mask * (1.0 / (1.0 + np.exp(-z)) - Q)
        ra = r * a
        g_h = np.column_stack([-ra.sum(axis=1), r @ theta])
        g_V = X.T @ g_h
        g_V = np.asarray(g_V) + np.column_stack([w, D]) / C
        value += (float(w @ w) + float((D * D).sum())) / (2 * C)
        spread = alpha - alpha.mean()  # discriminations shrink towards 1 and towards each other
        value += _THETA_L2 * float((theta * theta).sum()) / 2 + _ALPHA_L2 * float(alpha @ alpha) / 2
        value += _SPREAD_L2 * float(spread @ spread) / 2
        grad = np.concatenate([g_V[:, 0], g_V[:, 1:].ravel(),
                               (ra * gap).sum(axis=0) + _ALPHA_L2 * alpha + _SPREAD_L2 * spread,
                               ra.sum(axis=0), (r.T @ d + _THETA_L2 * theta).ravel()])
        return value, grad

    x0 = np.concatenate([np.zeros(F * (1 + k)), np.zeros(T), np.log(mean_q / (1 - mean_q)),
                         0.1 * rng.standard_normal(T * k)])
    # discriminations bounded to e^±4: an unbounded exp() overflows and stalls the line search
    bounds = [(None, None)] * (F * (1 + k)) + [(-4.0, 4.0)] * T + [(None, None)] * (T + T * k)
    result = minimize(loss, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": _MAX_ITER, "maxfun": _MAX_ITER * 3 // 2})
    w, Dflat, alpha, beta, thflat = unpack(result.x)
    D, theta = Dflat.reshape(F, k), thflat.reshape(T, k)
    return IrtFit(w, D, alpha, beta, theta, np.asarray(X @ w).ravel())


def _targets(rows: Sequence[EvalRow], models: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    have = np.array([[m in r.outcomes for m in models] for r in rows], dtype=bool).reshape(len(rows), len(models))
    quality = np.array([[r.outcomes[m].quality if m in r.outcomes else 0.0 for m in models] for r in rows],
                       dtype=float).reshape(len(rows), len(models))
    for j, m in enumerate(models):
        if not have[:, j].any():
            raise ValueError(f"no row has an outcome for model {m!r}")
    return quality, have


def _folds(rows: Sequence[EvalRow], folds: int, seed: int):
    """The classifier's folds: stratified by step (steps with fewer rows than folds pooled)."""
    from sklearn.model_selection import StratifiedKFold

    steps = np.array([r.step for r in rows])
    counts = {s: int((steps == s).sum()) for s in set(steps)}
    strata = np.array([s if counts[s] >= folds else "_rare" for s in steps])
    strata = strata if len(set(strata)) > 1 else np.zeros(len(rows))
    return StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(rows)), strata)


def _hardest_steps(rows: Sequence[EvalRow], difficulty: np.ndarray, top: int = 10) -> list[list[Any]]:
    by: dict[str, list[float]] = {}
    for r, b in zip(rows, difficulty, strict=True):
        by.setdefault(r.step, []).append(float(b))
    ranked = sorted(by.items(), key=lambda kv: -float(np.mean(kv[1])))
    return [[s, round(float(np.mean(v)), 3), len(v)] for s, v in ranked[:top]]


def train_irt(rows: Sequence[EvalRow], models: Sequence[str], *, target: Target = DEFAULT_TARGET, folds: int = 5,
              encoder: str = "wordllama-l2-256", cache: str | os.PathLike[str] | bool = True,
              progress: Progress | None = None, dims: int = IRT_DEFAULTS["dims"], C: float = IRT_DEFAULTS["C"],
              embedding_cache: str | os.PathLike[str] | bool | None = None, **_: Any) -> Artefact:
    """Train an ``irt`` artefact on ``rows`` for ``models`` (cheap to strong).

    Rows may lack some models' outcomes (each tier learns from the outcomes it has, and shares
    the difficulty); cross-validation (``folds`` >= 2, for the threshold of ``target``) needs
    every outcome. Each text is embedded once per run, kept on disk as ``cache`` says (as
    :func:`~steproute.evaluation._train.train_classifier`'s ``embedding_cache``, which is
    accepted too).

    Example:
        >>> from steproute.evaluation import EvalRow, Outcome
        >>> rows = [EvalRow(f"q{i}", ({"role": "user", "content": f"question {i % 7} about {'maths' if i % 2 else 'maps'}"},),
        ...                 {"cheap": Outcome(float(i % 2 == 0), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(40)]
        >>> artefact = train_irt(rows, ("cheap", "strong"), folds=0, cache=False)
        >>> artefact.policy, artefact.labels, bool(artefact.meta["abilities"]["cheap"] < artefact.meta["abilities"]["strong"])
        ('irt', ('cheap', 'strong'), True)
    """
    started = time.perf_counter()
    cache = cache if embedding_cache is None else embedding_cache
    quality, have = _targets(rows, models)
    outcomes = Outcomes.of(rows, models) if folds >= 2 else None
    parts = FeatureParts.of(rows, get_encoder(encoder), cache, progress)
    meta: dict[str, Any] = {"labels": list(models), "encoder": encoder, "C": C, "dims": dims, "rows": len(rows),
                            "outcomes": {m: int(have[:, j].sum()) for j, m in enumerate(models)},
                            "target": target.describe(), "hand_features": list(HAND_FEATURES)}
    threshold = 0.0
    if outcomes is not None:
        oof = np.zeros(quality.shape)
        bar = progress("cross-validation folds", folds) if progress else None
        for train, test in _folds(rows, folds, 0):
            features = FeatureMatrix(encoder)
            fit = fit_irt(features.fit_transform(parts.take(train)), quality[train], have[train], dims=dims, C=C)
            oof[test] = fit.predict(features.transform(parts.take(test)))
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        strong = float(outcomes.quality[:, -1].mean())
        threshold = calibrate(summarise(oof, outcomes, 0.0)[1], target, strong).threshold
        meta["cross_validation"] = {"folds": folds, **summarise(oof, outcomes, threshold)[0].to_json()}
    bar = progress("final fit", 1) if progress else None
    features = FeatureMatrix(encoder)
    X = features.fit_transform(parts)
    fit = fit_irt(X, quality, have, dims=dims, C=C)
    if bar:
        bar.update(1)
        bar.close()
    meta.update(threshold=threshold, embedding_dim=features.encoder.dim,
                abilities={m: round(float(v), 4) for m, v in zip(models, fit.ability, strict=True)},
                hardest_steps=_hardest_steps(rows, fit.difficulty_of(X)),
                training_seconds=round(time.perf_counter() - started, 2))
    arrays = {
        "terms": pack_strings([str(t) for t in features.tfidf.get_feature_names_out()]),
        "idf": features.tfidf.idf_.astype(np.float32),
        "steps": pack_strings(list(features.steps.feature_names_)),
        "hand_mean": features.hand_mean, "hand_scale": features.hand_scale,
        "coef": fit.coef.astype(np.float32), "intercept": fit.intercept,
        "difficulty": fit.difficulty.astype(np.float32), "difficulty_intercept": np.array([fit.difficulty_intercept]),
        "ability": fit.ability, "discrimination": fit.discrimination, "theta": fit.theta,
    }
    return Artefact("irt", meta, arrays)
