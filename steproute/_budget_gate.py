"""The tenant's budget at the door of a call: reserve its most expensive outcome, hold it to a
cheaper tier, or refuse it (:class:`~steproute.errors.BudgetExceeded`). The reservation rides
on the call's record and is settled at what the call really cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from steproute._call import CallRecord
from steproute._plan import StepPlan
from steproute.dispatch import Dispatcher
from steproute.errors import BudgetExceeded, RoutingError, shown
from steproute.guards import BudgetGuard, estimate_cost, max_output_tokens
from steproute.types import Decision, StepRequest

__all__ = ["BudgetGate"]


class BudgetGate:
    """Admits one router's calls against its :class:`~steproute.guards.BudgetGuard` (``None``: no budget)."""

    def __init__(self, guard: BudgetGuard | None, dispatcher: Dispatcher, rank: Mapping[str, int]) -> None:
        self.guard = guard
        self._dispatcher = dispatcher
        self._rank = rank

    def admit(self, record: CallRecord, plan: StepPlan, request: StepRequest, decision: Decision,
              params: Mapping[str, Any]) -> Decision:
        """The decision the call may follow: as decided, or held to the budget's cap tier
        (``guard`` ``budget:capped``: no cascade escalation, no fallback above the cap)."""
        if self.guard is None:
            return decision
        deployment = self._dispatcher.first_deployment(decision.tier)
        # reserve the most the call can cost: max_tokens, else the model's most, for each of n choices
        estimate = estimate_cost(deployment.price, request, params, max_output_tokens(deployment.model))
        try:
            verdict = self.guard.admit(request, estimate)
        except BudgetExceeded as exc:
            record.refused(decision, exc)  # logged and on the span, as a decision refused by the budget
            raise
        record.budget = verdict.hold
        cap = verdict.cap_tier
        if cap is None:
            return decision
        rank = self._rank
        if rank[decision.tier] > rank[cap] and (plan.fixed is not None or decision.policy == "guard"):
            raise record.refused(decision, RoutingError(
                f"step {request.step!r}: tenant {shown(request.tenant)} is over its budget, which holds it "
                f"to tier {cap!r}; the step's tier is fixed at {decision.tier!r}"), held_to=cap)
        tier = cap if rank[decision.tier] > rank[cap] else decision.tier
        return replace(decision, tier=tier, model=self._dispatcher.first_deployment(tier).model,
                       guard=decision.guard or "budget:capped",
                       reason=f"{decision.reason}; budget: tenant {shown(request.tenant)} spent "
                              f"${verdict.spent_usd:.6g} of ${verdict.limit_usd:.6g}, held to {cap!r}")
