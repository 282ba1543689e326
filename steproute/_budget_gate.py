"""The tenant's budget at the door of a call: reserve its most expensive outcome, hold it to a
cheaper tier, or refuse it (:class:`~steproute.errors.BudgetExceeded`). The reservation rides
on the call's record and is settled at what the call really cost."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from steproute._call import CallRecord
from steproute._plan import StepPlan
from steproute.dispatch import Dispatcher
from steproute.errors import BudgetExceeded, RoutingError, shown
from steproute.guards import BudgetGuard, estimate_cost, max_output_tokens
from steproute.types import Decision, StepRequest

__all__ = ["BudgetGate", "Where"]

Where = Callable[[StepPlan, StepRequest, Decision, Mapping[str, Any]], tuple[str, int]]
"""Where a decided call will go: its tier and the position of its deployment in the tier."""


class BudgetGate:
    """Admits one router's calls against its :class:`~steproute.guards.BudgetGuard` (``None``: no budget)."""

    def __init__(self, guard: BudgetGuard | None, dispatcher: Dispatcher, rank: Mapping[str, int],
                 where: Where | None = None) -> None:
        self.guard = guard
        self._where = where
        """Where the call will really go (the capability filter may move it to a stronger tier):
        the tier and the position of its deployment; ``None``: the decided tier's first."""
        self._dispatcher = dispatcher
        self._rank = rank

    def admit(self, record: CallRecord, plan: StepPlan, request: StepRequest, decision: Decision,
              params: Mapping[str, Any]) -> Decision:
        """The decision the call may follow: as decided, or held to the budget's cap tier
        (``guard`` ``budget:capped``: no cascade escalation, no fallback above the cap)."""
        if self.guard is None:
            return decision
        # reserve at the tier the call will go to: the capability filter may move it to a dearer one
        tier, index = (decision.tier, 0) if self._where is None else self._where(plan, request, decision, params)
        deployment = self._dispatcher.deployments(tier)[index]
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
        if rank[tier] > rank[cap] and (plan.fixed is not None or decision.policy == "guard"):
            raise record.refused(decision, RoutingError(
                f"step {request.step!r}: tenant {shown(request.tenant)} is over its budget, which holds it "
                f"to tier {cap!r}; the step's tier is fixed at {tier!r}"), held_to=cap)
        # above the cap (as decided, or moved there for a capability): held to the cap, where the
        # capability filter then finds the tier fixed (CapabilityError if it cannot serve the call)
        tier = cap if rank[tier] > rank[cap] else decision.tier
        return replace(decision, tier=tier, model=self._dispatcher.first_deployment(tier).model,
                       guard=decision.guard or "budget:capped",
                       reason=f"{decision.reason}; budget: tenant {shown(request.tenant)} spent "
                              f"${verdict.spent_usd:.6g} of ${verdict.limit_usd:.6g}, held to {cap!r}")
