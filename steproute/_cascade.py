"""Running a cascade: the attempts of one routed call (or of a batch) across tiers.

The ``cascade`` policy (:mod:`steproute.policies.cascade`) says where to start, what comes
next and whether an answer is good enough; this module makes the attempts, through the
call context's dispatcher, and keeps the books: every attempt is a ``chat`` span under the step's
``route`` span (rejected attempts carry their verdict), the step's cost is the sum of every
attempt and of the calls signals made, and the decision records the chain.

Streaming: attempts that may still be rejected are fetched whole (buffered) and replayed as a
stream once accepted; the cascade's last tier, whose answer is final whatever it says, streams
live. Speculative routing (async calls): the first tier's call starts while the ``start``
policy decides, and is cancelled when it picks a stronger tier. Batches: every item's current
attempt runs, bounded by ``max_concurrency``, then only the rejected items go on to the next
tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from steproute.dispatch import Completion, CompletionChunk, StreamCollector, chunks_of
from steproute.errors import DispatchError, ProviderError, escalates, failure_note, tell_once
from steproute.pinning import Pin
from steproute.policies.cascade import CascadePolicy, Verdict
from steproute.policies.confidence import Answer
from steproute.results import RoutedCompletion
from steproute.telemetry import CASCADE_ACCEPTED, CASCADE_CONFIDENCE, CASCADE_ROLE, CASCADE_SIGNAL
from steproute.types import CascadeAttempt, Decision, StepRequest

if TYPE_CHECKING:
    from steproute._call import CallRecord
    from steproute._call_context import CallContext
    from steproute._plan import StepPlan
    from steproute.pinning import PinAction

__all__ = ["CascadeRun", "answer_of"]

SAMPLE_TEMPERATURE = 0.7
"""Temperature of the extra answers ``consistency`` compares (the step's own if higher)."""


def answer_of(completion: Completion) -> Answer:
    """What the confidence signals read of a completion."""
    logprobs = tuple(t.logprob for t in completion.logprobs) if completion.logprobs else None
    return Answer(completion.content or "", tuple((c.name, c.arguments) for c in completion.tool_calls), logprobs,
                  completion.finish_reason)


class _Probe:
    """The model calls signals make while judging one attempt; each is kept for its span and cost."""

    def __init__(self, run: CascadeRun, tier: str, messages: Sequence[Any], params: dict[str, Any]) -> None:
        self._run, self._tier, self._messages, self._params = run, tier, messages, params
        self.calls: list[tuple[str, str, Completion, int]] = []

    def samples(self, n: int) -> list[Answer]:
        temperature = max(float(self._params.get("temperature") or 0.0), SAMPLE_TEMPERATURE)
        answers = []
        for _ in range(n):
            started = time.time_ns()
            completion = self._run.ctx.dispatcher.tier(self._tier).complete(
                self._run.request.step, self._messages, {**self._params, "temperature": temperature})
            self.calls.append(("sample", self._tier, completion, started))
            answers.append(answer_of(completion))
        return answers

    def ask(self, tier: str, messages: Sequence[Any], max_tokens: int) -> str:
        started = time.time_ns()
        completion = self._run.ctx.dispatcher.tier(tier).complete(
            self._run.request.step, messages, {"max_tokens": max_tokens, "temperature": 0})
        self.calls.append(("judge", tier, completion, started))
        return completion.content or ""


@dataclass
class _Pending:
    """The attempt being made: its tier, its styled messages and parameters."""

    tier: str
    messages: Sequence[Any]
    params: dict[str, Any]
    prefer: str | None
    started_ns: int = 0


class CascadeRun:
    """The attempts of one routed call under a ``cascade`` policy."""

    def __init__(self, ctx: CallContext, record: CallRecord, plan: StepPlan, request: StepRequest,
                 decision: Decision, action: PinAction | None, params: dict[str, Any], prefer: str | None) -> None:
        assert isinstance(plan.policy, CascadePolicy)
        self.ctx, self.record, self.plan, self.request = ctx, record, plan, request
        self.policy: CascadePolicy = plan.policy
        self.decision, self.action, self.params, self._prefer = decision, action, params, prefer
        self.attempts: list[CascadeAttempt] = []
        self.cost_usd = 0.0
        self.notes: list[str] = []
        self.chain = self._chain_from(decision.tier)
        self.index = 0
        self.result: RoutedCompletion | None = None
        self.fallback_from: str | None = None
        """The first tier whose every deployment failed (an escalation on an error, not a verdict)."""

    def _chain_from(self, tier: str) -> list[str]:
        if self.decision.guard is not None:  # a guard set the tier (personal data) or capped it (budget)
            return [tier]
        rank = self.ctx.rank
        high = self.plan.high
        return [tier, *(t for t in self.policy.tiers if rank[tier] < rank[t] <= high)]

    @property
    def tier(self) -> str:
        return self.chain[self.index]

    @property
    def is_last(self) -> bool:
        return self.index == len(self.chain) - 1

    def pending(self) -> _Pending:
        tier = self.tier
        decision = replace(self.decision, tier=tier)
        messages, params = self.ctx.style(self.plan, self.request, decision, self.params)
        if self.policy.needs_logprobs and not self.is_last and all(
                d.takes_logprobs() for d in self.ctx.dispatcher.deployments(tier)):  # else the signal abstains
            params = {**params, "logprobs": True}
        return _Pending(tier, messages, params, self._prefer if self.index == 0 else None, time.time_ns())

    def restart_at(self, tier: str, note: str) -> None:
        """Begin the chain at ``tier`` instead (speculative routing picked a stronger tier)."""
        self.chain = self._chain_from(tier)
        self.index = 0
        self.decision = replace(self.decision, tier=tier, model=self.ctx.dispatcher.first_deployment(tier).model)
        self.notes.append(note)

    # -- outcomes of one attempt --------------------------------------------------------------

    def _attempt_decision(self, tier: str) -> Decision:
        return replace(self.decision, tier=tier)

    def _probe_spans(self, tier: str, probe: _Probe | None) -> float:
        cost = 0.0
        for role, probe_tier, completion, started in probe.calls if probe is not None else ():
            cost += completion.cost_usd
            self.record.attempted(self._attempt_decision(probe_tier), model=completion.model, provider=completion.provider,
                                  started_ns=started, usage=completion.usage, cost_usd=completion.cost_usd,
                                  response_model=completion.response_model, finish_reason=completion.finish_reason,
                                  failed_attempts=completion.failed_attempts, attributes={CASCADE_ROLE: role})
        return cost

    def judged(self, pending: _Pending, completion: Completion, verdict: Verdict, probe: _Probe | None) -> bool:
        """Book a judged attempt; ``True`` when it is accepted (the run is done)."""
        extra = self._probe_spans(pending.tier, probe)
        cost = completion.cost_usd + extra
        attempt = CascadeAttempt(pending.tier, completion.model, verdict.accepted, verdict.confidence, verdict.signals,
                                 cost, verdict.reason)
        if verdict.accepted:
            self._finish(completion, attempt, extra)
            return True
        attributes: dict[str, Any] = {CASCADE_ROLE: "attempt", CASCADE_ACCEPTED: False}
        if verdict.confidence is not None:
            attributes[CASCADE_CONFIDENCE] = verdict.confidence
        attributes.update({CASCADE_SIGNAL + name: value for name, value in verdict.signals})
        self.record.attempted(self._attempt_decision(pending.tier), model=completion.model, provider=completion.provider,
                              started_ns=pending.started_ns, usage=completion.usage, cost_usd=completion.cost_usd,
                              response_model=completion.response_model, finish_reason=completion.finish_reason,
                              failed_attempts=completion.failed_attempts, attributes=attributes)
        self.attempts.append(attempt)
        self.cost_usd += cost
        self.index += 1
        return False

    def failed(self, pending: _Pending, error: DispatchError) -> None:
        """Every deployment of a tier that is not the last failed: book it, go to the next. A
        provider's refusal (bad credentials, a bad request) is raised instead, unless the step's
        ``fallback_on`` lists its kind."""
        kind = error.kind if isinstance(error, ProviderError) else None
        if not escalates(kind, self.ctx.config.policy_for(self.request.step, self.plan.kind).fallback_on):
            raise error
        deployment = self.ctx.dispatcher.first_deployment(pending.tier)
        attempts = error.attempts
        if attempts:
            *earlier, last = attempts
            self.record.attempted(self._attempt_decision(pending.tier), model=last.model, provider=last.provider,
                                  started_ns=pending.started_ns, failed_attempts=earlier, error_type=last.error_type,
                                  cost_usd=last.cost_usd or 0.0, attributes={CASCADE_ROLE: "attempt"})
        else:
            self.record.attempted(self._attempt_decision(pending.tier), model=deployment.model,
                                  provider=deployment.provider, started_ns=pending.started_ns,
                                  error_type=type(error).__name__, attributes={CASCADE_ROLE: "attempt"})
        allowed = f"; fallback_on lists '{kind}'" if kind is not None else ""
        self.attempts.append(CascadeAttempt(pending.tier, deployment.model, None,
                                            reason=f"failed: {failure_note(attempts)}{allowed}"))
        self.fallback_from = self.fallback_from or pending.tier
        tell_once(self.ctx, self.request.step, pending.tier, attempts,
                  f"the cascade escalated to tier {self.chain[self.index + 1]!r}"
                  + (f" (fallback_on lists '{kind}')" if kind is not None else ""))
        self.index += 1

    def final(self, completion: Completion) -> None:
        """The last tier answered: its answer is the step's, unjudged."""
        self._finish(completion, CascadeAttempt(self.tier, completion.model, None, cost_usd=completion.cost_usd,
                                                reason="last tier: not judged"), 0.0)

    def _finish(self, completion: Completion, attempt: CascadeAttempt, extra_cost: float) -> None:

        chain = [*self.attempts, attempt]
        first = self.chain[0]
        reason = self.decision.reason + "".join(f"; {n}" for n in self.notes)
        if len(chain) > 1:
            why = "; ".join(f"{a.tier}: {a.reason}" for a in self.attempts)
            reason += f"; escalated {' → '.join(a.tier for a in chain)} ({why})"
        elif attempt.accepted:
            reason += f"; accepted ({attempt.reason})"
        decision = replace(self.decision, tier=attempt.tier, model=completion.model, reason=reason,
                           escalated_from=first if len(chain) > 1 else None, fallback_from=self.fallback_from,
                           attempts=len(chain), cascade=tuple(chain),
                           score=attempt.confidence if attempt.confidence is not None else self.decision.score)
        total = self.cost_usd + completion.cost_usd + extra_cost
        self.result = RoutedCompletion(decision, completion, total, self.ctx.baseline_cost(completion.usage))

    # -- pins and the books, once answered ----------------------------------------------------

    def _pin(self, decision: Decision) -> Pin | None:
        """After an escalation the conversation moves to the tier that answered."""
        if self.action is None or decision.escalated_from is None:
            return None
        return Pin(decision.tier, decision.model, decision.id, time.time())

    def close(self) -> RoutedCompletion:
        assert self.result is not None
        routed = self.result
        pin = self._pin(routed.decision)
        if pin is not None and self.action is not None:
            self.ctx.pins.move(self.action, pin)
        else:
            routed = replace(routed, decision=self.ctx.pins.settle(self.action, routed.decision))
        return self._book(routed)

    async def aclose(self) -> RoutedCompletion:
        assert self.result is not None
        routed = self.result
        pin = self._pin(routed.decision)
        if pin is not None and self.action is not None:
            await self.ctx.pins.amove(self.action, pin)
        else:
            routed = replace(routed, decision=await self.ctx.pins.asettle(self.action, routed.decision))
        return self._book(routed)

    def _book(self, routed: RoutedCompletion) -> RoutedCompletion:
        completion, last = routed.completion, routed.decision.cascade[-1]
        attributes: dict[str, Any] = {CASCADE_ROLE: "answer"}
        if last.accepted is not None:
            attributes[CASCADE_ACCEPTED] = last.accepted
            attributes.update({CASCADE_SIGNAL + name: value for name, value in last.signals})
        if last.confidence is not None:
            attributes[CASCADE_CONFIDENCE] = last.confidence
        self.record.answered(routed.decision, usage=completion.usage, cost_usd=completion.cost_usd,
                             baseline_cost_usd=routed.baseline_cost_usd, provider=completion.provider,
                             response_model=completion.response_model, response_id=completion.response_id,
                             finish_reason=completion.finish_reason, response=completion.content,
                             failed_attempts=completion.failed_attempts, step_cost_usd=routed.cost_usd,
                             attributes=attributes)
        return replace(routed, cost_usd=routed.cost_usd + self.record.failed_cost)

    # -- one attempt, sync and async -----------------------------------------------------------

    def step(self) -> bool:
        """Make the current attempt and judge it; ``True`` once the run has its answer."""
        pending = self.pending()
        try:
            completion = self.ctx.dispatcher.tier(pending.tier).complete(
                self.request.step, pending.messages, pending.params, pending.prefer)
        except DispatchError as exc:
            if self.is_last:
                raise
            self.failed(pending, exc)
            return False
        return self.settle(pending, completion)

    def settle(self, pending: _Pending, completion: Completion) -> bool:
        if self.is_last:
            self.final(completion)
            return True
        probe = _Probe(self, pending.tier, pending.messages, pending.params)
        return self.judged(pending, completion, self.policy.judge(self.request, answer_of(completion), probe), probe)

    async def astep(self, first: asyncio.Task[Completion] | None = None) -> bool:
        """Async :meth:`step`; ``first`` is a speculative call already under way."""
        pending = self.pending()
        try:
            if first is not None:
                completion = await first
            else:
                completion = await self.ctx.dispatcher.tier(pending.tier).acomplete(
                    self.request.step, pending.messages, pending.params, pending.prefer)
        except DispatchError as exc:
            if self.is_last:
                raise
            self.failed(pending, exc)
            return False
        if self.is_last:
            self.final(completion)
            return True
        probe = _Probe(self, pending.tier, pending.messages, pending.params)
        if self.policy.calls_models:  # its signals make blocking model calls: off the event loop
            verdict = await asyncio.to_thread(self.policy.judge, self.request, answer_of(completion), probe)
        else:
            verdict = self.policy.judge(self.request, answer_of(completion), probe)
        return self.judged(pending, completion, verdict, probe)

    async def speculate(self) -> asyncio.Task[Completion] | None:
        """Speculative routing: the first tier's call starts while ``start`` decides. Returns
        the call to await, or ``None`` when ``start`` picked a stronger tier (the call is
        cancelled and booked as such)."""
        policy, start = self.policy, self.policy.start
        assert start is not None
        pending = self.pending()
        task = asyncio.create_task(self.ctx.dispatcher.tier(pending.tier).acomplete(
            self.request.step, pending.messages, pending.params, pending.prefer))
        try:
            picked = await asyncio.to_thread(start.choose, self.request) if policy.blocking else start.choose(self.request)
        except BaseException:
            task.cancel()
            raise
        choice = policy.from_start(picked)
        rank = self.ctx.rank
        tier = self.ctx.tiers[min(max(rank[choice.tier], self.plan.low), self.plan.high)]
        if rank[tier] <= rank[pending.tier]:
            self.notes.append(f"speculative: {start.name} agreed ({choice.reason})")
            return task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, DispatchError):
            await task
        deployment = self.ctx.dispatcher.first_deployment(pending.tier)
        self.record.attempted(self._attempt_decision(pending.tier), model=deployment.model, provider=deployment.provider,
                              started_ns=pending.started_ns, error_type="cancelled",
                              attributes={CASCADE_ROLE: "speculative"})
        self.attempts.append(CascadeAttempt(pending.tier, deployment.model, None, reason="speculative call cancelled"))
        self.restart_at(tier, f"speculative: {start.name} picked {tier!r}, the {pending.tier!r} call was cancelled")
        return None


