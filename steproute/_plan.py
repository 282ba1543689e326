"""Planning and deciding: a step's policy and bounds, and the tier its call goes to. Pure.

:class:`Planner` resolves each (step, kind, hint) once into a :class:`StepPlan` (its policy by
step name, then kind, then ``default``; the configuration's and the hint's ``min_tier``/
``max_tier`` combined; its pinning, style and ``tier_fallback``), then decides a request: the
PII guard's forced tier, else the ``tier`` hint, else the policy's choice (the default policy's
when the step's has none), clamped to the bounds, with the reason saying each step of the way.
No I/O, no model call, no pin: :mod:`steproute._pin_keeper` adds the conversation's pin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from steproute.config import RouterConfig
from steproute.errors import ConfigError, ConfigProblem, RoutingError, say_once, shown
from steproute.experiments import Experiment
from steproute.guards import PII_THREAD_CHARS, PiiGuard
from steproute.latency import LatencyBook
from steproute.pinning import PinSettings
from steproute.policies import CascadePolicy, Choice, Policy, PolicyContext, build_policy
from steproute.policy_config import StyleConfig
from steproute.step_coverage import StepCoverage
from steproute.types import ArmAssignment, Decision, Hint, StepRequest

__all__ = ["Planner", "StepPlan"]


@dataclass(frozen=True)
class StepPlan:
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
    tier_fallback: str | None = None
    """When the tier's every deployment fails: ``next``, ``stronger`` or ``none`` (``None``:
    unset, see :func:`steproute.tier_walk.walk_rules`)."""
    fallback_on: tuple[str, ...] = ()
    """Provider refusal kinds that may move the call to another tier (``fallback_on``)."""
    unconfigured: bool = False
    """The step matches no ``steps:`` entry while the configuration has some (said in the reason)."""
    max_latency_ms: float | None = None
    """The step's latency budget (``max_latency_ms``; see :mod:`steproute.latency`)."""
    in_experiment: bool = False
    """The step's entry is one the configuration's ``experiment:`` covers (see :meth:`Planner.plan_of`)."""
    arm: ArmAssignment | None = None
    """The experiment arm this plan is of: its configuration replaced the step's (unless ``null``)."""


Ask = Callable[[str, Sequence[Mapping[str, Any]], int], str]


