"""Cascade routing: a ``cascade`` that decides where to start, and when to stop, by value.

After Dekoninck et al., "A Unified Approach to Routing and Cascading for LLMs" (2024). Before
the call a trained estimator (the ``classifier``) estimates every tier's quality; after each
answer the trained answer scorer estimates that answer's. Both go through one calibrated
quality model (isotonic step functions, fitted by ``steproute train --policy cascade_routing``
and evaluated here with :func:`numpy.interp`). With ``λ`` (quality given up per unit of cost;
the strongest tier's mean call costs 1) the rule is:

- the **value of starting at tier j** is what a cascade from j is expected to be worth:
  ``E[last] = q[last] − λ·c[last]`` and, below it,
  ``E[j] = −λ·c[j] + κ·(q[j] + (1 − q[j])·max(E[j+1], 0)) + (1 − κ)·max(q[j], E[j+1])``
  (``κ``: how much the answer's check is worth: 1 = it always tells a right answer from a
  wrong one, 0 = it tells nothing; chosen in training). The call **starts** at the cheapest
  tier of the highest value: a cheap tier sure to fail is skipped and its call never paid;
- an answer of tier j is **accepted** when its calibrated post-call estimate is at least
  ``E[j+1]``, the net value of escalating (the cost of j is spent either way).

The same functions (:func:`start_values`, :func:`start_tier`, :func:`accepts`) replay the
rule offline over recorded answers, so what is evaluated is what runs.

Example:
    >>> import numpy as np
    >>> costs = np.array([0.05, 1.0])
    >>> values = start_values(np.array([0.2, 0.9]), costs, lam=0.3, kappa=0.0)
    >>> int(start_tier(values))          # the cheap tier is sure to fail: start strong
    1
    >>> values = start_values(np.array([0.8, 0.9]), costs, lam=0.3, kappa=0.0)
    >>> int(start_tier(values)), bool(accepts(0.7, values[1])), bool(accepts(0.4, values[1]))
    (0, True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from steproute.policies.answer_scorer import AnswerScorer
from steproute.policies.base import Choice
from steproute.policies.cascade import CascadePolicy, Verdict
from steproute.policies.confidence import Answer, Signal
from steproute.policies.features import routing_text
from steproute.types import StepRequest

__all__ = ["CascadeRoutingPolicy", "Estimator", "QualityModel", "accepts", "mixed", "start_tier", "start_values"]


def start_values(quality: np.ndarray, costs: np.ndarray, lam: float, kappa: float) -> np.ndarray:
    """The expected net value of starting the cascade at each tier (last axis: tiers, cheap to
    strong), from calibrated pre-call estimates ``quality`` and mean relative ``costs``."""
    q = np.asarray(quality, dtype=float)
    c = np.asarray(costs, dtype=float)
    values = np.empty_like(q)
    values[..., -1] = q[..., -1] - lam * c[-1]
    for j in range(q.shape[-1] - 2, -1, -1):
        after = values[..., j + 1]
        checked = q[..., j] + (1.0 - q[..., j]) * np.maximum(after, 0.0)
        unchecked = np.maximum(q[..., j], after)
        values[..., j] = kappa * checked + (1.0 - kappa) * unchecked - lam * c[j]
    return values


def start_tier(values: np.ndarray, low: int = 0, high: int | None = None) -> np.ndarray:
    """Index of the cheapest tier of highest value within ``[low, high]`` (per row)."""
    v = np.asarray(values, dtype=float)
    high = v.shape[-1] - 1 if high is None else high
    return np.argmax(v[..., low:high + 1], axis=-1) + low


def accepts(post_quality: Any, value_after: Any) -> Any:
    """Keep an answer when its calibrated estimate is at least the net value of escalating."""
    return np.asarray(post_quality) >= np.asarray(value_after)


@dataclass(frozen=True)
class QualityModel:
    """The calibrated quality model: isotonic step functions (knots ``x`` → ``y``), one per
    tier for the pre-call estimate and one per judged tier for the post-call one, plus each
    tier's mean cost relative to the strongest's. Padded knots repeat the last one."""

    costs: np.ndarray
    pre_x: np.ndarray
    pre_y: np.ndarray
    post_x: np.ndarray
    post_y: np.ndarray
    mix: np.ndarray
    """Per judged tier, ``(a, b, c)``: the post-call raw score is
    ``sigmoid(a·logit(scorer) + b·logit(pre-call raw estimate) + c)``, calibrated after."""

    def pre(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated pre-call estimates (last axis: tiers)."""
        raw = np.asarray(raw, dtype=float)
        return np.stack([np.interp(raw[..., j], self.pre_x[j], self.pre_y[j]) for j in range(raw.shape[-1])], axis=-1)

    def post(self, tier: int, scorer: Any, pre_raw: Any) -> Any:
        """Calibrated post-call estimate of tier ``tier``'s answer, from the answer scorer's
        probability and the tier's raw pre-call estimate."""
        return np.interp(mixed(self.mix[tier], scorer, pre_raw), self.post_x[tier], self.post_y[tier])


def _logit(p: Any) -> Any:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p))


def mixed(mix: np.ndarray, scorer: Any, pre_raw: Any) -> Any:
    """The post-call raw score: a logistic mix of the scorer's probability and the pre-call estimate."""
    return 1.0 / (1.0 + np.exp(-(mix[0] * _logit(scorer) + mix[1] * _logit(pre_raw) + mix[2])))


_SEEN = 256


class Estimator(Protocol):
    """A pre-call estimator: each tier's estimated quality for a request (``classifier``)."""

    def scores(self, request: StepRequest) -> np.ndarray: ...


