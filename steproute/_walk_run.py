"""One call's tier walk bound to its call: the request each attempt sends, the books each
outcome writes, the verdict on an answer, and the pin once answered.

:class:`~steproute.tier_walk.TierWalk` decides (no I/O); :class:`WalkRun` turns its moves into
requests and books (spans, the one-time warning, the decision); the drivers
(:mod:`steproute._walk_drivers`) make the calls, sync, async, streamed or in a batch. Every
attempt is a ``chat`` span under the step's ``route`` span: failed tiers, rejected answers
with their verdict, the calls signals made, and the answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from steproute._call import CallRecord
from steproute._call_context import CallContext
from steproute._capability_gate import Capable
from steproute._pin_keeper import without_warm
from steproute._plan import StepPlan
from steproute.dispatch import Completion
from steproute.errors import DispatchError, ProviderError, say_once, tell_once
from steproute.pinning import Pin, PinAction
from steproute.policies.cascade import CascadePolicy, Verdict
from steproute.policies.confidence import Answer
from steproute.results import RoutedCompletion
from steproute.shadow import shadow_books
from steproute.telemetry import CASCADE_ACCEPTED, CASCADE_CONFIDENCE, CASCADE_ROLE, CASCADE_SIGNAL, DECISION_REASON
from steproute.tier_client import TierClient
from steproute.tier_walk import TierWalk, walk_rules
from steproute.types import CascadeAttempt, Decision, StepRequest

__all__ = ["Pending", "WalkRun", "answer_of"]

SAMPLE_TEMPERATURE = 0.7
"""Temperature of the extra answers ``consistency`` compares (the step's own if higher)."""


def answer_of(completion: Completion) -> Answer:
    """What the confidence signals read of a completion."""
    logprobs = tuple(t.logprob for t in completion.logprobs) if completion.logprobs else None
    return Answer(completion.content or "", tuple((c.name, c.arguments) for c in completion.tool_calls), logprobs,
                  completion.finish_reason)


@dataclass
class Pending:
    """The attempt being made: its tier, its styled messages and parameters."""

    tier: str
    messages: Sequence[Any]
    params: dict[str, Any]
    prefer: str | None
    started_ns: int = 0


class Probe:
    """The model calls signals make while judging one attempt; each is kept for its span and cost."""

    def __init__(self, run: WalkRun, pending: Pending) -> None:
        self._run, self._pending = run, pending
        self.calls: list[tuple[str, str, Completion, int]] = []

    @property
    def tier(self) -> str:
        """The tier whose answer is being judged (a cascade routing weighs escalating from it)."""
        return self._pending.tier

    def samples(self, n: int) -> list[Answer]:
        params = self._pending.params
        temperature = max(float(params.get("temperature") or 0.0), SAMPLE_TEMPERATURE)
        answers = []
        for _ in range(n):
            started = time.time_ns()
            completion = self._run.client(self._pending.tier).complete(
                self._run.request.step, self._pending.messages, {**params, "temperature": temperature})
            self.calls.append(("sample", self._pending.tier, completion, started))
            answers.append(answer_of(completion))
        return answers

    def ask(self, tier: str, messages: Sequence[Any], max_tokens: int) -> str:
        started = time.time_ns()
        completion = self._run.ctx.dispatcher.tier(tier).complete(
            self._run.request.step, messages, {"max_tokens": max_tokens, "temperature": 0})
        self.calls.append(("judge", tier, completion, started))
        return completion.content or ""


class WalkRun:
    """The attempts of one routed call: a plain call (cross-tier fallback) or a cascade."""

    def __init__(self, ctx: CallContext, record: CallRecord, plan: StepPlan, request: StepRequest,
                 decision: Decision, action: PinAction | None, params: Mapping[str, Any], prefer: str | None) -> None:
        self.ctx, self.record, self.plan, self.request = ctx, record, plan, request
        # the capability filter (raises CapabilityError, booked, before any call), then the decision is on the books
        decided = decision.tier
        decision, capable = ctx.capabilities.admit(record, plan, request, decision, params)
        self.held_unservable = action is not None and action.held is not None and (
            decision.tier != decided or not self._serves(ctx, capable, decision.tier, action.held.model))
        """The pin's deployment cannot serve this call: it is not tried first, and the deployment
        that answers instead is no re-pin (the pin keeps its deployment)."""
        if self.held_unservable:
            decision, prefer = without_warm(decision, action), None
        record.decided(decision, ctx.dispatcher.first_deployment(decision.tier))
        self.moved = decision.tier != decided
        """The capability filter moved the call off its decided tier: like a fallback, it never moves the pin."""
        self.capable: Capable | None = capable
        """What the call may not use (tiers, deployments that cannot serve it); ``None``: everything."""
        self.decision, self.action, self.params, self.prefer = decision, action, dict(params), prefer
        cascade = plan.policy if plan.fixed is None and isinstance(plan.policy, CascadePolicy) else None
        self.cascade: CascadePolicy | None = cascade
        rules = walk_rules(decision.tier, ctx.tiers, plan.high, fallback=plan.tier_fallback,
                           cascade=cascade.tiers if cascade is not None else None,
                           fixed=plan.fixed is not None or decision.guard is not None, fallback_on=plan.fallback_on,
                           skip=capable.skip if capable is not None else ())
        self.walk = TierWalk(rules, ctx.tiers)
        self.result: RoutedCompletion | None = None

    @staticmethod
    def _serves(ctx: CallContext, capable: Capable | None, tier: str, model: str) -> bool:
        """A deployment ``model`` of ``tier`` may serve this call (the capability filter's verdict)."""
        if capable is None:
            return True
        subset = capable.subsets.get(tier)
        same = [d.index for d in ctx.dispatcher.deployments(tier) if d.model == model]
        if not same:  # not one of the tier's deployments (any longer): nothing the filter skipped
            return True
        return tier not in capable.skip and (subset is None or any(i in subset for i in same))

    def client(self, tier: str) -> TierClient:
        """The client that answers this call at ``tier``: only the deployments that can serve it."""
        if self.capable is None:
            return self.ctx.dispatcher.tier(tier)
        return self.capable.client(self.ctx.dispatcher, tier)

    @property
    def judged(self) -> bool:
        return self.walk.rules.judged

    def pending(self) -> Pending:
        """The current attempt's request, styled for its tier."""
        tier = self.walk.tier
        messages, params = self.ctx.style(self.plan, self.request, replace(self.decision, tier=tier), self.params)
        if self.walk.judges and self.cascade is not None and self.cascade.needs_logprobs:
            params = self._with_logprobs(tier, params)
        prefer = self.prefer if tier == self.decision.tier and not self.walk.failed else None
        return Pending(tier, messages, params, prefer, time.time_ns())

    def _with_logprobs(self, tier: str, params: dict[str, Any]) -> dict[str, Any]:
        """``logprobs`` asked of a judged attempt, unless a deployment of the tier refuses the
        parameter (Anthropic): then the logprob signal abstains, and the reason and the log say so."""
        refusing = [d.model for d in self.ctx.dispatcher.deployments(tier) if not d.takes_logprobs()]
        if not refusing:
            return {**params, "logprobs": True}
        note = (f"logprob signal: tier {tier!r} ({', '.join(refusing)}) does not take logprobs, "
                f"not asked (the signal abstains)")
        if note not in self.walk.notes:
            self.walk.note(note)
        say_once(self.ctx, ("logprobs", self.request.step, tier), f"step {self.request.step!r}: {note}")
        return params

    def _at(self, tier: str) -> Decision:
        return replace(self.decision, tier=tier)

    # -- outcomes ------------------------------------------------------------------------------

    def failed(self, pending: Pending, error: DispatchError) -> None:
        """Every deployment of the attempt's tier failed: book it and move on, or raise the
        call's error (the walk's rules: ``tier_fallback``, ``fallback_on``, the chain's end)."""
        deployment = self.ctx.dispatcher.first_deployment(pending.tier)
        try:
            next_tier = self.walk.failed_over(error, deployment.model)  # raises when the walk ends here
        except DispatchError:
            self.record.walked(self.walk.gave_up(self.decision, deployment.model, error))
            raise
        attributes = {CASCADE_ROLE: "attempt"} if self.judged else None
        self.record.tier_failed(self._at(pending.tier), error.attempts, attributes=attributes,
                                error_type=type(error).__name__, deployment=deployment)
        kind = error.kind if isinstance(error, ProviderError) else None  # a refusal fallback_on lets through
        allowed = f" (fallback_on lists '{kind}')" if kind is not None else ""
        moved = "the cascade escalated to" if self.judged else "fell back to"
        tell_once(self.ctx, self.request.step, pending.tier, error.attempts, f"{moved} tier {next_tier!r}{allowed}")

    def judge(self, pending: Pending, completion: Completion, verdict: Verdict, probe: Probe) -> bool:
        """Book a judged attempt; ``True`` when it is accepted (the call has its answer)."""
        extra = self._probe_spans(probe)
        attempt = CascadeAttempt(pending.tier, completion.model, verdict.accepted, verdict.confidence, verdict.signals,
                                 completion.cost_usd + extra, verdict.reason)
        if verdict.accepted:
            self.answered(completion, attempt, extra)
            return True
        attributes: dict[str, Any] = {CASCADE_ROLE: "attempt", CASCADE_ACCEPTED: False}
        if verdict.confidence is not None:
            attributes[CASCADE_CONFIDENCE] = verdict.confidence
        attributes.update({CASCADE_SIGNAL + name: value for name, value in verdict.signals})
        self.record.attempted(self._at(pending.tier), model=completion.model, provider=completion.provider,
                              started_ns=pending.started_ns, usage=completion.usage, cost_usd=completion.cost_usd,
                              response_model=completion.response_model, finish_reason=completion.finish_reason,
                              failed_attempts=completion.failed_attempts, attributes=attributes)
        self.walk.rejected(attempt)
        return False

    def probe(self, pending: Pending) -> Probe:
        return Probe(self, pending)

    def _probe_spans(self, probe: Probe) -> float:
        cost = 0.0
        for role, tier, completion, started in probe.calls:
            cost += completion.cost_usd
            self.record.attempted(self._at(tier), model=completion.model, provider=completion.provider,
                                  started_ns=started, usage=completion.usage, cost_usd=completion.cost_usd,
                                  response_model=completion.response_model, finish_reason=completion.finish_reason,
                                  failed_attempts=completion.failed_attempts, attributes={CASCADE_ROLE: role})
        return cost

    def answered(self, completion: Completion, attempt: CascadeAttempt | None = None, extra_usd: float = 0.0) -> None:
        """The current tier answered; ``attempt``: its accepted verdict (a judged walk)."""
        self.refused_in_tier(completion)
        if attempt is None and self.judged:
            attempt = CascadeAttempt(self.walk.tier, completion.model, None, cost_usd=completion.cost_usd,
                                     reason="last tier: not judged")
        decision = self.walk.answered(self.decision, completion.model, attempt)
        total = self.walk.carried_usd + completion.cost_usd + extra_usd
        self.result = RoutedCompletion(decision, completion, total, self.ctx.baseline_cost(completion.usage))

    def refused_in_tier(self, completion: Completion) -> None:
        """The tier answered, but a deployment before the one that did was refused (bad
        credentials, ...): LiteLLM's in-tier fallback hid it; say so once."""
        refused = [a for a in completion.failed_attempts if a.kind is not None]
        if refused:
            tell_once(self.ctx, self.request.step, self.walk.tier, refused, "the tier's next deployment answered")

    def servable(self, tier: str, fallback: str) -> str:
        """``tier``, or, when the capability filter skips it, the next stronger tier of the walk that can serve
        the call (``fallback`` when none can)."""
        if self.capable is None or tier not in self.capable.skip:
            return tier
        rank = self.ctx.rank
        return next((t for t in self.walk.rules.pool if rank[t] > rank[tier]), fallback)

    def cancelled(self, pending: Pending, tier: str, note: str) -> None:
        """A speculative call at ``pending.tier`` was cancelled: the walk begins at ``tier``."""
        deployment = self.ctx.dispatcher.first_deployment(pending.tier)
        self.record.attempted(self._at(pending.tier), model=deployment.model, provider=deployment.provider,
                              started_ns=pending.started_ns, error_type="cancelled",
                              attributes={CASCADE_ROLE: "speculative"})
        self.walk.cancelled(deployment.model, note)
        self.walk.restart_at(tier)
        self.decision = replace(self.decision, tier=tier, model=self.ctx.dispatcher.first_deployment(tier).model)

    # -- pins and the books, once answered -----------------------------------------------------

    def _pin(self) -> Pin | None:
        """After a rejected answer the conversation moves to the tier that answered; a tier that
        answered only because others failed never moves it."""
        assert self.result is not None
        decision = self.result.decision
        if self.action is None or not self.walk.escalated:
            return None
        return Pin(decision.tier, decision.model, decision.id, time.time())

    def close(self) -> RoutedCompletion:
        routed = self.result
        assert routed is not None
        pin = self._pin()
        if pin is not None and self.action is not None:
            self.ctx.pins.move(self.action, pin)
        else:
            routed = replace(routed, decision=self.ctx.pins.settle(None if self.moved else self.action, routed.decision,
                                                                   self.held_unservable))
        return self._book(routed)

    async def aclose(self) -> RoutedCompletion:
        routed = self.result
        assert routed is not None
        pin = self._pin()
        if pin is not None and self.action is not None:
            await self.ctx.pins.amove(self.action, pin)
        else:
            routed = replace(routed, decision=await self.ctx.pins.asettle(None if self.moved else self.action,
                                                                          routed.decision, self.held_unservable))
        return self._book(routed)

    def _book(self, routed: RoutedCompletion) -> RoutedCompletion:
        said = self.ctx.answered(self.plan, routed.decision) if self.ctx.answered is not None else routed.decision
        if said is not routed.decision:  # the online policy that decided said where its feedback goes: on the span too
            routed = replace(routed, decision=said)
            self.record.annotate({DECISION_REASON: said.reason})
        completion, decision = routed.completion, routed.decision
        attributes: dict[str, Any] | None = None
        if decision.cascade:
            last = decision.cascade[-1]
            attributes = {CASCADE_ROLE: "answer"}
            if last.accepted is not None:
                attributes[CASCADE_ACCEPTED] = last.accepted
                attributes.update({CASCADE_SIGNAL + name: value for name, value in last.signals})
            if last.confidence is not None:
                attributes[CASCADE_CONFIDENCE] = last.confidence
        if self.ctx.shadow is not None:  # the candidate decides; a sampled disagreement is shadowed off the hot path
            shadow_books(self.record, self.ctx.shadow.observe(self.plan, self.request, routed, self.params))
        step_cost = self.record.answered(decision, usage=completion.usage, cost_usd=completion.cost_usd,
                                         baseline_cost_usd=routed.baseline_cost_usd, provider=completion.provider,
                                         response_model=completion.response_model, response_id=completion.response_id,
                                         finish_reason=completion.finish_reason, response=completion.content,
                                         failed_attempts=completion.failed_attempts, step_cost_usd=routed.cost_usd,
                                         attributes=attributes)
        return replace(routed, cost_usd=step_cost)  # with the paid failed attempts (malformed answers)