class Planner:
    """Every policy of a configuration, the plans of the steps, and the pure decision.

    ``model_of(tier)`` names the model a decision for ``tier`` records (the tier's first
    deployment); ``ask`` is the short model call an ``llm`` policy routes with; ``latency`` the
    observed latency a step's budget is checked against (default: a book of its own, empty).
    """

    def __init__(self, config: RouterConfig, model_of: Callable[[str], str], ask: Ask,
                 latency: LatencyBook | None = None) -> None:
        self.config = config
        self.tiers: tuple[str, ...] = config.tier_names()
        self.latency = latency if latency is not None else LatencyBook.from_config(self.tiers, config.latency)
        self.rank: dict[str, int] = {name: i for i, name in enumerate(self.tiers)}
        self.model_of = model_of
        self.experiment = Experiment.from_config(config.experiment) if config.experiment is not None else None
        self.default, self.policies = self._build_policies(config, ask)
        self.coverage = StepCoverage(config.steps)
        pii = config.guards.pii
        self.pii = PiiGuard.from_config(pii) if pii is not None else None
        self.plan = lru_cache(maxsize=4096)(self._make_plan)
        """``plan(step, kind, hint)``: the :class:`StepPlan`, made once per key."""

    def plan_of(self, request: StepRequest) -> StepPlan:
        """The request's plan: its step's, or, in an experiment, its arm's (assigned by its thread or
        tenant, :meth:`~steproute.experiments.Experiment.assign`; none: the control, said once)."""
        plan = self.plan(request.step, request.kind, request.hint)
        if not plan.in_experiment:
            return plan
        experiment = self.experiment
        assert experiment is not None
        arm = experiment.assign(experiment.unit_of(request))
        if not arm.assigned:
            say_once(self, ("experiment", experiment.name), f"experiment {experiment.name!r}: calls with no "
                     f"{experiment.unit} id go to the control arm {arm.arm!r} and are left out of the arms' comparison")
        return self.plan(request.step, request.kind, request.hint, arm)

    def decider(self, plan: StepPlan, decision: Decision) -> Policy | None:
        """The policy object that made ``decision`` (named on ``decision.policy``): the plan's, or the
        ``default`` behind it when the plan's had no opinion; ``None``: a hint, a guard or a pin decided
        (example: :meth:`answered`)."""
        if plan.fixed is not None:
            return None
        if decision.policy == plan.policy.name:
            return plan.policy
        if not plan.policy_is_default and decision.policy == self.default.name:
            return self.default
        return None

    def armed(self, plan: StepPlan, decision: Decision) -> Decision:
        """``decision`` with the plan's experiment arm on it, its reason starting with the arm; an online policy
        (``bandit``) that made it remembers the decision followed, for its feedback."""
        remember = getattr(self.decider(plan, decision), "decided", None)
        if remember is not None:
            remember(decision)
        if plan.arm is None:
            return decision
        armed = object.__new__(Decision)  # as Decision.moved: a copy without re-running __init__ (per call)
        armed.__dict__.update(decision.__dict__, experiment=plan.arm, reason=f"{plan.arm.note}: {decision.reason}")
        return armed

    def _build_policies(self, config: RouterConfig, ask: Ask) -> tuple[Policy, dict[str, Policy]]:
        """Every policy of the config; one :class:`ConfigError` lists each that cannot be built
        (a missing or mismatched artefact) with its config path."""
        source = config._source
        context = PolicyContext(self.tiers, Path(source).parent if source else Path("."), ask)
        problems: list[ConfigProblem] = []
        built: dict[str, Policy] = {}
        arms = self.experiment.arms if self.experiment is not None else ()
        for path, cfg in [("default", config.default), *((f"steps.{n}", c) for n, c in config.steps.items()),
                          *((f"experiment.arms.{a.name}", a.config) for a in arms if a.config is not None)]:
            try:
                built[path] = build_policy(cfg, context)
            except (ValueError, ImportError) as exc:
                field = "artefact" if getattr(cfg, "artefact", None) else "policy"
                problems.append(ConfigProblem(f"{path}.{field}", str(exc)))
        if problems:
            raise ConfigError(problems, source=source)
        self.arm_policies = {path.removeprefix("experiment.arms."): built.pop(path) for path in list(built)
                             if path.startswith("experiment.arms.")}
        """Arm name → the policy of its configuration (arms with ``null`` keep the step's)."""
        return built.pop("default"), {path.removeprefix("steps."): p for path, p in built.items()}

    def answered(self, plan: StepPlan, decision: Decision) -> Decision:
        """The tier walk is over: the online policy that made ``decision`` (its ``answered`` hook, see
        :class:`~steproute.policies.base.Policy`) is told which tier answered, ``decision.tier``. What
        it says (its feedback goes to another tier than it decided) goes on the reason, and once in the log.

        Example: a ``rules`` step whose rules missed, decided by the ``bandit`` default, answered at ``strong``
            >>> from steproute.types import StepRequest
            >>> planner = Planner(RouterConfig(
            ...     tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini"}]},
            ...            "strong": {"models": [{"model": "openai/gpt-4o"}]}},
            ...     default={"policy": "bandit", "explore": 0},
            ...     steps={"s": {"policy": "rules", "rules": [{"when": {"keywords": ["prove"]}, "tier": "strong"}]}}), str, str)
            >>> request = StepRequest("s", [{"role": "user", "content": "hi"}])
            >>> plan = planner.plan_of(request)
            >>> decision = planner.decide(plan, request)
            >>> decision.tier, planner.decider(plan, decision) is planner.default
            ('fast', True)
            >>> planner.answered(plan, replace(decision, tier="strong")).reason.split("; ")[-1]
            "bandit: feedback on this call is learnt for tier 'strong', which answered (decided 'fast')"
        """
        hook = getattr(self.decider(plan, decision), "answered", None)
        note = hook(decision) if hook is not None else None
        if not note:
            return decision
        say_once(self, ("answered", decision.step, note), f"step {shown(decision.step)}: {note}")
        return replace(decision, reason=f"{decision.reason}; {note}")

    def learn(self, entry: Mapping[str, Any]) -> bool:
        """Hand a feedback entry to the online policies (``bandit``); whether one learnt from it."""
        policies = {id(p): p for p in [self.default, *self.policies.values(), *self.arm_policies.values()]}
        return any([p.learn(entry) for p in policies.values() if hasattr(p, "learn")])

    # -- plans -------------------------------------------------------------------------------

    def tier_rank(self, step: str, what: str, tier: str | None) -> int | None:
        if tier is None:
            return None
        try:
            return self.rank[tier]
        except KeyError:
            raise RoutingError(
                f"step {shown(step)}: {what} {shown(tier)} is not a tier (known: {', '.join(self.tiers)})") from None

    def _make_plan(self, step: str, declared_kind: str | None, hint: Hint, arm: ArmAssignment | None = None) -> StepPlan:
        kind = self.config.kind_of(step, declared_kind)
        entry = self.config.step_entry(step, kind)
        cfg = self.config.default if entry is None else self.config.steps[entry]
        policy = self.default if entry is None else self.policies[entry]
        own = entry is None
        arm_config = self.config.experiment.arms.get(arm.arm) if arm is not None and self.config.experiment else None
        if arm is not None and arm_config is not None:  # the arm's configuration replaces the step's
            cfg, policy, own = arm_config, self.arm_policies[arm.arm], False
        low, high = 0, len(self.tiers) - 1
        for what, bound in (("config min_tier", cfg.min_tier), ("min_tier hint", hint.min_tier)):
            rank = self.tier_rank(step, what, bound)
            if rank is not None:
                low = max(low, rank)
        for what, bound in (("config max_tier", cfg.max_tier), ("max_tier hint", hint.max_tier)):
            rank = self.tier_rank(step, what, bound)
            if rank is not None:
                high = min(high, rank)
        if low > high:
            raise RoutingError(
                f"step {step!r}: min_tier {self.tiers[low]!r} is above max_tier {self.tiers[high]!r}")
        fixed = None
        if hint.tier is not None:
            self.tier_rank(step, "tier hint", hint.tier)
            fixed = Choice(hint.tier, f"tier hint {hint.tier!r}")
        self.coverage.planned(step, entry)
        return StepPlan(kind, policy, own, low, high, fixed,
                        None if fixed is not None else self._pin_settings(step, cfg.pinning, hint), cfg.style,
                        cfg.tier_fallback, tuple(cfg.fallback_on), entry is None and bool(self.config.steps),
                        cfg.max_latency_ms, self.experiment is not None and self.experiment.covers(entry), arm)

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

    # -- deciding ----------------------------------------------------------------------------

    def pii_decision(self, plan: StepPlan, request: StepRequest) -> Decision | None:
        """The decision the PII guard forces (``None``: no personal data, or no guard)."""
        if self.pii is None:
            return None
        fired = self.pii.detect(request)
        if not fired:
            return None
        tier = self.pii.tier
        rank = self.rank[tier]
        if (plan.fixed is not None and plan.fixed.tier != tier) or not plan.low <= rank <= plan.high:
            raise RoutingError(f"step {request.step!r}: the PII guard ({', '.join(fired)}) requires tier {tier!r}, "
                               f"which the step's hints or bounds do not allow")
        return self.armed(plan, Decision(step=request.step, kind=plan.kind, tier=tier, model=self.model_of(tier),
                                         policy="guard", reason=f"pii guard: {', '.join(fired)} detected; tier {tier!r}",
                                         guard="pii:" + ",".join(fired), thread=request.thread))

    def decide(self, plan: StepPlan, request: StepRequest, *, speculative: bool = False) -> Decision:
        """:meth:`_decided`, the decision followed as it is (no pin): a latency move is said."""
        decision, note = self._decided(plan, request, speculative)
        decision = decision if note is None else self.latency.settle(decision, note, request.metadata, plan.max_latency_ms)
        return self.armed(plan, decision)

    def routed(self, plan: StepPlan, request: StepRequest,
               follow: Callable[[StepPlan, Decision, StepRequest], tuple[Decision, Any]]) -> tuple[Decision, Any]:
        """The decision, then ``follow`` (the thread's pin, :meth:`PinKeeper.follow`), then what the
        latency budget did said of the decision followed (:meth:`~steproute.latency.LatencyBook.settle`)."""
        decided, note = self._decided(plan, request, False)
        final, action = follow(plan, decided, request)
        return self.armed(plan, self.latency.settle(final, note, request.metadata, plan.max_latency_ms)), action

    async def arouted(self, plan: StepPlan, request: StepRequest,
                      follow: Callable[[StepPlan, Decision, StepRequest], Awaitable[tuple[Decision, Any]]]
                      ) -> tuple[Decision, Any]:
        """Async :meth:`routed`: a policy that calls a model runs off the event loop; a speculative
        cascade decides at its first tier (its ``start`` policy runs beside that tier's call, see
        :mod:`steproute._walk_drivers`)."""
        if plan.fixed is None and isinstance(plan.policy, CascadePolicy) and plan.policy.speculative:
            decided, note = self._decided(plan, request, True)
        elif getattr(plan.policy, "blocking", False):
            decided, note = await asyncio.to_thread(self._decided, plan, request, False)
        else:
            decided, note = self._decided(plan, request, False)
        final, action = await follow(plan, decided, request)
        return self.armed(plan, self.latency.settle(final, note, request.metadata, plan.max_latency_ms)), action

    def _decided(self, plan: StepPlan, request: StepRequest, speculative: bool) -> tuple[Decision, str | None]:
        """The tier hint, else the policy's choice (the default policy's when the step's has
        none; ``speculative``: the cascade's first tier, decided before its start policy),
        clamped to the plan's bounds, then moved up when the step's latency budget needs it
        (:meth:`~steproute.latency.LatencyBook.check`); the reason says each step. Also returns the
        latency move's note, said once the decision followed is known."""
        choice: Choice | None
        if plan.fixed is not None:
            choice, policy_name = plan.fixed, "hint"
        else:
            choice = plan.policy.first_choice() if speculative else plan.policy.choose(request)  # type: ignore[attr-defined]
            policy_name = plan.policy.name
            if choice is None and not plan.policy_is_default:
                choice = self.default.choose(request)
                policy_name = self.default.name
                if choice is not None:
                    choice = replace(choice, reason=f"step policy had no match; default: {choice.reason}")
        if choice is None:
            choice = Choice(self.tiers[plan.low], "no policy matched; cheapest allowed tier")
        rank = self.rank[choice.tier]
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
        tier, latency_from = self.tiers[rank], None
        moved = None if plan.fixed is not None else self.latency.check(  # a tier hint is never moved
            request.step, tier, request.metadata, plan.max_latency_ms, plan.high,
            plan.policy.tiers if isinstance(plan.policy, CascadePolicy) else None)
        if moved is not None:  # the decided tier's observed p95 does not fit the step's latency budget
            tier, reason, latency_from = moved[0], f"{reason}; {moved[1]}", tier
        return Decision(step=request.step, kind=plan.kind, tier=tier, model=self.model_of(tier), policy=policy_name,
                        reason=reason, score=choice.score, thread=request.thread, agent=request.agent,
                        latency_from=latency_from), (moved[1] if moved is not None else None)

    async def apii_decision(self, plan: StepPlan, request: StepRequest) -> Decision | None:
        """Async :meth:`pii_decision`: a long scan runs off the event loop."""
        if self.pii is not None and request.input_chars > PII_THREAD_CHARS:
            return await asyncio.to_thread(self.pii_decision, plan, request)
        return self.pii_decision(plan, request)
