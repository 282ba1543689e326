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
import time
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steproute import _cascade
from steproute._call import CallRecord
from steproute._fallback import Fallback
from steproute._feedback import feedback_entry
from steproute.config import RouterConfig, StyleConfig, load_config
from steproute.decision_log import DecisionLog, JsonlDecisionLog
from steproute.dispatch import Completion, CompletionChunk, Deployment, Dispatcher, StreamCollector
from steproute.errors import BudgetExceeded, ConfigError, ConfigProblem, RoutingError, shown
from steproute.guards import (
    PII_THREAD_CHARS,
    BudgetGuard,
    BudgetStore,
    InMemoryBudgetStore,
    PiiGuard,
    estimate_cost,
    max_output_tokens,
)
from steproute.pinning import InMemoryPinStore, PinAction, PinSettings, PinStore, apply_pin, pin_after
from steproute.policies import CascadePolicy, Choice, Policy, PolicyContext, build_policy
from steproute.pricing import call_cost
from steproute.step_coverage import StepCoverage
from steproute.telemetry import Telemetry
from steproute.types import Decision, Hint, StepRequest, Usage

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from steproute.factories import ModelPatch
    from steproute.langgraph import RoutedChatModel

__all__ = ["RoutedCompletion", "StepRouter", "StreamSummary"]


@dataclass(frozen=True)
class RoutedCompletion:
    """A routed call's answer, its decision and what it cost."""

    decision: Decision
    """The decision, with ``model`` set to the deployment that answered."""
    completion: Completion
    cost_usd: float
    baseline_cost_usd: float
    """The same token usage priced at the baseline tier's first model."""

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd


@dataclass(frozen=True)
class StreamSummary:
    """The last item of :meth:`StepRouter.stream`: decision and cost of the streamed call."""

    decision: Decision
    usage: Usage
    cost_usd: float
    baseline_cost_usd: float
    finish_reason: str | None = None
    content: str = ""
    """The streamed text, joined."""

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd


