"""The start of one routed call: plan → route (decide, then the conversation's pin) → the budget's
admission → the :class:`~steproute._walk_run.WalkRun` that makes it. A call refused on the way is
booked (its span, its decision-log line) before the error reaches the caller.

The router builds one :class:`CallStart` and asks it for each call's walk; the drivers in
:mod:`steproute._walk_drivers` run that walk (sync, async, streamed, or phase by phase in a batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from steproute._budget_gate import BudgetGate
from steproute._call import CallRecord
from steproute._call_context import CallContext
from steproute._pin_keeper import PinKeeper, preferred_model
from steproute._plan import Planner, StepPlan
from steproute._walk_run import WalkRun
from steproute.decision_log import DecisionLog
from steproute.pinning import PinAction
from steproute.telemetry import Telemetry
from steproute.types import Decision, StepRequest

__all__ = ["CallStart"]


class CallStart:
    """Starts one router's calls. ``blocking_budget``: the budget store does I/O, so an async call admits
    itself off the event loop."""

    def __init__(self, planner: Planner, pins: PinKeeper, gate: BudgetGate, calls: CallContext, telemetry: Telemetry,
                 decision_log: DecisionLog | None, *, blocking_budget: bool) -> None:
        self.planner, self.pins, self.gate, self.calls = planner, pins, gate, calls
        self.telemetry, self.decision_log, self.blocking_budget = telemetry, decision_log, blocking_budget

    def route(self, plan: StepPlan, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """The decision a call follows and the pin it follows or has just made (``None``: no thread, pinning off,
        or a PII guard's forced tier, which is never pinned: the conversation's pin is for its ordinary calls)."""
        guarded = self.planner.pii_decision(plan, request)
        if guarded is not None:
            return guarded, None
        return self.planner.routed(plan, request, self.pins.follow)  # decide, pin, then say what latency did

    async def aroute(self, plan: StepPlan, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """Async :meth:`route` (the pin store is read with its async API)."""
        guarded = await self.planner.apii_decision(plan, request)
        if guarded is not None:
            return guarded, None
        return await self.planner.arouted(plan, request, self.pins.afollow)

    def start(self, request: StepRequest, params: Mapping[str, Any]) -> WalkRun:
        """The walk of one call, routed and admitted; a refusal on the way is booked, then raised."""
        record = CallRecord(self.telemetry, self.decision_log, request)
        try:
            plan = self.planner.plan_of(request)
            decision, action = self.route(plan, request)
            decision = self.gate.admit(record, plan, request, decision, params)
        except BaseException as exc:
            record.failed(exc)
            raise
        return WalkRun(self.calls, record, plan, request, decision, action, params, preferred_model(action))

    async def astart(self, request: StepRequest, params: Mapping[str, Any]) -> WalkRun:
        """Async :meth:`start`."""
        record = CallRecord(self.telemetry, self.decision_log, request)
        try:
            plan = self.planner.plan_of(request)
            decision, action = await self.aroute(plan, request)
            if self.blocking_budget:
                decision = await asyncio.to_thread(self.gate.admit, record, plan, request, decision, params)
            else:
                decision = self.gate.admit(record, plan, request, decision, params)
        except BaseException as exc:
            record.failed(exc)
            raise
        return WalkRun(self.calls, record, plan, request, decision, action, params, preferred_model(action))