# -- drivers: one call, one stream, one batch ----------------------------------------------------


def _speculates(run: CascadeRun) -> bool:
    """Speculative routing applies: configured, and the cascade itself decided (no pin, no guard)."""
    return run.policy.speculative and run.decision.policy == "cascade" and run.decision.guard is None


def run_sync(run: CascadeRun) -> RoutedCompletion:
    while not run.step():
        pass
    return run.close()


async def run_async(run: CascadeRun) -> RoutedCompletion:
    first = await run.speculate() if _speculates(run) else None
    while not await run.astep(first):
        first = None
    return await run.aclose()


def stream_sync(run: CascadeRun) -> Iterator[CompletionChunk | RoutedCompletion]:
    """Buffered attempts, then the last tier live; the last item is the :class:`RoutedCompletion`."""
    while not run.is_last:
        pending = run.pending()
        try:
            completion = run.ctx.dispatcher.tier(pending.tier).complete(
                run.request.step, pending.messages, pending.params, pending.prefer)
        except DispatchError as exc:
            run.failed(pending, exc)
            continue
        if run.settle(pending, completion):
            yield from (c for c in chunks_of(completion) if c.usage is None)
            yield run.close()
            return
    pending = run.pending()
    collected = StreamCollector(run.ctx.dispatcher.first_deployment(pending.tier).model)
    for chunk in run.ctx.dispatcher.tier(pending.tier).stream(run.request.step, pending.messages, pending.params,
                                                                   pending.prefer):
        collected.see(chunk)
        if chunk.usage is None:
            yield chunk
    run.final(collected.completion())
    yield run.close()