@dataclass(frozen=True)
class _StepPlan:
    """A step's policy and bounds, resolved once per (step, kind, hint)."""

    kind: str | None
    """The step's kind: declared in code, else from its config entry."""
    policy: Policy
    policy_is_default: bool
    low: int
    high: int
    fixed: Choice | None
    pinning: PinSettings | None
    """``None``: this step is not pinned (mode ``off``, or a tier hint fixes it)."""
    style: StyleConfig | None
    """The step's system-prompt addition and output settings."""
    tier_fallback: str = "next"
    """When the tier's every deployment fails: ``next``, ``stronger`` or ``none``."""
    unconfigured: bool = False
    """The step matches no ``steps:`` entry while the configuration has some (said in the reason)."""


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
        self.tiers: tuple[str, ...] = config.tier_names()
        self._rank = {name: i for i, name in enumerate(self.tiers)}
        self.baseline = config.baseline_tier()
        self._dispatcher = Dispatcher(config)
        self._baseline_price = self._dispatcher.first_deployment(self.baseline).price
        self._default, self._policies = self._build_policies(config)
        self._plan = lru_cache(maxsize=4096)(self._make_plan)
        self.coverage = StepCoverage(config.steps)
        """Which ``steps:`` entries calls have matched (:class:`~steproute.step_coverage.StepCoverage`)."""
        pii = config.guards.pii
        self._pii = PiiGuard.from_config(pii) if pii is not None else None
        self._telemetry = Telemetry(tracer_provider, meter_provider, record_content=record_content,
                                    redact=self._pii.redact if self._pii is not None else None)
        if decision_log is not None and not isinstance(decision_log, DecisionLog):
            decision_log = JsonlDecisionLog(decision_log)
        self.decision_log: DecisionLog | None = decision_log
        self.pin_store: PinStore = pin_store if pin_store is not None else InMemoryPinStore(
            max_entries=config.pinning.max_threads, ttl_seconds=config.pinning.ttl_seconds)
        guards = config.guards
        self.budget_store: BudgetStore = budget_store if budget_store is not None else InMemoryBudgetStore()
        self._budget = BudgetGuard.from_config(guards.budgets, self.budget_store) if guards.budgets is not None else None

    def _build_policies(self, config: RouterConfig) -> tuple[Policy, dict[str, Policy]]:
        """Every policy of the config; one :class:`ConfigError` lists each that cannot be built
        (a missing or mismatched artefact) with its config path."""
        source = config._source
        context = PolicyContext(self.tiers, Path(source).parent if source else Path("."), self._ask)
        problems: list[ConfigProblem] = []
        built: dict[str, Policy] = {}
        for path, cfg in [("default", config.default), *((f"steps.{n}", c) for n, c in config.steps.items())]:
            try:
                built[path] = build_policy(cfg, context)
            except (ValueError, ImportError) as exc:
                field = "artefact" if getattr(cfg, "artefact", None) else "policy"
                problems.append(ConfigProblem(f"{path}.{field}", str(exc)))
        if problems:
            raise ConfigError(problems, source=source)
        return built.pop("default"), {path.removeprefix("steps."): p for path, p in built.items()}

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

    def _tier_rank(self, step: str, what: str, tier: str | None) -> int | None:
        if tier is None:
            return None
        try:
            return self._rank[tier]
        except KeyError:
            raise RoutingError(
                f"step {shown(step)}: {what} {shown(tier)} is not a tier (known: {', '.join(self.tiers)})") from None

    def _make_plan(self, step: str, declared_kind: str | None, hint: Hint) -> _StepPlan:
        kind = self.config.kind_of(step, declared_kind)
        entry = self.config.step_entry(step, kind)
        cfg = self.config.default if entry is None else self.config.steps[entry]
        policy = self._default if entry is None else self._policies[entry]
        low, high = 0, len(self.tiers) - 1
        for what, bound in (("config min_tier", cfg.min_tier), ("min_tier hint", hint.min_tier)):
            rank = self._tier_rank(step, what, bound)
            if rank is not None:
                low = max(low, rank)
        for what, bound in (("config max_tier", cfg.max_tier), ("max_tier hint", hint.max_tier)):
            rank = self._tier_rank(step, what, bound)
            if rank is not None:
                high = min(high, rank)
        if low > high:
            raise RoutingError(
                f"step {step!r}: min_tier {self.tiers[low]!r} is above max_tier {self.tiers[high]!r}")
        fixed = None
        if hint.tier is not None:
            self._tier_rank(step, "tier hint", hint.tier)
            fixed = Choice(hint.tier, f"tier hint {hint.tier!r}")
        self.coverage.planned(step, entry)
        return _StepPlan(kind, policy, entry is None, low, high, fixed,
                         None if fixed is not None else self._pin_settings(step, cfg.pinning, hint), cfg.style,
                         cfg.tier_fallback, entry is None and bool(self.config.steps))

    def _pin_settings(self, step: str, own: Any, hint: Hint) -> PinSettings | None:
        base = self.config.pinning
        mode = hint.pin or (own.mode if own and own.mode else None) or base.mode or "sticky"
        if mode == "off":
            return None
        group = hint.pin_group or (own.group if own and own.group else None) or base.group or step
        after_turns = own.after_turns if own and own.after_turns is not None else base.after_turns
        after_seconds = own.after_seconds if own and own.after_seconds is not None else base.after_seconds
        if mode == "reevaluate" and after_turns is None and after_seconds is None:
            raise RoutingError(f"step {step!r}: pin mode 'reevaluate' needs after_turns or after_seconds in the config")
        return PinSettings(mode, group, after_turns, after_seconds)

    def decide(self, request: StepRequest) -> Decision:
        """Choose a tier for one call by hints and policy. Pure: no I/O, no model call, no pin
        (:meth:`route` adds the conversation's pin).

        Raises:
            RoutingError: a hint names an unknown tier, or its bounds contradict.
        """
        return self._decide(self._plan(request.step, request.kind, request.hint), request)

    def route(self, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """:meth:`decide`, then the conversation's pin: the decision a call follows, and the
        pin it follows or has just made (``None``: no thread, or pinning off). A thread's first
        pin is written here, before the call is dispatched."""
        return self._route(self._plan(request.step, request.kind, request.hint), request)

    def _pii_decision(self, plan: _StepPlan, request: StepRequest) -> Decision | None:
        """The decision the PII guard forces (``None``: no personal data, or no guard)."""
        if self._pii is None:
            return None
        fired = self._pii.detect(request)
        if not fired:
            return None
        tier = self._pii.tier
        rank = self._rank[tier]
        if (plan.fixed is not None and plan.fixed.tier != tier) or not plan.low <= rank <= plan.high:
            raise RoutingError(f"step {request.step!r}: the PII guard ({', '.join(fired)}) requires tier {tier!r}, "
                               f"which the step's hints or bounds do not allow")
        return Decision(step=request.step, kind=plan.kind, tier=tier, model=self._dispatcher.first_deployment(tier).model,
                        policy="guard", reason=f"pii guard: {', '.join(fired)} detected; tier {tier!r}",
                        guard="pii:" + ",".join(fired), thread=request.thread)

    def _route(self, plan: _StepPlan, request: StepRequest) -> tuple[Decision, PinAction | None]:
        guarded = self._pii_decision(plan, request)
        if guarded is not None:  # forced, and never pinned: the conversation's pin is for its ordinary calls
            return guarded, None
        policy_decision = self._decide(plan, request)
        if plan.pinning is None or request.thread is None:
            return policy_decision, None
        group, thread = plan.pinning.group, request.thread
        decision, action = self._pinned(plan, policy_decision, self.pin_store.get(thread, group))
        if action.write == "absent" and action.held is not None:
            winner = self.pin_store.put_if_absent(thread, group, action.held)
            if winner.decision_id != decision.id:  # another call made the thread's first pin: follow it
                decision, action = self._pinned(plan, policy_decision, winner)
        elif action.write == "replace" and action.held is not None:
            self.pin_store.put(thread, group, action.held)
        return decision, action

    def _pinned(self, plan: _StepPlan, decision: Decision, held: Any) -> tuple[Decision, PinAction]:
        assert plan.pinning is not None and decision.thread is not None
        return apply_pin(decision, held, plan.pinning, decision.thread, self._rank, plan.low, plan.high, time.time())

    async def aroute(self, request: StepRequest) -> tuple[Decision, PinAction | None]:
        """Async :meth:`route` (the pin store is read with its async API)."""
        return await self._aroute(self._plan(request.step, request.kind, request.hint), request)

    async def _aroute(self, plan: _StepPlan, request: StepRequest) -> tuple[Decision, PinAction | None]:
        if self._pii is not None and request.input_chars > PII_THREAD_CHARS:  # a long scan: off the event loop
            guarded = await asyncio.to_thread(self._pii_decision, plan, request)
        else:
            guarded = self._pii_decision(plan, request)
        if guarded is not None:
            return guarded, None
        if plan.fixed is None and isinstance(plan.policy, CascadePolicy) and plan.policy.speculative:
            # the start policy decides while the first tier's call runs (steproute._cascade)
            policy_decision = self._decide(plan, request, speculative=True)
        elif getattr(plan.policy, "blocking", False):  # a policy that calls a model: keep the loop free
            policy_decision = await asyncio.to_thread(self._decide, plan, request)
        else:
            policy_decision = self._decide(plan, request)
        if plan.pinning is None or request.thread is None:
            return policy_decision, None
        group, thread = plan.pinning.group, request.thread
        decision, action = self._pinned(plan, policy_decision, await self.pin_store.aget(thread, group))
        if action.write == "absent" and action.held is not None:
            winner = await self.pin_store.aput_if_absent(thread, group, action.held)
            if winner.decision_id != decision.id:
                decision, action = self._pinned(plan, policy_decision, winner)
        elif action.write == "replace" and action.held is not None:
            await self.pin_store.aput(thread, group, action.held)
        return decision, action

    def _decide(self, plan: _StepPlan, request: StepRequest, *, speculative: bool = False) -> Decision:
        choice: Choice | None
        if plan.fixed is not None:
            choice, policy_name = plan.fixed, "hint"
        else:
            choice = plan.policy.first_choice() if speculative else plan.policy.choose(request)  # type: ignore[attr-defined]
            policy_name = plan.policy.name
            if choice is None and not plan.policy_is_default:
                choice = self._default.choose(request)
                policy_name = self._default.name
                if choice is not None:
                    choice = replace(choice, reason=f"step policy had no match; default: {choice.reason}")
        if choice is None:
            choice = Choice(self.tiers[plan.low], "no policy matched; cheapest allowed tier")
        rank = self._rank[choice.tier]
        reason = choice.reason
        if rank < plan.low:
            rank = plan.low
            reason += f"; raised to min_tier {self.tiers[rank]!r}"
        elif rank > plan.high:
            rank = plan.high
            reason += f"; lowered to max_tier {self.tiers[rank]!r}"
        if plan.unconfigured and plan.fixed is None:
            came = f" ({request.origin})" if request.origin else ""
            reason = f"step {shown(request.step)}{came} matches no steps: entry; default policy: {reason}"
        elif request.origin in ("agent", "subgraph"):
            reason = f"step from the {request.origin} {shown(request.step)}: {reason}"
        tier = self.tiers[rank]
        return Decision(
            step=request.step,
            kind=plan.kind,
            tier=tier,
            model=self._dispatcher.first_deployment(tier).model,
            policy=policy_name,
            reason=reason,
            score=choice.score,
            thread=request.thread,
            agent=request.agent,
        )

    # -- calling -----------------------------------------------------------------------------

    def _baseline_cost(self, usage: Usage) -> float:
        return call_cost(self._baseline_price, usage)

    def _routed(self, decision: Decision, completion: Completion) -> RoutedCompletion:
        return RoutedCompletion(replace(decision, model=completion.model), completion, completion.cost_usd,
                                self._baseline_cost(completion.usage))

    def _start(self, request: StepRequest, params: Mapping[str, Any] | None = None
               ) -> tuple[CallRecord, _StepPlan, Decision, PinAction | None]:
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
                      ) -> tuple[CallRecord, _StepPlan, Decision, PinAction | None]:
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

    def _budgeted(self, record: CallRecord, plan: _StepPlan, request: StepRequest, decision: Decision,
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

    def _styled(
        self, plan: _StepPlan, request: StepRequest, decision: Decision, params: dict[str, Any]
    ) -> tuple[Sequence[Mapping[str, Any]], dict[str, Any]]:
        """The tier's, then the step's, system-prompt addition and output settings (so answers
        look alike across tiers); settings the call gives itself win."""
        tier_style = self.config.tiers[decision.tier].style
        step_style = plan.style
        if tier_style is None and step_style is None:
            return request.messages, params
        styles = [s for s in (tier_style, step_style) if s is not None]
        messages = list(request.messages)
        addition = "\n\n".join(s.system_prompt for s in styles if s.system_prompt)
        if addition:
            if messages and messages[0].get("role") == "system":
                content = messages[0].get("content")
                if isinstance(content, list):
                    content = [*content, {"type": "text", "text": addition}]
                else:
                    content = f"{content}\n\n{addition}" if content else addition
                messages[0] = {**messages[0], "content": content}
            else:
                messages.insert(0, {"role": "system", "content": addition})
        params = dict(params)
        for name in ("max_tokens", "temperature"):
            values = [getattr(s, name) for s in reversed(styles) if getattr(s, name) is not None]
            if values:
                params.setdefault(name, values[0])
        return messages, params

    def _repin(self, action: PinAction | None, decision: Decision) -> Decision:
        if action is None or decision.fallback_from is not None:  # a fallback tier answered: the pin stays
            return decision
        pin, repinned = pin_after(action, decision)
        if pin is not None:
            self.pin_store.put(action.thread, action.settings.group, pin)
        return replace(decision, repinned=True) if repinned else decision

    async def _arepin(self, action: PinAction | None, decision: Decision) -> Decision:
        if action is None or decision.fallback_from is not None:
            return decision
        pin, repinned = pin_after(action, decision)
        if pin is not None:
            await self.pin_store.aput(action.thread, action.settings.group, pin)
        return replace(decision, repinned=True) if repinned else decision

    def _answered(self, record: CallRecord, routed: RoutedCompletion) -> RoutedCompletion:
        completion = routed.completion
        step_cost = record.answered(routed.decision, usage=completion.usage, cost_usd=routed.cost_usd,
                        baseline_cost_usd=routed.baseline_cost_usd, provider=completion.provider,
                        response_model=completion.response_model, response_id=completion.response_id,
                        finish_reason=completion.finish_reason, response=completion.content,
                        failed_attempts=completion.failed_attempts)
        return replace(routed, cost_usd=step_cost)  # with the paid failed attempts (a malformed answer)

    def _summarised(self, record: CallRecord, state: _StreamState, summary: StreamSummary) -> StreamSummary:
        step_cost = record.answered(summary.decision, usage=summary.usage, cost_usd=summary.cost_usd,
                                    baseline_cost_usd=summary.baseline_cost_usd, provider=state.provider,
                                    finish_reason=summary.finish_reason, response=summary.content,
                                    failed_attempts=state.failed_attempts)
        return replace(summary, cost_usd=step_cost)

    def _stream_stopped(self, record: CallRecord, state: _StreamState, params: Mapping[str, Any],
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

    def _cascade(self, record: CallRecord, plan: _StepPlan, request: StepRequest, decision: Decision,
                 action: PinAction | None, params: dict[str, Any]) -> _cascade.CascadeRun | None:
        """The cascade run of a call whose step policy is a cascade (``None``: not one, or a
        tier hint fixed the tier)."""
        if plan.fixed is not None or not isinstance(plan.policy, CascadePolicy):
            return None
        return _cascade.CascadeRun(self, record, plan, request, decision, action, params, _prefer(action))

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
            decision, completion = Fallback(self, record, plan, request, decision, params).complete(_prefer(action))
            routed = self._routed(decision, completion)
            routed = replace(routed, decision=self._repin(action, routed.decision))
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
            fallback = Fallback(self, record, plan, request, decision, params)
            decision, completion = await fallback.acomplete(_prefer(action))
            routed = self._routed(decision, completion)
            routed = replace(routed, decision=await self._arepin(action, routed.decision))
        except BaseException as exc:
            record.failed(exc)
            raise
        return self._answered(record, routed)

    def stream(self, request: StepRequest, **params: Any) -> Generator[CompletionChunk | StreamSummary, None, None]:
        """Decide and stream: chunks, then one :class:`StreamSummary` last. Under a
        ``cascade``, attempts that may be rejected are buffered; the last tier streams live."""
        record, plan, decision, action = self._start(request, params)
        state = _StreamState(decision)
        try:
            run = self._cascade(record, plan, request, decision, action, params)
            if run is not None:
                for item in _cascade.stream_sync(run):
                    yield item if isinstance(item, CompletionChunk) else _summary_of(item)
                return
            state.live = True
            fallback = Fallback(self, record, plan, request, decision, params)
            for chunk in fallback.stream(_prefer(action), state.follow):
                state.see(chunk)
                if chunk.usage is None:
                    yield chunk
            summary = state.summary(self)
            summary = replace(summary, decision=self._repin(action, summary.decision))
        except BaseException as exc:  # GeneratorExit too: the consumer stopped early
            self._stream_stopped(record, state, params, exc)
            raise
        yield self._summarised(record, state, summary)

    async def astream(self, request: StepRequest, **params: Any
                      ) -> AsyncGenerator[CompletionChunk | StreamSummary, None]:
        """Async :meth:`stream`."""
        record, plan, decision, action = await self._astart(request, params)
        state = _StreamState(decision)
        try:
            run = self._cascade(record, plan, request, decision, action, params)
            if run is not None:
                async for item in _cascade.stream_async(run):
                    yield item if isinstance(item, CompletionChunk) else _summary_of(item)
                return
            state.live = True
            fallback = Fallback(self, record, plan, request, decision, params)
            async for chunk in fallback.astream(_prefer(action), state.follow):
                state.see(chunk)
                if chunk.usage is None:
                    yield chunk
            summary = state.summary(self)
            summary = replace(summary, decision=await self._arepin(action, summary.decision))
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
                    runs[i] = _cascade.CascadeRun(self, record, plan, request, decision, action, dict(params),
                                                  _prefer(action))
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
        return _results(results, return_exceptions)

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
                    runs[i] = _cascade.CascadeRun(self, record, plan, request, decision, action, dict(params),
                                                  _prefer(action))
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
        return _results(results, return_exceptions)

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


def _summary_of(routed: RoutedCompletion) -> StreamSummary:
    completion = routed.completion
    return StreamSummary(routed.decision, completion.usage, routed.cost_usd, routed.baseline_cost_usd,
                         completion.finish_reason, completion.content)


def _book_failure(run: _cascade.CascadeRun, error: BaseException) -> None:
    run.record.failed(error)


def _results(results: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for item in results:
            if isinstance(item, BaseException):
                raise item
    return results


def _prefer(action: PinAction | None) -> str | None:
    """The pinned model, for a call that follows a pin (dispatch tries it first)."""
    return action.held.model if action is not None and not action.made and action.held is not None else None


class _StreamState(StreamCollector):
    """A routed stream's chunks, and the decision of the tier that streams them."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.model)
        self.decision = decision
        self.live = False
        """Streaming from a tier (not a cascade's buffered attempts)."""

    def follow(self, decision: Decision) -> None:
        """The decision of the tier that streams (another one after a cross-tier fallback)."""
        self.decision = decision
        self.model = decision.model

    def summary(self, router: StepRouter) -> StreamSummary:
        return StreamSummary(replace(self.decision, model=self.model), self.usage, self.cost_usd,
                             router._baseline_cost(self.usage), self.finish_reason, "".join(self.parts))
