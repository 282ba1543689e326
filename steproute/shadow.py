"""Shadow mode per step: a candidate policy (or tier) judged beside the live one, off the hot path.

A step's ``shadow:`` entry (:class:`~steproute.policy_config.ShadowConfig`) names a candidate,
a sample rate, a judge, a concurrency bound and a daily budget. For every answered call of the
step, the candidate decides too (pure, no I/O: its ``choose``, clamped to the step's bounds).
Where it picks the live tier, the call counts as an agreement. Where it picks another, a
``sample`` share of those calls is also sent to the candidate's tier on a background thread,
and a judge (:mod:`steproute._shadow_judges`) compares the two answers; the result is written
to the decision log as a ``{"type": "shadow"}`` entry and counted on the
``steproute.shadow.calls`` metric (by step and outcome).

The user's call never waits for it and never sees it: submitting is a counter check and a
queue put; a step with ``max_concurrency`` shadow calls in flight, or whose
``budget_usd_per_day`` is spent, skips the call (counted, said once in the log, and on the
``route`` span and the decision's log entry under ``shadow``); a shadow call's error is
counted, said once by its type, and never raised. Its cost (priced by the dispatcher, at the
answering deployment's price) is the shadow budget's, never the step's.

Example:
    >>> from steproute import RouterConfig, StepRouter, StepRequest
    >>> router = StepRouter(RouterConfig(
    ...     tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "4"}]},
    ...            "strong": {"models": [{"model": "openai/gpt-4o", "mock_response": "4"}]}},
    ...     default={"policy": "fixed", "tier": "fast", "shadow": {"candidate": "strong", "judge": "exact"}}))
    >>> router.complete(StepRequest("sum", [{"role": "user", "content": "2+2?"}])).completion.content
    '4'
    >>> router.close(timeout=5)
    0
    >>> router.shadow.counts()[("sum", "tie")]
    1
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

from steproute._shadow_judges import Judgement, final_number, judge_answers
from steproute._style import styled
from steproute.errors import say_once, shown
from steproute.policies import Policy, PolicyContext, build_policy
from steproute.policies.confidence import Answer

if TYPE_CHECKING:
    from steproute._call import CallRecord
    from steproute._plan import StepPlan
    from steproute.completions import Completion
    from steproute.config import RouterConfig
    from steproute.decision_log import DecisionLog
    from steproute.dispatch import Dispatcher
    from steproute.policy_config import ShadowConfig
    from steproute.results import RoutedCompletion
    from steproute.types import StepRequest

__all__ = ["SHADOW_AGREE", "SHADOW_CANDIDATE", "SHADOW_SKIPPED", "ShadowRunner", "final_number", "shadow_books",
           "shadow_runner"]

logger = logging.getLogger("steproute")

SHADOW_CANDIDATE = "steproute.shadow.candidate_tier"
"""``route`` span attribute: the tier the shadow candidate decided."""
SHADOW_AGREE = "steproute.shadow.agree"
"""``route`` span attribute: whether the candidate decided the live tier."""
SHADOW_SKIPPED = "steproute.shadow.skipped"
"""``route`` span attribute: why a disagreeing, sampled call was not shadowed (``concurrency``,
``budget``, ``closed``)."""

_DAY_S = 86_400


@dataclass(eq=False)
class _Lane:
    """One ``shadow:`` entry's candidate, bounds and books."""

    where: str
    config: ShadowConfig
    policy: Policy
    in_flight: int = 0
    day: int = 0
    spent_usd: float = 0.0
    futures: set[Any] = field(default_factory=set)
    """Its shadow calls in flight: :class:`concurrent.futures.Future` (sync calls) and
    :class:`asyncio.Task` (async calls)."""