async def stream_async(run: CascadeRun) -> AsyncIterator[CompletionChunk | RoutedCompletion]:
    """Async :func:`stream_sync` (with speculative routing when configured)."""
    first = await run.speculate() if _speculates(run) else None
    while not run.is_last:
        if await run.astep(first):
            assert run.result is not None
            for chunk in chunks_of(run.result.completion):
                if chunk.usage is None:
                    yield chunk
            yield await run.aclose()
            return
        first = None
    if first is not None:  # the speculative call went to the cascade's only tier
        await run.astep(first)
        assert run.result is not None
        for chunk in chunks_of(run.result.completion):
            if chunk.usage is None:
                yield chunk
        yield await run.aclose()
        return
    pending = run.pending()
    collected = StreamCollector(run.ctx.dispatcher.first_deployment(pending.tier).model)
    async for chunk in run.ctx.dispatcher.tier(pending.tier).astream(run.request.step, pending.messages,
                                                                          pending.params, pending.prefer):
        collected.see(chunk)
        if chunk.usage is None:
            yield chunk
    run.final(collected.completion())
    yield await run.aclose()


def batch_sync(runs: Sequence[CascadeRun], max_concurrency: int, on_error: Callable[[CascadeRun, BaseException], None]
               ) -> list[RoutedCompletion | BaseException]:
    """Phase by phase: every run's current attempt (bounded by ``max_concurrency``), then only
    the rejected runs go on to their next tier."""
    results: dict[int, RoutedCompletion | BaseException] = {}

    def one(index: int) -> bool:
        try:
            if runs[index].step():
                results[index] = runs[index].close()
                return True
            return False
        except Exception as exc:
            on_error(runs[index], exc)
            results[index] = exc
            return True

    pending = list(range(len(runs)))
    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(runs)))) as pool:
        while pending:
            done = list(pool.map(one, pending))
            pending = [i for i, finished in zip(pending, done, strict=True) if not finished]
    return [results[i] for i in range(len(runs))]


async def batch_async(runs: Sequence[CascadeRun], max_concurrency: int,
                      on_error: Callable[[CascadeRun, BaseException], None]) -> list[RoutedCompletion | BaseException]:
    """Async :func:`batch_sync`."""
    results: dict[int, RoutedCompletion | BaseException] = {}
    gate = asyncio.Semaphore(max_concurrency)

    async def one(index: int) -> bool:
        async with gate:
            try:
                if await runs[index].astep():
                    results[index] = await runs[index].aclose()
                    return True
                return False
            except Exception as exc:
                on_error(runs[index], exc)
                results[index] = exc
                return True

    pending = list(range(len(runs)))
    while pending:
        done = await asyncio.gather(*(one(i) for i in pending))
        pending = [i for i, finished in zip(pending, done, strict=True) if not finished]
    return [results[i] for i in range(len(runs))]
