"""StepRouter: decides the tier of each step's call and dispatches it.

Order of one decision: the step's ``tier`` hint if any, else the step's policy (looked up by
step name, then by step kind, then ``default``); then the config's and the hint's
``min_tier``/``max_tier`` clamp the choice. The result is an immutable
:class:`~steproute.types.Decision`. The router core knows nothing of LangGraph or LangChain:
requests come in as :class:`~steproute.types.StepRequest` with OpenAI-format messages.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from steproute import _cascade
from steproute._call import CallRecord
from steproute._call_context import CallContext
from steproute._fallback import Fallback
from steproute._feedback import feedback_entry
from steproute._pin_keeper import PinKeeper, preferred_model
from steproute._plan import Planner, StepPlan
from steproute.config import RouterConfig, load_config
from steproute.decision_log import DecisionLog, JsonlDecisionLog
from steproute.dispatch import Completion, CompletionChunk, Deployment, Dispatcher
from steproute.errors import BudgetExceeded, RoutingError, shown
from steproute.guards import (
    PII_THREAD_CHARS,
    BudgetGuard,
    BudgetStore,
    InMemoryBudgetStore,
    estimate_cost,
    max_output_tokens,
)
from steproute.pinning import InMemoryPinStore, PinAction, PinStore
from steproute.policies import CascadePolicy, Policy
from steproute.results import RoutedCompletion, StreamState, StreamSummary, batch_results, summary_of
from steproute.step_coverage import StepCoverage
from steproute.telemetry import Telemetry
from steproute.types import Decision, Hint, StepRequest

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from steproute.factories import ModelPatch
    from steproute.langgraph import RoutedChatModel

__all__ = ["RoutedCompletion", "StepRouter", "StreamSummary"]


class StepRouter:
    """Routes each step of an agent workflow to a model tier and calls it through LiteLLM.

    Example:
        >>> router = StepRouter(RouterConfig(
        ...     tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "ok"}]},
        ...            "strong": {"models": [{"model": "openai/gpt-4o", "mock_response": "ok"}]}},
        ...     default="fast",
        ...     steps={"plan": "strong"},
        ... ))
        >>> router.decide(StepRequest("plan", [{"role": "user", "content": "hi"}])).tier
        'strong'
        >>> result = router.complete(StepRequest("rewrite", [{"role": "user", "content": "hi"}]))
        >>> result.decision.model, result.completion.content
        ('openai/gpt-4o-mini', 'ok')

    Every call is observed: an OpenTelemetry ``route {step}`` span with a ``chat {model}``
    span under it, metrics (``tracer_provider``/``meter_provider``, default: the global
    ones), and, given a ``decision_log`` (a path or a :class:`~steproute.decision_log.DecisionLog`),
    one JSON line per call. Calls on a thread are pinned per step group (``pinning:`` in the
    config); pins live in ``pin_store`` (default: bounded, in memory; see
    :class:`~steproute.pinning.BaseStorePinStore` to share them across replicas).
    ``record_content=True`` puts prompts and answers on the ``chat`` spans, redacted by the
    PII guard when one is configured.
    """

    def __init__(
        self,
        config: RouterConfig,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        decision_log: DecisionLog | str | os.PathLike[str] | None = None,
        pin_store: PinStore | None = None,
        budget_store: BudgetStore | None = None,
        record_content: bool = False,
    ) -> None:
        self.config = config
        self.baseline = config.baseline_tier()
        self._dispatcher = Dispatcher(config)
        self._baseline_price = self._dispatcher.first_deployment(self.baseline).price
        self._planner = Planner(config, lambda tier: self._dispatcher.first_deployment(tier).model, self._ask)
        self.tiers: tuple[str, ...] = self._planner.tiers
        self._rank = self._planner.rank
        self._plan = self._planner.plan
        self.coverage: StepCoverage = self._planner.coverage
        """Which ``steps:`` entries calls have matched (:class:`~steproute.step_coverage.StepCoverage`)."""
        self._pii = self._planner.pii
        self._telemetry = Telemetry(tracer_provider, meter_provider, record_content=record_content,
                                    redact=self._pii.redact if self._pii is not None else None)
        if decision_log is not None and not isinstance(decision_log, DecisionLog):
            decision_log = JsonlDecisionLog(decision_log)
        self.decision_log: DecisionLog | None = decision_log
        self._pins = PinKeeper(pin_store if pin_store is not None else InMemoryPinStore(
            max_entries=config.pinning.max_threads, ttl_seconds=config.pinning.ttl_seconds), self._rank)
        self._calls = CallContext(config, self.tiers, self._rank, self._dispatcher, self._pins, self._baseline_price)
        guards = config.guards
        self.budget_store: BudgetStore = budget_store if budget_store is not None else InMemoryBudgetStore()
        self._budget = BudgetGuard.from_config(guards.budgets, self.budget_store) if guards.budgets is not None else None

    @property
    def pin_store(self) -> PinStore:
        """Where the conversations' pins live (default: bounded, in memory)."""
        return self._pins.store

    @pin_store.setter
    def pin_store(self, store: PinStore) -> None:
        self._pins.store = store

    def _ask(self, tier: str, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> str:
        """A short deterministic call through ``tier``: what the ``llm`` policy routes with."""
        completion = self._dispatcher.tier(tier).complete("router", messages, {"max_tokens": max_tokens, "temperature": 0})
        return completion.content or ""

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> StepRouter:
        """Build a router from a YAML or TOML file (see ``docs/configuration.md``); ``kwargs``
        as for the constructor."""
        return cls(load_config(path), **kwargs)

    # -- deciding ----------------------------------------------------------------------------

    def decide(self, request: StepRequest) -> Decision:
        """Choose a tier for one call by hints and policy. Pure: no I/O, no model call, no pin
        (:meth:`route` adds the conversation's pin).

        Raises:
            RoutingError: a hint names an unknown tier, or its bounds contradict.
        """
        return self._planner.decide(self._plan(request.step, request.kind, request.hint), request)

    def route(self, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """:meth:`decide`, then the conversation's pin: the decision a call follows, and the
        pin it follows or has just made (``None``: no thread, or pinning off). A thread's first
        pin is written here, before the call is dispatched."""
        return self._route(self._plan(request.step, request.kind, request.hint), request)

    def _route(self, plan: StepPlan, request: StepRequest) -> tuple[Decision, PinAction | None]:
        guarded = self._planner.pii_decision(plan, request)
        if guarded is not None:  # forced, and never pinned: the conversation's pin is for its ordinary calls
            return guarded, None
        return self._pins.follow(plan, self._planner.decide(plan, request))

    async def aroute(self, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """Async :meth:`route` (the pin store is read with its async API)."""
        return await self._aroute(self._plan(request.step, request.kind, request.hint), request)

    async def _aroute(self, plan: StepPlan, request: StepRequest) -> tuple[Decision, PinAction | None]:
        if self._pii is not None and request.input_chars > PII_THREAD_CHARS:  # a long scan: off the event loop
            guarded = await asyncio.to_thread(self._planner.pii_decision, plan, request)
        else:
            guarded = self._planner.pii_decision(plan, request)
        if guarded is not None:
            return guarded, None
        if plan.fixed is None and isinstance(plan.policy, CascadePolicy) and plan.policy.speculative:
            # the start policy decides while the first tier's call runs (steproute._cascade)
            policy_decision = self._planner.decide(plan, request, speculative=True)
        elif getattr(plan.policy, "blocking", False):  # a policy that calls a model: keep the loop free
            policy_decision = await asyncio.to_thread(self._planner.decide, plan, request)
        else:
            policy_decision = self._planner.decide(plan, request)
        return await self._pins.afollow(plan, policy_decision)

    # -- calling -----------------------------------------------------------------------------

    def _routed(self, decision: Decision, completion: Completion) -> RoutedCompletion:
        return RoutedCompletion(replace(decision, model=completion.model), completion, completion.cost_usd,
                                self._calls.baseline_cost(completion.usage))

    def _start(self, request: StepRequest, params: Mapping[str, Any] | None = None
               ) -> tuple[CallRecord, StepPlan, Decision, PinAction | None]:
        record = CallRecord(self._telemetry, self.decision_log, request)
        try:
            plan = self._plan(request.step, request.kind, request.hint)
            decision, action = self._route(plan, request)
            decision = self._budgeted(record, plan, request, decision, params or {})
        except BaseException as exc:
            record.failed(exc)
            raise
        record.decided(decision, self._dispatcher.first_deployment(decision.tier))
        return record, plan, decision, action

    async def _astart(self, request: StepRequest, params: Mapping[str, Any] | None = None
                      ) -> tuple[CallRecord, StepPlan, Decision, PinAction | None]:
        record = CallRecord(self._telemetry, self.decision_log, request)
        try:
            plan = self._plan(request.step, request.kind, request.hint)
            decision, action = await self._aroute(plan, request)
            if self._budget is not None and not isinstance(self.budget_store, InMemoryBudgetStore):
                decision = await asyncio.to_thread(self._budgeted, record, plan, request, decision, params or {})
            else:
                decision = self._budgeted(record, plan, request, decision, params or {})
        except BaseException as exc:
            record.failed(exc)
            raise
        record.decided(decision, self._dispatcher.first_deployment(decision.tier))
        return record, plan, decision, action

    def _budgeted(self, record: CallRecord, plan: StepPlan, request: StepRequest, decision: Decision,
                  params: Mapping[str, Any]) -> Decision:
        """The tenant's budget: reserve the call's estimated cost, or cap its tier, or refuse it
        (:class:`~steproute.errors.BudgetExceeded`)."""
        if self._budget is None:
            return decision
        deployment = self._dispatcher.first_deployment(decision.tier)
        # reserve the most the call can cost: max_tokens, else the model's most, for each of n choices
        estimate = estimate_cost(deployment.price, request, params, max_output_tokens(deployment.model))
        try:
            verdict = self._budget.admit(request, estimate)
        except BudgetExceeded as exc:
            record.refused(decision, exc)  # logged and on the span, as a decision refused by the budget
            raise
        record.budget = verdict.hold
        cap = verdict.cap_tier
        if cap is None:
            return decision
        if self._rank[decision.tier] > self._rank[cap] and (plan.fixed is not None or decision.policy == "guard"):
            raise record.refused(decision, RoutingError(
                f"step {request.step!r}: tenant {shown(request.tenant)} is over its budget, which holds it "
                f"to tier {cap!r}; the step's tier is fixed at {decision.tier!r}"), held_to=cap)
        tier = cap if self._rank[decision.tier] > self._rank[cap] else decision.tier
        # held at or below the cap for the whole call: no cascade escalation, no fallback above it
        return replace(decision, tier=tier, model=self._dispatcher.first_deployment(tier).model,
                       guard=decision.guard or "budget:capped",
                       reason=f"{decision.reason}; budget: tenant {shown(request.tenant)} spent "
                              f"${verdict.spent_usd:.6g} of ${verdict.limit_usd:.6g}, held to {cap!r}")

    def _answered(self, record: CallRecord, routed: RoutedCompletion) -> RoutedCompletion:
        completion = routed.completion
        step_cost = record.answered(routed.decision, usage=completion.usage, cost_usd=routed.cost_usd,
                        baseline_cost_usd=routed.baseline_cost_usd, provider=completion.provider,
                        response_model=completion.response_model, response_id=completion.response_id,
                        finish_reason=completion.finish_reason, response=completion.content,
                        failed_attempts=completion.failed_attempts)
        return replace(routed, cost_usd=step_cost)  # with the paid failed attempts (a malformed answer)

    def _summarised(self, record: CallRecord, state: StreamState, summary: StreamSummary) -> StreamSummary:
        step_cost = record.answered(summary.decision, usage=summary.usage, cost_usd=summary.cost_usd,
                                    baseline_cost_usd=summary.baseline_cost_usd, provider=state.provider,
                                    finish_reason=summary.finish_reason, response=summary.content,
                                    failed_attempts=state.failed_attempts)
        return replace(summary, cost_usd=step_cost)

    def _stream_stopped(self, record: CallRecord, state: StreamState, params: Mapping[str, Any],
                        error: BaseException) -> None:
        """A stream that ended early: abandoned by its consumer (booked at what was generated so
        far, see :meth:`CallRecord.stopped`), or failed."""
        if not state.live:  # a cascade's stream books its own attempts
            record.failed(error)
            return
        tier = state.decision.tier
        deployment = next((d for d in self._dispatcher.deployments(tier) if d.model == state.model),
                          self._dispatcher.first_deployment(tier))
        record.stopped(error, state, replace(state.decision, model=state.model), deployment, self._baseline_price,
                       params.get("n"))

    def _cascade(self, record: CallRecord, plan: StepPlan, request: StepRequest, decision: Decision,
                 action: PinAction | None, params: dict[str, Any]) -> _cascade.CascadeRun | None:
        """The cascade run of a call whose step policy is a cascade (``None``: not one, or a
        tier hint fixed the tier)."""
        if plan.fixed is not None or not isinstance(plan.policy, CascadePolicy):
            return None
        return _cascade.CascadeRun(self._calls, record, plan, request, decision, action, params, preferred_model(action))

    def complete(self, request: StepRequest, **params: Any) -> RoutedCompletion:
        """Decide and call. ``params`` are LiteLLM parameters (``tools``, ``temperature``, ...).
        Under a ``cascade`` policy, the call is made tier after tier until an answer is
        accepted (see :mod:`steproute.policies.cascade`).

        Raises:
            DispatchError: every deployment of the chosen tier failed.
        """
        record, plan, decision, action = self._start(request, params)
        try:
            run = self._cascade(record, plan, request, decision, action, params)
            if run is not None:
                return _cascade.run_sync(run)
            fallback = Fallback(self._calls, record, plan, request, decision, params)
            decision, completion = fallback.complete(preferred_model(action))
            routed = self._routed(decision, completion)
            routed = replace(routed, decision=self._pins.settle(action, routed.decision))
        except BaseException as exc:
            record.failed(exc)
            raise
        return self._answered(record, routed)

    async def acomplete(self, request: StepRequest, **params: Any) -> RoutedCompletion:
        """Async :meth:`complete`."""
        record, plan, decision, action = await self._astart(request, params)
        try:
            run = self._cascade(record, plan, request, decision, action, params)
            if run is not None:
                return await _cascade.run_async(run)
            fallback = Fallback(self._calls, record, plan, request, decision, params)
            decision, completion = await fallback.acomplete(preferred_model(action))
            routed = self._routed(decision, completion)
            routed = replace(routed, decision=await self._pins.asettle(action, routed.decision))
        except BaseException as exc:
            record.failed(exc)
            raise
        return self._answered(record, routed)

    def stream(self, request: StepRequest, **params: Any) -> Generator[CompletionChunk | StreamSummary, None, None]:
        """Decide and stream: chunks, then one :class:`StreamSummary` last. Under a
        ``cascade``, attempts that may be rejected are buffered; the last tier streams live."""
        record, plan, decision, action = self._start(request, params)
        state = StreamState(decision)
        try:
            run = self._cascade(record, plan, request, decision, action, params)
            if run is not None:
                for item in _cascade.stream_sync(run):
                    yield item if isinstance(item, CompletionChunk) else summary_of(item)
                return
            state.live = True
            fallback = Fallback(self._calls, record, plan, request, decision, params)
            for chunk in fallback.stream(preferred_model(action), state.follow):
                state.see(chunk)
                if chunk.usage is None:
                    yield chunk
            summary = state.summary(self._calls.baseline_cost)
            summary = replace(summary, decision=self._pins.settle(action, summary.decision))
        except BaseException as exc:  # GeneratorExit too: the consumer stopped early
            self._stream_stopped(record, state, params, exc)
            raise
        yield self._summarised(record, state, summary)

    async def astream(self, request: StepRequest, **params: Any
                      ) -> AsyncGenerator[CompletionChunk | StreamSummary, None]:
        """Async :meth:`stream`."""
        record, plan, decision, action = await self._astart(request, params)
        state = StreamState(decision)
        try:
            run = self._cascade(record, plan, request, decision, action, params)
            if run is not None:
                async for item in _cascade.stream_async(run):
                    yield item if isinstance(item, CompletionChunk) else summary_of(item)
                return
            state.live = True
            fallback = Fallback(self._calls, record, plan, request, decision, params)
            async for chunk in fallback.astream(preferred_model(action), state.follow):
                state.see(chunk)
                if chunk.usage is None:
                    yield chunk
            summary = state.summary(self._calls.baseline_cost)
            summary = replace(summary, decision=await self._pins.asettle(action, summary.decision))
        except BaseException as exc:  # CancelledError, GeneratorExit (aclose): the consumer stopped
            self._stream_stopped(record, state, params, exc)
            raise
        yield self._summarised(record, state, summary)

    def complete_batch(self, requests: Sequence[StepRequest], *, max_concurrency: int | None = None,
                       return_exceptions: bool = False, **params: Any) -> list[Any]:
        """Decide and call many requests. Cascade steps run phase by phase: the first tier over
        the whole batch, then only the rejected items go up a tier; each phase runs at most
        ``max_concurrency`` calls at once (default: the cascades' ``max_concurrency``, else 8).
        Other requests are plain calls, as many at once.

        Returns one :class:`RoutedCompletion` per request, in order. Raises the first item's
        error unless ``return_exceptions`` (then the error takes the item's place); every item
        is finished, answered or booked as failed, first.
        """
        results: list[Any] = [None] * len(requests)
        runs: dict[int, _cascade.CascadeRun] = {}
        plain: list[int] = []
        for i, request in enumerate(requests):
            try:
                if self._is_cascade(request):
                    record, plan, decision, action = self._start(request, params)
                    runs[i] = _cascade.CascadeRun(self._calls, record, plan, request, decision, action, dict(params),
                                                  preferred_model(action))
                else:
                    plain.append(i)
            except Exception as exc:
                results[i] = exc
        bound = max_concurrency or self._batch_bound(runs.values())

        def call(i: int) -> Any:
            try:
                return self.complete(requests[i], **params)
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, min(bound, len(plain) or 1))) as pool:
            for i, result in zip(plain, pool.map(call, plain), strict=True):
                results[i] = result
        for i, result in zip(runs, _cascade.batch_sync(list(runs.values()), bound, _book_failure), strict=True):
            results[i] = result
        return batch_results(results, return_exceptions)

    async def acomplete_batch(self, requests: Sequence[StepRequest], *, max_concurrency: int | None = None,
                              return_exceptions: bool = False, **params: Any) -> list[Any]:
        """Async :meth:`complete_batch`."""
        results: list[Any] = [None] * len(requests)
        runs: dict[int, _cascade.CascadeRun] = {}
        plain: list[int] = []
        for i, request in enumerate(requests):
            try:
                if self._is_cascade(request):
                    record, plan, decision, action = await self._astart(request, params)
                    runs[i] = _cascade.CascadeRun(self._calls, record, plan, request, decision, action, dict(params),
                                                  preferred_model(action))
                else:
                    plain.append(i)
            except Exception as exc:
                results[i] = exc
        bound = max_concurrency or self._batch_bound(runs.values())
        gate = asyncio.Semaphore(bound)

        async def call(i: int) -> Any:
            async with gate:
                try:
                    return await self.acomplete(requests[i], **params)
                except Exception as exc:
                    return exc

        plain_results, cascaded = await asyncio.gather(
            asyncio.gather(*(call(i) for i in plain)),
            _cascade.batch_async(list(runs.values()), bound, _book_failure))
        for i, result in zip(plain, plain_results, strict=True):
            results[i] = result
        for i, result in zip(runs, cascaded, strict=True):
            results[i] = result
        return batch_results(results, return_exceptions)

    def _is_cascade(self, request: StepRequest) -> bool:
        plan = self._plan(request.step, request.kind, request.hint)
        return plan.fixed is None and isinstance(plan.policy, CascadePolicy)

    @staticmethod
    def _batch_bound(runs: Any) -> int:
        return min((r.policy.max_concurrency for r in runs), default=8)

    def feedback(self, decision_id: str, quality: float, **extra: Any) -> None:
        """Attach a quality signal in [0, 1] to a logged decision (for evaluation and training).

        Raises:
            ValueError: ``quality`` is not a number in [0, 1], ``decision_id`` is not a non-empty
                string, an extra key is ``type``, ``id`` or ``quality``, or the router has no
                decision log. (``steproute feedback`` writes the same entry from the shell.)
        """
        if self.decision_log is None:
            raise ValueError("feedback needs a decision log: StepRouter(..., decision_log='decisions.jsonl')")
        self.decision_log.write(feedback_entry(decision_id, quality, **extra))

    def deployments(self, tier: str) -> tuple[Deployment, ...]:
        """A tier's deployments (model, provider, price), in fallback order."""
        return self._dispatcher.deployments(tier)

    def policy_of(self, step: str, kind: str | None = None) -> Policy:
        """The policy object that decides ``step`` (by name, then kind, then ``default``)."""
        return self._plan(step, kind, Hint()).policy

    # -- LangChain / LangGraph conveniences (the layer above; imported on use) ---------------

    def chat_model(self, **kwargs: Any) -> RoutedChatModel:
        """A LangChain chat model that routes every call through this router.

        ``kwargs`` are :class:`~steproute.langgraph.RoutedChatModel` fields (``step``,
        ``temperature``, ``max_tokens``, ``model_kwargs``).
        """
        from steproute.langgraph import RoutedChatModel

        return RoutedChatModel(router=self, **kwargs)

    def node(self, step: str, prompt: Any, **kwargs: Any) -> Runnable:
        """A ready LangGraph node for one step; see :func:`steproute.langgraph.routed_node`."""
        from steproute.langgraph import routed_node

        return routed_node(self, step, prompt, **kwargs)

    def route_init_chat_model(self, *, step: str | None = None) -> ModelPatch:
        """Route every LangChain ``init_chat_model`` model through this router, with no edit to the
        app; undo with ``.uninstall()`` or a ``with`` block. See :mod:`steproute.factories`.

        Example:
            >>> patch = router.route_init_chat_model()   # then import the app  # doctest: +SKIP
        """
        from steproute.factories import route_init_chat_model

        return route_init_chat_model(self, step=step)

    def __repr__(self) -> str:
        return f"StepRouter(tiers={list(self.tiers)}, baseline={self.baseline!r}, steps={list(self.config.steps)})"


def _book_failure(run: _cascade.CascadeRun, error: BaseException) -> None:
    run.record.failed(error)
