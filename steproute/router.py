"""StepRouter: decides the tier of each step's call and dispatches it.

Order of one decision: the step's ``tier`` hint if any, else the step's policy (looked up by step name, then by
step kind, then ``default``); then the config's and the hint's ``min_tier``/``max_tier`` clamp the choice. The result
is an immutable :class:`~steproute.types.Decision`. The router core knows nothing of LangGraph or LangChain: requests
come in as :class:`~steproute.types.StepRequest` with OpenAI-format messages.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from steproute import _batch
from steproute import _walk_drivers as drivers
from steproute._budget_gate import BudgetGate
from steproute._call_context import CallContext
from steproute._call_start import CallStart
from steproute._feedback import deliver_feedback, feedback_entry
from steproute._pin_keeper import PinKeeper
from steproute._plan import Planner
from steproute.config import RouterConfig, load_config
from steproute.decision_capture import open_decision_log
from steproute.decision_log import DecisionLog
from steproute.dispatch import CompletionChunk, Deployment, Dispatcher
from steproute.guards import BudgetGuard, BudgetStore, InMemoryBudgetStore
from steproute.pinning import InMemoryPinStore, PinAction, PinStore
from steproute.policies import CascadePolicy, Policy
from steproute.results import RoutedCompletion, StreamSummary, batch_results
from steproute.shadow import ShadowRunner, shadow_runner
from steproute.step_coverage import StepCoverage
from steproute.telemetry import Telemetry
from steproute.tier_client import Transport
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

    Every call is observed: an OpenTelemetry ``route {step}`` span with a ``chat {model}`` span under it, metrics
    (``tracer_provider``/``meter_provider``, default: the global ones), and, given a ``decision_log`` (a path or a
    :class:`~steproute.decision_log.DecisionLog`), one JSON line per call. Calls on a thread are pinned per step group
    (``pinning:`` in the config); pins live in ``pin_store`` (default: bounded, in memory; see
    :class:`~steproute.pinning.BaseStorePinStore` to share them across replicas). ``record_content=True`` puts
    prompts and answers on the ``chat`` spans, redacted by the PII guard when one is configured. ``transport``
    answers the tiers (default: LiteLLM; :class:`steproute.testing.FunctionTransport` answers from a function).
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
        transport: Transport | None = None,
    ) -> None:
        self.config = config
        self.baseline = config.baseline_tier()
        self._dispatcher = Dispatcher(config, transport)
        self._planner = Planner(config, lambda tier: self._dispatcher.first_deployment(tier).model,
                                self._dispatcher.ask, self._dispatcher.latency)
        self.tiers: tuple[str, ...] = self._planner.tiers
        self._rank, self._plan = self._planner.rank, self._planner.plan
        self.coverage: StepCoverage = self._planner.coverage
        """Which ``steps:`` entries calls have matched (:class:`~steproute.step_coverage.StepCoverage`)."""
        pii = self._planner.pii
        self._telemetry = Telemetry(tracer_provider, meter_provider, record_content=record_content,
                                    redact=pii.redact if pii is not None else None, latency=self._dispatcher.latency)
        log = open_decision_log(config, decision_log)
        self._pins = PinKeeper(pin_store if pin_store is not None else InMemoryPinStore(
            max_entries=config.pinning.max_threads, ttl_seconds=config.pinning.ttl_seconds),
            self._rank, self._dispatcher.deployments)
        self.shadow: ShadowRunner | None = shadow_runner(config, self._dispatcher, log, meter_provider)
        self._calls = CallContext(config, self.tiers, self._rank, self._dispatcher, self._pins,
                                  self._dispatcher.first_deployment(self.baseline).price,
                                  self.shadow, self._planner.answered)
        guards = config.guards
        self.budget_store: BudgetStore = budget_store if budget_store is not None else InMemoryBudgetStore()
        self._budget = BudgetGuard.from_config(guards.budgets, self.budget_store) if guards.budgets is not None else None
        gate = BudgetGate(self._budget, self._dispatcher, self._rank, self._calls.capabilities.target)
        self._starts = CallStart(self._planner, self._pins, gate, self._calls, self._telemetry, log, blocking_budget=(
            self._budget is not None and not isinstance(self.budget_store, InMemoryBudgetStore)))

    @property
    def decision_log(self) -> DecisionLog | None:
        """Where each call's decision is written as a JSON line (``None``: nowhere)."""
        return self._starts.decision_log

    @decision_log.setter
    def decision_log(self, log: DecisionLog | None) -> None:
        self._starts.decision_log = log

    @property
    def pin_store(self) -> PinStore:
        """Where the conversations' pins live (default: bounded, in memory)."""
        return self._pins.store

    @pin_store.setter
    def pin_store(self, store: PinStore) -> None:
        self._pins.store = store

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> StepRouter:
        """Build a router from a YAML or TOML file (see ``docs/configuration.md``); ``kwargs`` as for the constructor."""
        return cls(load_config(path), **kwargs)

    # -- deciding ----------------------------------------------------------------------------

    def decide(self, request: StepRequest) -> Decision:
        """Choose a tier for one call by hints, policy and latency budget (the latency observed so far). No I/O, no
        model call, no pin (:meth:`route` adds the conversation's pin).

        Raises:
            RoutingError: a hint names an unknown tier, or its bounds contradict.
        """
        return self._planner.decide(self._planner.plan_of(request), request)

    def route(self, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """:meth:`decide`, then the conversation's pin: the decision a call follows, and the pin it follows or has just
        made (``None``: no thread, or pinning off). A thread's first pin is written here, before the call is dispatched."""
        return self._starts.route(self._planner.plan_of(request), request)

    async def aroute(self, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """Async :meth:`route` (the pin store is read with its async API)."""
        return await self._starts.aroute(self._planner.plan_of(request), request)

    # -- calling: plan → route (decide, pin) → budget → walk (steproute._call_start) → record -----

    def complete(self, request: StepRequest, **params: Any) -> RoutedCompletion:
        """Decide and call. ``params`` are LiteLLM parameters (``tools``, ``temperature``, ...). When every deployment
        of the tier fails, a stronger tier may answer (``tier_fallback``); under a ``cascade`` policy, the call is made
        tier after tier until an answer is accepted (see :mod:`steproute.tier_walk`).

        Raises:
            DispatchError: every tier the call could use failed.
        """
        call = self._starts.start(request, params)
        try:
            return drivers.run(call)
        except BaseException as exc:
            call.record.failed(exc)
            raise

    async def acomplete(self, request: StepRequest, **params: Any) -> RoutedCompletion:
        """Async :meth:`complete`."""
        call = await self._starts.astart(request, params)
        try:
            return await drivers.arun(call)
        except BaseException as exc:
            call.record.failed(exc)
            raise

    def stream(self, request: StepRequest, **params: Any) -> Generator[CompletionChunk | StreamSummary, None, None]:
        """Decide and stream: chunks, then one :class:`StreamSummary` (a cascade's judged attempts buffered, the last live)."""
        call = self._starts.start(request, params)
        yield from drivers.stream(call)

    async def astream(self, request: StepRequest, **params: Any
                      ) -> AsyncGenerator[CompletionChunk | StreamSummary, None]:
        """Async :meth:`stream`."""
        call = await self._starts.astart(request, params)
        items = drivers.astream(call)
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()

    def complete_batch(self, requests: Sequence[StepRequest], *, max_concurrency: int | None = None,
                       return_exceptions: bool = False, **params: Any) -> list[Any]:
        """Decide and call many requests. Cascade steps run phase by phase: the first tier over the whole batch, then
        only the rejected items go up a tier; each phase runs at most ``max_concurrency`` calls at once (default: the
        cascades' ``max_concurrency``, else 8). Other requests are plain calls, as many at once.

        Returns one :class:`RoutedCompletion` per request, in order. Raises the first item's error unless
        ``return_exceptions`` (then the error takes the item's place); every item is finished (answered or failed) first.
        """
        return batch_results(_batch.run(self._batch_calls(params), requests, max_concurrency), return_exceptions)

    async def acomplete_batch(self, requests: Sequence[StepRequest], *, max_concurrency: int | None = None,
                              return_exceptions: bool = False, **params: Any) -> list[Any]:
        """Async :meth:`complete_batch`."""
        results = await _batch.arun(self._batch_calls(params), requests, max_concurrency)
        return batch_results(results, return_exceptions)

    def runs_in_phases(self, request: StepRequest) -> bool:
        """Whether a batch runs ``request`` phase by phase: its step is a cascade (no tier hint)."""
        return (plan := self._planner.plan_of(request)).fixed is None and isinstance(
            plan.policy, CascadePolicy)

    def _batch_calls(self, params: Mapping[str, Any]) -> _batch.BatchCalls:
        return _batch.BatchCalls(self.runs_in_phases, lambda r: self._starts.start(r, params),
                                 lambda r: self._starts.astart(r, params), lambda r: self.complete(r, **params),
                                 lambda r: self.acomplete(r, **params))

    def feedback(self, decision_id: str, quality: float, **extra: Any) -> None:
        """Attach a quality signal in [0, 1] to a logged decision (for evaluation and training); a ``bandit`` policy
        that made the decision learns from it (``docs/bandit.md``).

        Raises:
            ValueError: ``quality`` is not a number in [0, 1], ``decision_id`` is not a non-empty string, an extra key
                is ``type``, ``id`` or ``quality``, or the router has no decision log and no bandit learnt from it.
        """
        deliver_feedback(feedback_entry(decision_id, quality, **extra), self.decision_log, self._planner.learn)

    def close(self, timeout: float = 5.0) -> int:
        """Wait up to ``timeout`` s for shadow calls in flight, drop the rest; returns how many were dropped."""
        return self.shadow.close(timeout) if self.shadow is not None else 0

    async def aclose(self, timeout: float = 5.0) -> int:
        """Async :meth:`close`."""
        return await self.shadow.aclose(timeout) if self.shadow is not None else 0

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