class CascadeRoutingPolicy(CascadePolicy):
    """A ``cascade`` whose start tier and acceptance come from :func:`start_values` (see the
    module docstring). Configured ``signals`` still apply: an answer one of them rejects is
    rejected before the value rule is asked."""

    def __init__(self, tiers: Sequence[str], estimator: Estimator, scorer: AnswerScorer, model: QualityModel, *,
                 lam: float, kappa: float, signals: Sequence[Signal] = (), combine: str = "all",
                 max_concurrency: int = 8) -> None:
        super().__init__(tiers, signals, combine=combine, max_concurrency=max_concurrency)
        if len(model.costs) != len(self.tiers) or len(model.post_x) != len(self.tiers) - 1:
            raise ValueError(f"the quality model covers {len(model.costs)} tiers; the cascade has {len(self.tiers)}")
        self.estimator, self.scorer, self.model = estimator, scorer, model
        self.lam, self.kappa = float(lam), float(kappa)
        self._seen: dict[int, tuple[StepRequest, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        """The estimates of the last requests decided, so judging their answers does not estimate again."""

    @classmethod
    def of(cls, artefact: Any, tiers: Sequence[str] | None = None, *, lam: float | None = None,
           signals: Sequence[Signal] = (), combine: str = "all") -> CascadeRoutingPolicy:
        """The policy a loaded ``cascade_routing`` artefact holds (its classifier, its answer
        scorer, its quality model and λ), on ``tiers`` (default: the artefact's labels)."""
        from steproute.policies._artefact import Artefact
        from steproute.policies.classifier import ClassifierPolicy

        a, meta = artefact.arrays, artefact.meta
        part = {name: {k.partition(".")[2]: v for k, v in a.items() if k.startswith(name + ".")}
                for name in ("classifier", "scorer")}
        estimator = ClassifierPolicy(Artefact("classifier", meta["classifier"], part["classifier"]))
        scorer = AnswerScorer.of(Artefact("cascade", meta["scorer"], part["scorer"]))
        model = QualityModel(a["costs"].astype(float), a["pre_x"], a["pre_y"], a["post_x"], a["post_y"], a["post_mix"])
        return cls(tuple(tiers) if tiers is not None else artefact.labels, estimator, scorer, model,
                   lam=float(meta["lambda"]) if lam is None else lam, kappa=float(meta["kappa"]), signals=signals,
                   combine=combine)

    @classmethod
    def load(cls, path: str, tiers: Sequence[str] | None = None, *, lam: float | None = None,
             signals: Sequence[Signal] = (), combine: str = "all") -> CascadeRoutingPolicy:
        """Read a ``cascade_routing`` artefact (``steproute train --policy cascade_routing``).
        Raises :class:`~steproute.policies._artefact.ArtefactError` naming the file."""
        from steproute.policies._artefact import built, load_artefact

        artefact = load_artefact(path, "cascade_routing")
        return built(path, lambda: cls.of(artefact, tiers, lam=lam, signals=signals, combine=combine))

    def values(self, request: StepRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw and calibrated pre-call estimates, and the value of starting at each tier."""
        seen = self._seen.get(id(request))
        if seen is not None and seen[0] is request:
            return seen[1]
        raw = self.estimator.scores(request)
        quality = self.model.pre(raw)
        found = raw, quality, start_values(quality, self.model.costs, self.lam, self.kappa)
        if len(self._seen) >= _SEEN:
            self._seen.clear()
        self._seen[id(request)] = (request, found)
        return found

    def choose(self, request: StepRequest) -> Choice:
        _, quality, values = self.values(request)
        i = int(start_tier(values))
        shown = ", ".join(f"{t}={q:.2f}" for t, q in zip(self.tiers, quality, strict=True))
        reason = f"cascade routing: estimated quality {shown}; λ={self.lam:g}"
        if i > 0:
            skipped = "; ".join(f"skipped {t!r}: estimated quality {quality[j]:.2f}, value {values[j]:.2f} "
                                f"< {values[i]:.2f} starting at {self.tiers[i]!r}" for j, t in enumerate(self.tiers[:i]))
            reason += f"; {skipped}"
        else:
            reason += f"; start at {self.tiers[0]!r} (value {values[0]:.2f})"
        return Choice(self.tiers[i], reason, round(float(values[i]), 4))

    def judge(self, request: StepRequest, answer: Answer, probe: Any) -> Verdict:
        """The configured signals (if any), then the value rule for the attempt's tier (the
        probe's ``tier``; the first tier when the probe has none, as offline)."""
        if self.signals:
            verdict = super().judge(request, answer, probe)
            if not verdict.accepted:
                return verdict
        tier = getattr(probe, "tier", None)
        j = self.tiers.index(tier) if tier in self.tiers else 0
        if j >= len(self.tiers) - 1:
            return Verdict(True, None, (), "last tier: not judged")
        pre_raw, quality, values = self.values(request)
        if answer.text:
            query, _, _ = routing_text(request)
            raw = self.scorer.probability(query, answer.text, answer.finish_reason)
            estimate = float(self.model.post(j, raw, pre_raw[j]))
            source = f"scorer {raw:.3g}"
        else:  # tool calls only: the scorer abstains, the pre-call estimate stands
            estimate, source = float(quality[j]), "no text to score: pre-call estimate"
        after = float(values[j + 1])
        nxt = self.tiers[j + 1]
        ok = bool(accepts(estimate, after))
        sign = ">=" if ok else "<"
        reason = (f"estimated quality {estimate:.2f} ({source}) {sign} value of escalating to {nxt!r} {after:.2f} "
                  f"(estimated quality {quality[j + 1]:.2f}, λ={self.lam:g}); {'accepted' if ok else 'escalate'}")
        return Verdict(ok, estimate, (("estimate", round(estimate, 6)),), reason)
