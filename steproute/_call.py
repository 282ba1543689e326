"""The bookkeeping of one routed call: its spans, metrics and decision-log entry.

The router opens a :class:`CallRecord` before deciding and closes it with the answer or the
error; sync, async and streaming calls share it, so all of them are observed the same way.
``chat`` spans are made once each attempt's outcome is known, with the attempt's own start
and end: the attempts LiteLLM made and failed inside one dispatch (in-tier fallback), then
the one that answered.

A step's cost is everything it paid for: its answer, a cascade's rejected attempts, and failed
attempts that were paid (a malformed answer, ``Attempt.cost_usd``), on the ``route`` span, in
the log entry and in the budget's settlement alike. A failed call has no baseline (nothing
answered to price on the baseline tier): its ``route`` span carries its cost and no savings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from steproute._decision_counter import count_decision
from steproute.decision_capture import redacted_messages, redacted_text, request_shape
from steproute.errors import Attempt, BudgetExceeded, DispatchError, shown
from steproute.pricing import Price, call_cost, estimate_usage
from steproute.telemetry import DECISION_REASON, STREAM_ABANDONED, TIER, USAGE_ESTIMATED, error_type

if TYPE_CHECKING:
    from steproute.decision_log import DecisionLog
    from steproute.dispatch import Deployment, StreamCollector
    from steproute.telemetry import Telemetry
    from steproute.types import Decision, StepRequest, Usage

__all__ = ["CallRecord"]


class CallRecord:
    """Spans, metrics and the log entry of one call, from decision to answer."""

    __slots__ = ("_booked", "_deployment", "_dispatched_ns", "_failed_cost", "_log", "_route", "_spent", "_started",
                 "_telemetry", "budget", "decision", "log_extra", "request")

    def __init__(self, telemetry: Telemetry, log: DecisionLog | None, request: StepRequest) -> None:
        self._telemetry = telemetry
        self._log = log
        self.request = request
        self._started = time.perf_counter()
        self._route = telemetry.start_route(request)
        self._deployment: Deployment | None = None
        self._dispatched_ns = 0
        self._booked = 0
        """Failed attempts already given a span (tiers that failed before a fallback)."""
        self._spent = 0.0
        """What the calls booked so far cost (a cascade's rejected attempts)."""
        self._failed_cost = 0.0
        """What failed attempts that were paid cost (malformed answers), on top of the step's answer."""
        self.budget: Any = None
        """The tenant budget's reservation (a :class:`~steproute.guards.BudgetHold`), settled at the end."""
        self.decision: Decision | None = None
        self.log_extra: dict[str, Any] | None = None
        """More keys for the log entry (``shadow``: what the step's shadow candidate did)."""

    @property
    def failed_cost(self) -> float:
        """What the step's failed attempts that were paid cost so far (malformed answers)."""
        return self._failed_cost

    def decided(self, decision: Decision, deployment: Deployment) -> None:
        self.decision = decision
        self._deployment = deployment
        self._telemetry.decided(self._route, decision, time.perf_counter() - self._started)
        self._dispatched_ns = time.time_ns()

    def annotate(self, attributes: dict[str, Any]) -> None:
        """More attributes on the ``route`` span (the capabilities a call needed)."""
        if self._route.is_recording():
            self._route.set_attributes(attributes)

    def unserved(self, decision: Decision) -> None:
        """No tier can serve the call (:class:`~steproute.capabilities.CapabilityError`): ``decision``
        (the tier it would have had, why not on its reason) goes on the ``route`` span and, when
        :meth:`failed` closes the record, into the log."""
        self.decision = decision
        self._telemetry.decided(self._route, decision, time.perf_counter() - self._started)

    def walked(self, decision: Decision) -> None:
        """The tier walk ended in an error: ``decision`` (the tier it ended at; on its reason, each
        tier tried and why none answered) goes on the ``route`` span and, when :meth:`failed`
        closes the record, into the log."""
        self.decision = decision
        self.annotate({TIER: decision.tier, DECISION_REASON: decision.reason})
        self._telemetry.cascaded(self._route, decision)
        self._telemetry.fell_back(self._route, decision)

    def refused(self, decision: Decision, error: BaseException, *, held_to: str | None = None) -> BaseException:
        """The tenant's budget refused the call before any model call: ``decision`` (the tier
        the call would have had) goes on the ``route`` span and, when :meth:`failed` closes the
        record, into the log, with ``guard: "budget:refused"`` and why on the reason. Returns
        ``error``, for the caller to raise."""
        tenant = shown(self.request.tenant)
        if isinstance(error, BudgetExceeded):
            why = f"tenant {tenant} spent ${error.spent_usd:.6g} of ${error.limit_usd:.6g}"
        else:
            why = f"tenant {tenant} is over its budget, which holds it to {held_to!r}, below the tier the step must use"
        self.decision = replace(decision, guard="budget:refused", reason=f"{decision.reason}; budget: {why}; refused")
        self._telemetry.decided(self._route, self.decision, time.perf_counter() - self._started)
        return error

    def _failed_attempts(self, decision: Decision, attempts: Sequence[Attempt],
                         attributes: dict[str, Any] | None = None) -> int:
        """Spans for the attempts that failed, and what the paid ones cost (no span for an
        attempt that called no deployment: a tier cooling down); returns when the last one ended."""
        last = self._dispatched_ns
        for a in attempts:
            self._failed_cost += a.cost_usd or 0.0
            if a.model is None:
                continue
            started = a.started_ns or last
            ended = a.ended_ns or time.time_ns()
            self._telemetry.chat(self._route, decision, model=a.model, provider=a.provider, started_ns=started,
                                 ended_ns=ended, usage=a.usage, cost_usd=a.cost_usd or 0.0, error_type=a.error_type,
                                 attributes=attributes)
            last = max(last, ended)
        return last

    def attempted(
        self,
        decision: Decision,
        *,
        model: str | None,
        provider: str,
        started_ns: int,
        usage: Usage | None = None,
        cost_usd: float = 0.0,
        response_model: str | None = None,
        finish_reason: str | None = None,
        failed_attempts: Sequence[Attempt] = (),
        error_type: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """A model call of the step that is not its answer: a cascade attempt that was judged
        not good enough, a signal's extra call, a speculative call cancelled, or a failed one
        (``error_type``; a paid one, a malformed answer, adds ``cost_usd`` to the step's cost;
        ``model`` ``None``: no deployment was called). ``decision.tier`` is the attempt's tier."""
        self._dispatched_ns = started_ns
        if error_type is None:
            self._spent += cost_usd
        else:
            self._failed_cost += cost_usd
        started = self._failed_attempts(decision, failed_attempts)
        if model is None:
            return
        self._telemetry.chat(self._route, decision, model=model, provider=provider, started_ns=started,
                             ended_ns=time.time_ns(), usage=usage, cost_usd=cost_usd, response_model=response_model,
                             finish_reason=finish_reason, error_type=error_type, attributes=attributes)
        self._dispatched_ns = time.time_ns()

    def tier_failed(self, decision: Decision, attempts: Sequence[Attempt], *, error_type: str,
                    deployment: Deployment, attributes: dict[str, Any] | None = None) -> None:
        """Every deployment of ``decision.tier`` failed and the call moves to another tier: a
        span for each failed attempt (one at ``deployment`` with ``error_type`` when the
        error carries none)."""
        if attempts:
            self._dispatched_ns = self._failed_attempts(decision, attempts, attributes)
            self._booked += len(attempts)
            return
        self._telemetry.chat(self._route, decision, model=deployment.model, provider=deployment.provider,
                             started_ns=self._dispatched_ns, ended_ns=time.time_ns(), error_type=error_type,
                             attributes=attributes)
        self._dispatched_ns = time.time_ns()

    def answered(
        self,
        decision: Decision,
        *,
        usage: Usage,
        cost_usd: float,
        baseline_cost_usd: float,
        provider: str,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reason: str | None = None,
        response: str | None = None,
        failed_attempts: Sequence[Attempt] = (),
        step_cost_usd: float | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> float:
        """The call succeeded; ``decision.model`` is the deployment that answered.
        ``cost_usd`` is this answer's call; ``step_cost_usd`` (default: the same) the step's,
        with every earlier attempt of a cascade. Returns the step's cost: that, and every paid
        failed attempt (a malformed answer before a fallback)."""
        started = self._failed_attempts(decision, failed_attempts)
        self._telemetry.chat(self._route, decision, model=decision.model, provider=provider, started_ns=started,
                             ended_ns=time.time_ns(), usage=usage, cost_usd=cost_usd, response_model=response_model,
                             response_id=response_id, finish_reason=finish_reason, attributes=attributes,
                             messages=self.request.messages, response=response)
        if decision.cascade:
            self._telemetry.cascaded(self._route, decision)
        if decision.fallback_from is not None:
            self._telemetry.fell_back(self._route, decision)
        cost_usd = (cost_usd if step_cost_usd is None else step_cost_usd) + self._failed_cost
        if self.budget is not None:  # no usage from the provider: settled at the reservation, never at $0
            self.budget.settle(cost_usd, usage_known=_reported(usage))
        self._telemetry.end_route(self._route, cost_usd, baseline_cost_usd, repinned=decision.repinned,
                                  tier=decision.tier)
        count_decision(self._telemetry.decisions, decision, "answered")
        if self._log is not None:
            entry = self._entry(decision, usage, cost_usd, baseline_cost_usd)
            if failed_attempts:
                entry["failed_attempts"] = [{"model": a.model, "error_type": a.error_type} for a in failed_attempts]
            if self._log.include_prompts and response is not None:
                entry["response"] = redacted_text(response, self._telemetry.redact)
            self._log.write(entry)
        return cost_usd

    def stopped(self, error: BaseException, stream: StreamCollector, decision: Decision, deployment: Deployment,
                baseline: Price, choices: Any = 1) -> None:
        """A live stream ended early. Its consumer stopped it (``GeneratorExit``: closed, broken
        out of; ``CancelledError``): :meth:`abandoned`, at the provider's usage if it came, else
        at the usage counted from the text streamed so far (``choices`` times), at
        ``deployment``'s price. Any other error: :meth:`failed`."""
        if not isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            self.failed(error)
            return
        text = "".join(stream.parts)
        if stream.usage_known:
            usage, cost = stream.usage, stream.cost_usd
        else:
            try:
                n = max(1, int(choices or 1))
            except (TypeError, ValueError):
                n = 1
            usage = estimate_usage(deployment.model, self.request.messages, text, n)
            cost = call_cost(deployment.price, usage)
        self.abandoned(decision, usage=usage, cost_usd=cost, baseline_cost_usd=call_cost(baseline, usage),
                       provider=stream.provider or deployment.provider, estimated=not stream.usage_known,
                       finish_reason=stream.finish_reason, response=text)

    def abandoned(
        self,
        decision: Decision,
        *,
        usage: Usage,
        cost_usd: float,
        baseline_cost_usd: float,
        provider: str,
        estimated: bool,
        finish_reason: str | None = None,
        response: str | None = None,
    ) -> None:
        """The consumer stopped a stream before its end (closed it, broke out, cancelled it):
        booked at what was generated so far (``estimated``: counted from the streamed text, the
        provider never said), marked abandoned on the spans and the log entry; the budget is
        settled at that cost, never at $0."""
        attributes = {STREAM_ABANDONED: True, USAGE_ESTIMATED: estimated}
        self._telemetry.chat(self._route, decision, model=decision.model, provider=provider,
                             started_ns=self._dispatched_ns, ended_ns=time.time_ns(), usage=usage, cost_usd=cost_usd,
                             finish_reason=finish_reason, attributes=attributes)
        cost_usd += self._spent + self._failed_cost
        if self.budget is not None:
            self.budget.settle(cost_usd, usage_known=True)
        if self._route.is_recording():
            self._route.set_attributes(attributes)
        self._telemetry.end_route(self._route, cost_usd, baseline_cost_usd, repinned=decision.repinned,
                                  tier=decision.tier)
        count_decision(self._telemetry.decisions, decision, "abandoned")
        if self._log is not None:
            entry = self._entry(decision, usage, cost_usd, baseline_cost_usd)
            entry.update(abandoned=True, usage_estimated=estimated)
            if self._log.include_prompts and response is not None:
                entry["response"] = redacted_text(response, self._telemetry.redact)
            self._log.write(entry)

    def failed(self, error: BaseException) -> None:
        """The call failed. What its earlier calls cost (a cascade's rejected attempts, paid
        failed attempts) is still spent: the budget, the ``route`` span and the log entry all
        carry it; the log entry lists every failed attempt, in order. A failed request is not
        billed. The ``route`` span has no baseline and no savings: nothing answered."""
        decision = self.decision
        attempts: Sequence[Attempt] = error.attempts if isinstance(error, DispatchError) else ()
        if decision is not None and self._deployment is not None:
            if attempts:
                if len(attempts) > self._booked:
                    self._failed_attempts(decision, attempts[self._booked:])
            else:  # failed around the model call (cancelled, a broken stream): one span for it
                self._telemetry.chat(self._route, decision, model=decision.model, provider=self._deployment.provider,
                                     started_ns=self._dispatched_ns, ended_ns=time.time_ns(),
                                     error_type=error_type(error))
        elif attempts:
            self._failed_cost += sum(a.cost_usd or 0.0 for a in attempts[self._booked:])
        spent = self._spent + self._failed_cost
        if self.budget is not None:
            self.budget.settle(spent, usage_known=True)
        self._telemetry.end_route(self._route, spent, None, error, tier=decision.tier if decision else None)
        if decision is not None:
            count_decision(self._telemetry.decisions, decision, "failed")
        if self._log is not None and decision is not None:
            entry = self._entry(decision, None, spent, 0.0)
            entry["error"] = type(error).__name__
            if decision.guard == "budget:refused":
                entry["outcome"] = "refused"
            if attempts:
                entry["failed_attempts"] = [{"model": a.model, "error_type": a.error_type} for a in attempts]
            self._log.write(entry)

    def _entry(self, decision: Decision, usage: Usage | None, cost: float, baseline: float) -> dict[str, Any]:
        request = self.request
        entry: dict[str, Any] = {
            "type": "decision",
            "id": decision.id,
            "ts": time.time(),
            "step": decision.step,
            "kind": decision.kind,
            "tier": decision.tier,
            "model": decision.model,
            "policy": decision.policy,
            "reason": decision.reason,
            "score": decision.score,
            "pinned": decision.pinned,
            "pin_group": decision.pin_group,
            "repinned": decision.repinned,
            "escalated_from": decision.escalated_from,
            "guard": decision.guard,
            "fallback_from": decision.fallback_from,
            "thread": decision.thread,
            "tenant": request.tenant,
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "cost_usd": cost,
            "baseline_cost_usd": baseline,
            "latency_s": round(time.perf_counter() - self._started, 6),
            "trace_id": self._telemetry.trace_id(self._route),
            **request_shape(request),
        }
        if decision.cascade:  # a judged walk's attempts, answered or failed
            entry.update(attempts=decision.attempts, cascade=[a.as_dict() for a in decision.cascade])
        if (arm := decision.experiment) is not None:  # an A/B experiment's arm (steproute report --by arm)
            entry.update(experiment=arm.name, arm=arm.arm, control_arm=arm.control, assigned=arm.assigned, unit=arm.unit)
        if self._log is not None and self._log.include_prompts:
            entry["messages"] = redacted_messages(request.messages, self._telemetry.redact)
        if self.log_extra:
            entry.update(self.log_extra)
        return entry


def _reported(usage: Usage) -> bool:
    """Whether the provider reported the call's usage: one that sent none leaves every count at
    0, and a call that was really made always reads some input."""
    return bool(usage.input_tokens or usage.output_tokens or usage.cache_read_tokens)
