"""Cross-tier fallback: when every deployment of a step's tier fails, a stronger tier answers.

In-tier fallback (the tier's deployments in order, retries, cooldowns) is LiteLLM's. This is
the next level up, per step (``tier_fallback``): ``next`` (default) tries the next stronger
tier, ``stronger`` every stronger tier in turn, ``none`` nothing. Never above the step's
``max_tier``; a step whose tier a hint fixes never falls back, and neither does a call a guard
forced to a tier or held to a budget's cap. A stream falls back only when its tier failed before the first chunk: text
already shown cannot be taken back.

Only transient errors (429, 5xx, timeouts, connection errors) fall back by default. A
provider's refusal (:class:`~steproute.errors.ProviderError`: bad or missing credentials, a bad
request, a context window exceeded) would fail on the next tier's deployments too, or worse,
succeed there at a higher price and hide the broken deployment: it is raised, unless the
step's ``fallback_on`` lists its kind.

The decision records ``fallback_from`` and says why in its reason (which deployment, which
error); each failed attempt is a ``chat`` span under the step's ``route`` span; the first
fallback of each (step, tier, error) is a warning on the ``steproute`` logger. When every tier
fails, the :class:`~steproute.errors.DispatchError` names them all and every attempt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from steproute.errors import Attempt, DispatchError, ProviderError, escalates, failure_note, tell_once

if TYPE_CHECKING:
    from steproute._call import CallRecord
    from steproute._call_context import CallContext
    from steproute._plan import StepPlan
    from steproute.dispatch import Completion, CompletionChunk
    from steproute.types import Decision, StepRequest

__all__ = ["Fallback"]


class Fallback:
    """The tiers one call may use, in order, and the bookkeeping when one of them fails."""

    def __init__(self, ctx: CallContext, record: CallRecord, plan: StepPlan, request: StepRequest,
                 decision: Decision, params: Mapping[str, Any]) -> None:
        self.ctx, self.record, self.plan, self.request, self.params = ctx, record, plan, request, params
        self.decision = decision
        self.tiers = self._tiers(plan, decision)
        self.failed: list[str] = []
        self.attempts: list[Attempt] = []
        self.fallback_on: tuple[str, ...] = tuple(ctx.config.policy_for(request.step, plan.kind).fallback_on)
        self.allowed: list[str] = []
        """The ``fallback_on`` kinds that let this call fall back."""

    def _tiers(self, plan: StepPlan, decision: Decision) -> list[str]:
        names, rank = self.ctx.tiers, self.ctx.rank
        mode = plan.tier_fallback
        if plan.fixed is not None or decision.guard is not None or mode == "none":  # a guard set or capped the tier
            return [decision.tier]
        stronger = [t for t in names if rank[decision.tier] < rank[t] <= plan.high]
        return [decision.tier, *(stronger[:1] if mode == "next" else stronger)]

    def call_for(self, tier: str) -> tuple[Decision, Sequence[Any], dict[str, Any]]:
        """The decision and the styled request of the attempt at ``tier``."""
        decision = self.decision if tier == self.decision.tier else replace(
            self.decision, tier=tier, model=self.ctx.dispatcher.first_deployment(tier).model)
        messages, params = self.ctx.style(self.plan, self.request, decision, dict(self.params))
        return decision, messages, params

    def tier_failed(self, tier: str, error: DispatchError) -> None:
        """Book a failed tier; raise the final error when it was the last one allowed, or when
        the provider refused the call and ``fallback_on`` does not list the refusal's kind."""
        self.failed.append(tier)
        self.attempts.extend(error.attempts)
        kind = error.kind if isinstance(error, ProviderError) else None
        if len(self.failed) == len(self.tiers) or not escalates(kind, self.fallback_on):
            if len(self.failed) == 1:
                raise error
            raise error.across(self.failed, self.attempts) from error.__cause__
        if kind is not None:
            self.allowed.append(kind)
        self.record.tier_failed(replace(self.decision, tier=tier), error.attempts)
        allowed = f" (fallback_on lists '{kind}')" if kind is not None else ""
        tell_once(self.ctx, self.request.step, tier, error.attempts,
                  f"fell back to tier {self.tiers[len(self.failed)]!r}{allowed}")

    def answered(self, decision: Decision) -> Decision:
        """The decision of the tier that answered, with the fallback recorded."""
        if not self.failed:
            return decision
        why = ", ".join(sorted({a.error_type for a in self.attempts}))
        allowed = "".join(f"; fallback_on lists '{k}'" for k in dict.fromkeys(self.allowed))
        return replace(decision, fallback_from=self.failed[0],
                       reason=f"{decision.reason}; tier {' → '.join(repr(t) for t in self.failed)} failed ({why}), "
                              f"fell back to {decision.tier!r} ({failure_note(self.attempts)}{allowed})")

    def refused_in_tier(self, tier: str, failed_attempts: Sequence[Attempt]) -> None:
        """The tier answered, but a deployment before the one that did was refused (bad
        credentials, ...): LiteLLM's in-tier fallback hid it; say so once."""
        refused = [a for a in failed_attempts if a.kind is not None]
        if refused:
            tell_once(self.ctx, self.request.step, tier, refused, "the tier's next deployment answered")

    # -- the calls ---------------------------------------------------------------------------

    def complete(self, prefer: str | None) -> tuple[Decision, Completion]:
        for tier in self.tiers:
            decision, messages, params = self.call_for(tier)
            try:
                completion = self.ctx.dispatcher.tier(tier).complete(
                    self.request.step, messages, params, prefer if tier == self.decision.tier else None)
            except DispatchError as exc:
                self.tier_failed(tier, exc)
                continue
            self.refused_in_tier(tier, completion.failed_attempts)
            return self.answered(decision), completion
        raise AssertionError("unreachable: the last tier's failure raises")  # pragma: no cover

    async def acomplete(self, prefer: str | None) -> tuple[Decision, Completion]:
        for tier in self.tiers:
            decision, messages, params = self.call_for(tier)
            try:
                completion = await self.ctx.dispatcher.tier(tier).acomplete(
                    self.request.step, messages, params, prefer if tier == self.decision.tier else None)
            except DispatchError as exc:
                self.tier_failed(tier, exc)
                continue
            self.refused_in_tier(tier, completion.failed_attempts)
            return self.answered(decision), completion
        raise AssertionError("unreachable: the last tier's failure raises")  # pragma: no cover

    def stream(self, prefer: str | None, on_decision: Callable[[Decision], None]) -> Iterator[CompletionChunk]:
        """Chunks of the first tier that starts streaming; ``on_decision`` hears which one it was."""
        for tier in self.tiers:
            decision, messages, params = self.call_for(tier)
            started = False
            try:
                for chunk in self.ctx.dispatcher.tier(tier).stream(
                        self.request.step, messages, params, prefer if tier == self.decision.tier else None):
                    if not started:
                        started = True
                        on_decision(self.answered(decision))
                    if chunk.usage is not None:
                        self.refused_in_tier(tier, chunk.failed_attempts)
                    yield chunk
                return
            except DispatchError as exc:
                if started:
                    raise
                self.tier_failed(tier, exc)

    async def astream(self, prefer: str | None, on_decision: Callable[[Decision], None]) -> AsyncIterator[CompletionChunk]:
        for tier in self.tiers:
            decision, messages, params = self.call_for(tier)
            started = False
            try:
                async for chunk in self.ctx.dispatcher.tier(tier).astream(
                        self.request.step, messages, params, prefer if tier == self.decision.tier else None):
                    if not started:
                        started = True
                        on_decision(self.answered(decision))
                    if chunk.usage is not None:
                        self.refused_in_tier(tier, chunk.failed_attempts)
                    yield chunk
                return
            except DispatchError as exc:
                if started:
                    raise
                self.tier_failed(tier, exc)
