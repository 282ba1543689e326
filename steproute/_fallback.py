"""Cross-tier fallback: when every deployment of a step's tier fails, a stronger tier answers.

In-tier fallback (the tier's deployments in order, retries, cooldowns) is LiteLLM's. This is
the next level up, per step (``tier_fallback``): ``next`` (default) tries the next stronger
tier, ``stronger`` every stronger tier in turn, ``none`` nothing. Never above the step's
``max_tier``; a step whose tier a hint fixes never falls back, and neither does a call a guard
forced to a tier or held to a budget's cap. A stream falls back only when its tier failed before the first chunk: text
already shown cannot be taken back.

The decision records ``fallback_from`` and says why in its reason; each failed attempt is a
``chat`` span under the step's ``route`` span. When every tier fails, the
:class:`~steproute.errors.DispatchError` names them all and every attempt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from steproute.errors import Attempt, DispatchError

if TYPE_CHECKING:
    from steproute._call import CallRecord
    from steproute.dispatch import Completion, CompletionChunk
    from steproute.router import StepRouter, _StepPlan
    from steproute.types import Decision, StepRequest

__all__ = ["Fallback"]


class Fallback:
    """The tiers one call may use, in order, and the bookkeeping when one of them fails."""

    def __init__(self, router: StepRouter, record: CallRecord, plan: _StepPlan, request: StepRequest,
                 decision: Decision, params: Mapping[str, Any]) -> None:
        self.router, self.record, self.plan, self.request, self.params = router, record, plan, request, params
        self.decision = decision
        self.tiers = self._tiers(plan, decision)
        self.failed: list[str] = []
        self.attempts: list[Attempt] = []

    def _tiers(self, plan: _StepPlan, decision: Decision) -> list[str]:
        names, rank = self.router.tiers, self.router._rank
        mode = plan.tier_fallback
        if plan.fixed is not None or decision.guard is not None or mode == "none":  # a guard set or capped the tier
            return [decision.tier]
        stronger = [t for t in names if rank[decision.tier] < rank[t] <= plan.high]
        return [decision.tier, *(stronger[:1] if mode == "next" else stronger)]

    def call_for(self, tier: str) -> tuple[Decision, Sequence[Any], dict[str, Any]]:
        """The decision and the styled request of the attempt at ``tier``."""
        decision = self.decision if tier == self.decision.tier else replace(
            self.decision, tier=tier, model=self.router._dispatcher.first_deployment(tier).model)
        messages, params = self.router._styled(self.plan, self.request, decision, dict(self.params))
        return decision, messages, params

    def tier_failed(self, tier: str, error: DispatchError) -> None:
        """Book a failed tier; raise the final error when it was the last one allowed."""
        self.failed.append(tier)
        self.attempts.extend(error.attempts)
        if len(self.failed) == len(self.tiers):
            if len(self.failed) == 1:
                raise error
            raise DispatchError(self.request.step, self.tiers[0], self.attempts, tiers=self.failed) from error.__cause__
        self.record.tier_failed(replace(self.decision, tier=tier), error.attempts)

    def answered(self, decision: Decision) -> Decision:
        """The decision of the tier that answered, with the fallback recorded."""
        if not self.failed:
            return decision
        why = ", ".join(sorted({a.error_type for a in self.attempts}))
        return replace(decision, fallback_from=self.failed[0],
                       reason=f"{decision.reason}; tier {' → '.join(repr(t) for t in self.failed)} failed ({why}), "
                              f"fell back to {decision.tier!r}")

    # -- the calls ---------------------------------------------------------------------------

    def complete(self, prefer: str | None) -> tuple[Decision, Completion]:
        for tier in self.tiers:
            decision, messages, params = self.call_for(tier)
            try:
                completion = self.router._dispatcher.tier(tier).complete(
                    self.request.step, messages, params, prefer if tier == self.decision.tier else None)
            except DispatchError as exc:
                self.tier_failed(tier, exc)
                continue
            return self.answered(decision), completion
        raise AssertionError("unreachable: the last tier's failure raises")  # pragma: no cover

    async def acomplete(self, prefer: str | None) -> tuple[Decision, Completion]:
        for tier in self.tiers:
            decision, messages, params = self.call_for(tier)
            try:
                completion = await self.router._dispatcher.tier(tier).acomplete(
                    self.request.step, messages, params, prefer if tier == self.decision.tier else None)
            except DispatchError as exc:
                self.tier_failed(tier, exc)
                continue
            return self.answered(decision), completion
        raise AssertionError("unreachable: the last tier's failure raises")  # pragma: no cover

    def stream(self, prefer: str | None, on_decision: Callable[[Decision], None]) -> Iterator[CompletionChunk]:
        """Chunks of the first tier that starts streaming; ``on_decision`` hears which one it was."""
        for tier in self.tiers:
            decision, messages, params = self.call_for(tier)
            started = False
            try:
                for chunk in self.router._dispatcher.tier(tier).stream(
                        self.request.step, messages, params, prefer if tier == self.decision.tier else None):
                    if not started:
                        started = True
                        on_decision(self.answered(decision))
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
                async for chunk in self.router._dispatcher.tier(tier).astream(
                        self.request.step, messages, params, prefer if tier == self.decision.tier else None):
                    if not started:
                        started = True
                        on_decision(self.answered(decision))
                    yield chunk
                return
            except DispatchError as exc:
                if started:
                    raise
                self.tier_failed(tier, exc)
