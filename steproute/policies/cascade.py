"""``cascade``: try the cheapest tier first; escalate while the answer's confidence is low.

A pre-call policy decides before any answer exists; a cascade decides after a real attempt,
which catches the hard cases a classifier misses. This module holds the policy as data and
judgement: which tier to start from (:meth:`CascadePolicy.choose`), which tier comes next
(:meth:`CascadePolicy.next_tier`) and whether an answer is good enough
(:meth:`CascadePolicy.judge`). Making the attempts is the router's job
(:mod:`steproute._cascade`).

Signals combine by ``combine``: ``all`` accepts when every signal that applies passes (the
first that fails stops the judging, so model-calling signals run only when the cheap ones
pass), ``any`` when one passes, ``weighted`` when the weighted mean score reaches
``threshold``. An answer no signal applies to is accepted.

Example:
    >>> from steproute.policies.confidence import Answer, HedgingSignal
    >>> policy = CascadePolicy(("fast", "strong"), [HedgingSignal()])
    >>> policy.choose(StepRequest("s", [])).tier
    'fast'
    >>> policy.judge(StepRequest("s", []), Answer("I'm not sure."), None).accepted
    False
    >>> policy.next_tier("fast")
    'strong'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from steproute.policies.base import Choice, Policy
from steproute.policies.confidence import Answer, Probe, Signal
from steproute.types import StepRequest

__all__ = ["CascadePolicy", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """The judgement of one attempt's answer."""

    accepted: bool
    confidence: float | None
    """The combined score (``all``: the least; ``any``: the most; ``weighted``: the mean);
    ``None`` when no signal applied."""
    signals: tuple[tuple[str, float], ...]
    """The score of each signal that was asked and applied, in the order asked."""
    reason: str


class CascadePolicy:
    """The ``cascade`` policy (see the module docstring)."""

    name = "cascade"

    def __init__(self, tiers: Sequence[str], signals: Sequence[Signal], *, combine: str = "all",
                 threshold: float = 0.5, start: Policy | None = None, speculative: bool = False,
                 max_concurrency: int = 8) -> None:
        if not tiers:
            raise ValueError("a cascade needs at least one tier")
        if combine not in ("all", "any", "weighted"):
            raise ValueError(f"combine must be all, any or weighted, not {combine!r}")
        if speculative and start is None:
            raise ValueError("speculative routing needs a start policy")
        self.tiers = tuple(tiers)
        # cheap signals first: with combine 'all' a failed cheap check saves the model calls
        self.signals = tuple(sorted(signals, key=lambda s: s.calls_models))
        self.combine = combine
        self.threshold = threshold
        self.start = start
        self.speculative = speculative
        self.max_concurrency = max_concurrency
        self.needs_logprobs = any(s.name == "logprob" for s in self.signals)
        self.calls_models = any(s.calls_models for s in self.signals)
        self.blocking = bool(start is not None and getattr(start, "blocking", False))
        """Deciding the start calls a model: the router keeps it off the event loop."""

    # -- where to start, where to go next -------------------------------------------------------

    def first_choice(self) -> Choice:
        return Choice(self.tiers[0], f"cascade: start at {self.tiers[0]!r}")

    def choose(self, request: StepRequest) -> Choice:
        """The tier the cascade starts from: ``start``'s pick (moved up to a cascade tier), else
        the first tier. (On async calls a speculative cascade starts at :meth:`first_choice`
        and asks ``start`` while that call runs.)"""
        if self.start is None:
            return self.first_choice()
        return self.from_start(self.start.choose(request))

    def from_start(self, picked: Choice | None) -> Choice:
        if picked is None:
            return self.first_choice()
        tier = self.at_or_above(picked.tier)
        if tier is None:
            return Choice(self.tiers[-1], f"cascade: {self.start.name if self.start else 'start'} picked "
                                          f"{picked.tier!r}, above the cascade; {self.tiers[-1]!r}")
        return Choice(tier, f"cascade: start at {tier!r} ({picked.reason})", picked.score)

    def at_or_above(self, tier: str, order: Sequence[str] | None = None) -> str | None:
        """The first cascade tier at or above ``tier`` in the router's ``order`` (default: the
        cascade's own)."""
        if tier in self.tiers:
            return tier
        if order is None or tier not in order:
            return None
        rank = order.index(tier)
        return next((t for t in self.tiers if t in order and order.index(t) >= rank), None)

    def next_tier(self, tier: str) -> str | None:
        """The tier to escalate to after ``tier`` (``None``: it is the last)."""
        if tier not in self.tiers:
            return None
        index = self.tiers.index(tier)
        return self.tiers[index + 1] if index + 1 < len(self.tiers) else None

    # -- judging ----------------------------------------------------------------------------------

    def judge(self, request: StepRequest, answer: Answer, probe: Probe | Any) -> Verdict:
        """Score ``answer`` with the signals and combine them."""
        scores: list[tuple[Signal, float]] = []
        for signal in self.signals:
            value = signal.score(request, answer, probe)
            if value is None:
                continue
            scores.append((signal, value))
            passed = value >= signal.threshold
            if (self.combine == "all" and not passed) or (self.combine == "any" and passed):
                break
        named = tuple((s.name, round(v, 6)) for s, v in scores)
        if not scores:
            return Verdict(True, None, named, "no signal applies")
        shown = ", ".join(f"{s.name}={v:.3g}" for s, v in scores)
        if self.combine == "weighted":
            confidence = sum(s.weight * v for s, v in scores) / sum(s.weight for s, _ in scores)
            accepted = confidence >= self.threshold
            return Verdict(accepted, confidence, named,
                           f"{shown}; weighted {confidence:.3g} {'>=' if accepted else '<'} {self.threshold:g}")
        passed_all = [v >= s.threshold for s, v in scores]
        if self.combine == "all":
            accepted, confidence = all(passed_all), min(v for _, v in scores)
        else:
            accepted, confidence = any(passed_all), max(v for _, v in scores)
        failed = [s.name for (s, v), ok in zip(scores, passed_all, strict=True) if not ok]
        verdict = "accepted" if accepted else f"{', '.join(failed)} below threshold"
        return Verdict(accepted, confidence, named, f"{shown}; {verdict}")