def _no_model(tier: str, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> str:
    raise RuntimeError("a shadow candidate decides without calling a model")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _answer(completion: Completion) -> Answer:
    return Answer(completion.content or "", tuple((c.name, c.arguments) for c in completion.tool_calls), None,
                  completion.finish_reason)


class ShadowRunner:
    """The shadow calls of every step with a ``shadow:`` entry; one per router
    (``router.shadow``; ``None`` when no step has one). See the module's description.

    ``rng`` draws the samples (default: a fresh :class:`random.Random`).
    """

    def __init__(self, config: RouterConfig, dispatcher: Dispatcher, *, log: DecisionLog | None = None,
                 meter_provider: Any = None, rng: random.Random | None = None) -> None:
        self._config, self._dispatcher, self._log = config, dispatcher, log
        self._tiers = config.tier_names()
        self._rank = {t: i for i, t in enumerate(self._tiers)}
        source = config._source
        context = PolicyContext(self._tiers, Path(source).parent if source else Path("."), _no_model)
        self._lanes: dict[str, _Lane] = {}
        for where, entry in [("default", config.default), *config.steps.items()]:
            if entry.shadow is not None:
                self._lanes[where] = _Lane(where, entry.shadow, build_policy(entry.shadow.candidate, context))
        self._lock = threading.Lock()
        self._rng = rng or random.Random()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._closed = False
        self._gave_up = False
        """:meth:`close` stopped waiting: calls still running drop their results."""
        workers = min(64, sum(lane.config.max_concurrency for lane in self._lanes.values()) or 1)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="steproute-shadow")
        meter = metrics.get_meter("steproute", meter_provider=meter_provider)
        self._calls = meter.create_counter("steproute.shadow.calls", unit="{call}",
                                           description="Shadowed calls by step and outcome")
        self._cost = meter.create_counter("steproute.shadow.cost", unit="USD",
                                          description="What shadow calls and their judges cost")

    def counts(self) -> dict[tuple[str, str], int]:
        """``(step, outcome)`` → calls: ``agree``, ``unsampled``, ``no_opinion``, ``win``,
        ``tie``, ``loss``, ``error``, ``skipped_concurrency``, ``skipped_budget``,
        ``skipped_closed``, ``dropped`` (in flight when :meth:`close` gave up)."""
        with self._lock:
            return dict(self._counts)

    def _count(self, step: str, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._counts[(step, outcome)] += n
        self._calls.add(n, {"steproute.step": step, "steproute.shadow.outcome": outcome})

    def _lane(self, request: StepRequest, plan: StepPlan) -> _Lane | None:
        entry = self._config.step_entry(request.step, plan.kind)
        return self._lanes.get(entry if entry is not None else "default")

    # -- the hook on the call path ----------------------------------------------------------

    def observe(self, plan: StepPlan, request: StepRequest, routed: RoutedCompletion,
                params: Mapping[str, Any]) -> dict[str, Any] | None:
        """A call was answered: the candidate decides; a sampled disagreement is queued. Returns
        what goes under ``shadow`` in the decision's log entry (``None``: the step has no
        shadow). Never raises, never waits."""
        lane = self._lane(request, plan)
        if lane is None:
            return None
        try:
            return self._observe(lane, plan, request, routed, params)
        except Exception as exc:  # the candidate could not decide: the user's call goes on
            self._count(request.step, "error")
            say_once(self, ("shadow-decide", request.step, type(exc).__name__),
                     f"step {shown(request.step)}: the shadow candidate could not decide ({type(exc).__name__}); "
                     "not shadowed; each one is counted on steproute.shadow.calls")
            return {"error": type(exc).__name__}

    def _observe(self, lane: _Lane, plan: StepPlan, request: StepRequest, routed: RoutedCompletion,
                 params: Mapping[str, Any]) -> dict[str, Any]:
        step = request.step
        choice = lane.policy.choose(request)  # type: ignore[attr-defined]
        if choice is None:
            self._count(step, "no_opinion")
            return {"candidate_tier": None, "agree": None}
        rank = min(max(self._rank[choice.tier], plan.low), plan.high)
        candidate, live = self._tiers[rank], routed.decision.tier
        info: dict[str, Any] = {"candidate_tier": candidate, "agree": candidate == live}
        if candidate == live:
            self._count(step, "agree")
            return info
        if self._rng.random() >= lane.config.sample:
            self._count(step, "unsampled")
            info["sampled"] = False
            return info
        info["sampled"] = True
        skipped = self._admit(lane)
        if skipped is not None:
            self._count(step, "skipped_" + skipped)
            info["skipped"] = skipped
            say_once(self, ("shadow-skip", step, skipped), f"step {shown(step)}: shadow calls skipped ({skipped}: " + (
                f"{lane.config.max_concurrency} in flight" if skipped == "concurrency" else
                f"budget_usd_per_day {lane.config.budget_usd_per_day:g} spent" if skipped == "budget" else
                "the router is closed") + "); each one is counted on steproute.shadow.calls")
            return info
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        try:
            if loop is not None:  # an async call: a task on its loop, never a thread taking the GIL from it
                future: Any = loop.create_task(self._ashadow(lane, plan, request, routed, dict(params), candidate))
            else:
                future = self._pool.submit(self._shadow, lane, plan, request, routed, dict(params), candidate)
        except RuntimeError:  # the pool shut down between the check and the submit
            self._release(lane, None)
            self._count(step, "skipped_closed")
            return {**info, "skipped": "closed"}
        with self._lock:
            lane.futures.add(future)
        future.add_done_callback(lambda f: self._release(lane, f))
        return info

    def _admit(self, lane: _Lane) -> str | None:
        """Take a place in the lane, or why not (``concurrency``, ``budget``, ``closed``)."""
        with self._lock:
            if self._closed:
                return "closed"
            day = int(time.time() // _DAY_S)
            if day != lane.day:
                lane.day, lane.spent_usd = day, 0.0
            budget = lane.config.budget_usd_per_day
            if budget is not None and lane.spent_usd >= budget:
                return "budget"
            if lane.in_flight >= lane.config.max_concurrency:
                return "concurrency"
            lane.in_flight += 1
            return None

    def _release(self, lane: _Lane, future: Any) -> None:
        with self._lock:
            lane.in_flight -= 1
            if future is not None:
                lane.futures.discard(future)

    # -- off the hot path -------------------------------------------------------------------

    def _request(self, plan: StepPlan, request: StepRequest, routed: RoutedCompletion, params: dict[str, Any],
                 candidate: str) -> tuple[Sequence[Mapping[str, Any]], dict[str, Any]]:
        decision = replace(routed.decision, tier=candidate, model=self._dispatcher.first_deployment(candidate).model)
        return styled(self._config, plan.style, request, decision, params)

    def _failed(self, step: str, candidate: str, exc: BaseException) -> None:
        self._count(step, "error")
        say_once(self, ("shadow-call", step, type(exc).__name__),
                 f"step {shown(step)}: a shadow call to tier {shown(candidate)} failed ({type(exc).__name__}); "
                 "the user's call is not affected; each one is counted on steproute.shadow.calls")

    def _shadow(self, lane: _Lane, plan: StepPlan, request: StepRequest, routed: RoutedCompletion,
                params: dict[str, Any], candidate: str) -> None:
        try:
            messages, styled_params = self._request(plan, request, routed, params, candidate)
            answer = self._dispatcher.tier(candidate).complete(request.step, messages, styled_params)
            verdict = self._judge(lane, request, routed.completion, answer)
        except Exception as exc:
            self._failed(request.step, candidate, exc)
            return
        self._done(lane, request.step, routed, candidate, answer, verdict)

    async def _ashadow(self, lane: _Lane, plan: StepPlan, request: StepRequest, routed: RoutedCompletion,
                       params: dict[str, Any], candidate: str) -> None:
        try:
            messages, styled_params = self._request(plan, request, routed, params, candidate)
            answer = await self._dispatcher.tier(candidate).acomplete(request.step, messages, styled_params)
            if lane.config.judge == "llm":  # the judge's call blocks: off the loop
                verdict = await asyncio.to_thread(self._judge, lane, request, routed.completion, answer)
            else:
                verdict = self._judge(lane, request, routed.completion, answer)
        except asyncio.CancelledError:  # closed before it finished
            self._count(request.step, "dropped")
            raise
        except Exception as exc:
            self._failed(request.step, candidate, exc)
            return
        self._done(lane, request.step, routed, candidate, answer, verdict)

    def _done(self, lane: _Lane, step: str, routed: RoutedCompletion, candidate: str, answer: Completion,
              verdict: Judgement) -> None:
        cost = answer.cost_usd + verdict.cost_usd
        with self._lock:
            lane.spent_usd += cost
        self._cost.add(cost, {"steproute.step": step})
        if self._gave_up:
            self._count(step, "dropped")
            return
        self._count(step, verdict.verdict)
        if self._log is not None:
            self._log.write({
                "type": "shadow", "id": routed.decision.id, "ts": time.time(), "step": step, "tier": candidate,
                "model": answer.model, "quality": verdict.quality, "verdict": verdict.verdict, "agree": False,
                "candidate_tier": candidate, "live_tier": routed.decision.tier, "judge": verdict.judge,
                "cost_usd": cost, "judge_cost_usd": verdict.cost_usd, "live_cost_usd": routed.cost_usd,
                "input_tokens": answer.usage.input_tokens, "output_tokens": answer.usage.output_tokens})

    def _judge(self, lane: _Lane, request: StepRequest, live: Completion, candidate: Completion) -> Judgement:
        offered = {str(t.get("function", {}).get("name")) for t in request.tools if isinstance(t.get("function"), Mapping)}
        users = [m for m in request.messages if m.get("role") == "user"]
        question = _text_of(users[-1].get("content")) if users else ""
        return judge_answers(lane.config.judge, _answer(live), _answer(candidate), request.response_schema,
                             offered_tools=offered or None, question=question, ask=self._ask,
                             judge_tier=lane.config.judge_tier)

    def _ask(self, tier: str, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> tuple[str, float]:
        completion = self._dispatcher.tier(tier).complete("shadow-judge", messages,
                                                          {"max_tokens": max_tokens, "temperature": 0})
        return completion.content or "", completion.cost_usd

    # -- closing ----------------------------------------------------------------------------

    def in_flight(self) -> int:
        """Shadow calls queued or running."""
        with self._lock:
            return sum(lane.in_flight for lane in self._lanes.values())

    def close(self, timeout: float = 5.0) -> int:
        """Stop taking shadow calls, wait up to ``timeout`` seconds for those in flight, and drop
        the rest (counted as ``dropped``; a running call's result is not written). Returns how
        many were dropped."""
        with self._lock:
            self._closed = True
            futures = {f: lane.where for lane in self._lanes.values() for f in lane.futures if isinstance(f, Future)}
            tasks = [t for lane in self._lanes.values() for t in lane.futures if not isinstance(t, Future)]
        _, pending = wait_futures(list(futures), timeout=max(0.0, timeout))
        self._gave_up = bool(pending)
        dropped = 0
        for future in pending:
            if future.cancel():
                dropped += 1
                self._count(futures[future], "dropped")
        self._pool.shutdown(wait=False, cancel_futures=True)
        for task in tasks:  # async calls' shadows on a loop this thread cannot wait on (see aclose): cancelled
            if not task.done():
                with contextlib.suppress(RuntimeError):  # its loop is closed: the task is gone with it
                    task.get_loop().call_soon_threadsafe(task.cancel)
                pending.add(task)
        if pending:
            logger.warning("steproute: closing dropped %d shadow call(s) (%d still running, their results not written)",
                           len(pending), len(pending) - dropped)
        return len(pending)

    async def aclose(self, timeout: float = 5.0) -> int:
        """Async :meth:`close`: waits up to ``timeout`` for this loop's shadow tasks (and, on a
        worker thread, for the sync calls' shadow threads); cancels what is left."""
        started = time.monotonic()
        with self._lock:
            self._closed = True
            loop = asyncio.get_running_loop()
            tasks = [t for lane in self._lanes.values() for t in lane.futures
                     if isinstance(t, asyncio.Task) and t.get_loop() is loop]
        dropped = 0
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(0.0, timeout))
            for task in late:
                task.cancel()
            dropped = len(late)
            if late:
                await asyncio.wait(late)
                logger.warning("steproute: closing dropped %d shadow call(s) still running", len(late))
        left = max(0.0, timeout - (time.monotonic() - started))
        return dropped + await asyncio.to_thread(self.close, left)


def shadow_books(record: CallRecord, info: Mapping[str, Any] | None) -> None:
    """What the shadow candidate did, on the call's ``route`` span and under ``shadow`` in its
    log entry."""
    if info is None:
        return
    attributes = {SHADOW_AGREE: info["agree"]} if info.get("agree") is not None else {}
    if info.get("candidate_tier") is not None:
        attributes[SHADOW_CANDIDATE] = info["candidate_tier"]
    if "skipped" in info:
        attributes[SHADOW_SKIPPED] = info["skipped"]
    record.annotate(attributes)
    record.log_extra = {**(record.log_extra or {}), "shadow": dict(info)}


def shadow_runner(config: RouterConfig, dispatcher: Dispatcher, log: DecisionLog | None,
                  meter_provider: Any = None) -> ShadowRunner | None:
    """A :class:`ShadowRunner` for ``config``, or ``None`` when no step has a ``shadow:`` entry."""
    entries = [config.default, *config.steps.values()]
    if all(entry.shadow is None for entry in entries):
        return None
    return ShadowRunner(config, dispatcher, log=log, meter_provider=meter_provider)
