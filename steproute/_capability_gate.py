"""The capability filter at the door of a call: the decided tier if it can serve the call,
else the next stronger one that can (never past the step's ``max_tier``; a tier fixed by a
hint or a guard never moves), else :class:`~steproute.capabilities.CapabilityError` before any
provider call. What the call's walk may not use (whole tiers, single deployments) rides along
as :class:`Capable`; the decision's reason, the ``route`` span and the log (once) say why."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from steproute._call import CallRecord
from steproute._plan import StepPlan
from steproute.capabilities import CapabilityError, Needs, filter_of, needs_of, phrase
from steproute.config import RouterConfig
from steproute.dispatch import Dispatcher
from steproute.errors import say_once, shown
from steproute.latency import DEADLINE_KEY, budget_of, choose_tier
from steproute.telemetry import CAPABILITY_NEEDS, CAPABILITY_SKIPPED
from steproute.tier_client import TierClient
from steproute.types import Decision, StepRequest

__all__ = ["CapabilityGate", "Capable"]


@dataclass(frozen=True)
class Capable:
    """What one call's walk may use: the tiers it must skip, and the tiers where only some
    deployments can serve it (their positions)."""

    skip: frozenset[str]
    subsets: Mapping[str, tuple[int, ...]]

    def client(self, dispatcher: Dispatcher, tier: str) -> TierClient:
        """The client of ``tier`` for this call: only its deployments that can serve it."""
        subset = self.subsets.get(tier)
        return dispatcher.tier(tier) if subset is None else dispatcher.subset(tier, subset)


class CapabilityGate:
    """Checks one router's calls against its deployments' facts (resolved here, once)."""

    def __init__(self, config: RouterConfig, dispatcher: Dispatcher, tiers: tuple[str, ...]) -> None:
        self._dispatcher = dispatcher
        self._tiers = tiers
        self._rank = {t: i for i, t in enumerate(tiers)}
        self._verdicts: dict[tuple[Any, ...], _Verdict | None] = {}
        self._said: set[tuple[str, ...]] = set()
        self.filter = filter_of(config)
        for name, tier in config.tiers.items():
            for i, model in enumerate(tier.models):
                unknown = self.filter.unknown(name, i)
                if unknown:
                    said = f"tiers.{name}.models[{i}]" if model.model_from_env else model.model
                    say_once(self, ("capabilities", said),
                             f"steproute: LiteLLM has no model information for {said}: its {', '.join(unknown)} "
                             f"are unknown and counted as capable; say what it can serve with capabilities: "
                             f"on tiers.{name}.models[{i}]")

    def admit(self, record: CallRecord, plan: StepPlan, request: StepRequest, decision: Decision,
              params: Mapping[str, Any]) -> tuple[Decision, Capable | None]:
        """The decision the call follows and what its walk may use (``None``: everything).

        Raises:
            CapabilityError: no tier the call may use can serve it (the record is closed as failed).
        """
        judged = self._judge(plan, request, decision, params)
        if judged is None:
            return decision, None
        needs, start, end, fixed, verdict = judged
        record.annotate(verdict.attributes)
        if verdict.chosen is None:
            capability = verdict.skipped[decision.tier]
            error = CapabilityError(request.step, capability, self._tiers[start:end], phrase(capability, needs),
                                    fixed=fixed)
            record.unserved(replace(decision, reason=f"{decision.reason}; {error}"))
            self._say(("unserved", request.step, decision.tier, capability), lambda: f"steproute: {error}")
            record.failed(error)
            raise error
        if verdict.moved:
            needed = ",".join(dict.fromkeys(verdict.skipped.values()))  # once per step, tiers and capability
            self._say(("moved", request.step, decision.tier, verdict.chosen, needed), lambda: (
                f"steproute: step {shown(request.step)}: {verdict.moved}; the call went to tier {verdict.chosen!r}"))
        chosen, model, reason = verdict.chosen, verdict.model, decision.reason + verdict.reason
        timed = self._in_time(plan, request, verdict, end) if verdict.moved else None
        if timed is not None:  # the tier moved to is too slow for the step's latency budget
            chosen, note = timed
            subset = verdict.capable.subsets.get(chosen) if verdict.capable is not None else None
            model = self._dispatcher.deployments(chosen)[subset[0] if subset else 0].model
            reason += f"; {note}"
            self._say(("capability-latency", request.step, verdict.chosen, chosen),
                      lambda: f"steproute: step {shown(request.step)}: after the capability move, {note}")
        return decision.moved(chosen, model, reason), verdict.capable

    def _in_time(self, plan: StepPlan, request: StepRequest, verdict: _Verdict, end: int) -> tuple[str, str] | None:
        """After a move: the cheapest capable tier whose observed p95 fits the step's latency
        budget, else the fastest, and the reason's note (``None``: the tier moved to fits, or no budget)."""
        deadline = request.metadata.get(DEADLINE_KEY) if request.metadata else None
        if (plan.max_latency_ms is None and deadline is None) or verdict.chosen is None:
            return None
        book = self._dispatcher.latency
        try:
            budget = budget_of(plan.max_latency_ms, deadline, book.wall_clock())
        except ValueError:  # the decision's latency check has said the deadline is ignored
            budget = budget_of(plan.max_latency_ms, None, 0.0)
        if budget is None:
            return None
        candidates = tuple(t for t in self._tiers[self._rank[verdict.chosen]:end] if t not in verdict.skipped)
        now = book.clock()
        p95 = {t: (q[1] if (q := book.quantiles(t, now)) is not None else None) for t in candidates}
        own = p95[verdict.chosen]
        if own is None or own <= budget[0]:
            return None
        return choose_tier(candidates, p95, budget[0], budget[1], judged=False)

    def target(self, plan: StepPlan, request: StepRequest, decision: Decision,
               params: Mapping[str, Any]) -> tuple[str, int]:
        """The tier :meth:`admit` will send the call to and the position of its first deployment
        that can serve it, without booking anything: the budget reserves at it."""
        judged = self._judge(plan, request, decision, params)
        verdict = None if judged is None else judged[4]
        if judged is None or verdict is None or verdict.chosen is None:
            return decision.tier, 0
        timed = self._in_time(plan, request, verdict, judged[2]) if verdict.moved else None
        chosen: str = verdict.chosen if timed is None else timed[0]
        subset = verdict.capable.subsets.get(chosen) if verdict.capable is not None else None
        return chosen, subset[0] if subset else 0

    def _judge(self, plan: StepPlan, request: StepRequest, decision: Decision, params: Mapping[str, Any],
               ) -> tuple[Needs, int, int, bool | str, _Verdict] | None:
        """What the call needs, the tiers it may use (``start:end``), what fixed its tier, the verdict."""
        needs = needs_of(request.messages, params)
        if self.filter.trivial(needs):
            return None
        start = self._rank[decision.tier]
        fixed = _fixed_by(plan, decision)
        end = start + 1 if fixed else max(plan.high, start) + 1
        if self.filter.windows_fit(needs):  # the verdict depends on the kinds of need only: made once per kind
            key = (start, end, needs.vision, needs.audio, needs.tools, needs.response_schema)
            verdict = self._verdicts.get(key)
            if verdict is None:
                verdict = self._verdicts[key] = self._verdict(self._tiers[start:end], needs)
        else:
            verdict = self._verdict(self._tiers[start:end], needs)
        return None if verdict is None else (needs, start, end, fixed, verdict)

    def _say(self, key: tuple[str, ...], message: Callable[[], str]) -> None:
        if key not in self._said:  # the usual case, a set lookup; say_once keeps it once across threads
            self._said.add(key)
            say_once(self, key, message())

    def _lacks(self, capability: str, tiers: list[str], needs: Needs) -> str:
        """Why ``tiers`` cannot serve the call, for the reason: ``needs vision: no deployment of
        'fast' has it``, ``max_tokens 20000 exceeds max_output_tokens of 'fast' (4096)``."""
        if capability != "output":
            return f"{phrase(capability, needs)}: no deployment of {' or '.join(map(repr, tiers))} has it"
        facts = [(t, self.filter.facts[t]) for t in tiers]
        asked = needs.output_tokens or max(f.default_output or 0 for _, fs in facts for f in fs)
        limits = ", ".join(f"{t!r} ({max(f.max_output_tokens or 0 for f in fs)})" for t, fs in facts)
        return f"max_tokens {asked} exceeds max_output_tokens of {limits}"

    def _verdict(self, candidates: tuple[str, ...], needs: Needs) -> _Verdict | None:
        """Which of ``candidates`` (the decided tier first) can serve ``needs`` (``None``: all of them, whole)."""
        skipped: dict[str, str] = {}
        subsets: dict[str, tuple[int, ...]] = {}
        partial: dict[str, tuple[tuple[int, str], ...]] = {}
        for tier in candidates:
            ok, lacking = self.filter.serving(tier, needs)
            if not ok:
                skipped[tier] = lacking[0][1]
            elif lacking:
                subsets[tier], partial[tier] = ok, lacking
        if not skipped and not subsets:
            return None
        needed = tuple(dict.fromkeys([*skipped.values(), *(c for ls in partial.values() for _, c in ls)]))
        attributes = {CAPABILITY_NEEDS: needed, CAPABILITY_SKIPPED: tuple(skipped)}
        chosen = next((t for t in candidates if t not in skipped), None)
        if chosen is None:
            return _Verdict(attributes, skipped, None)
        reason = moved = ""
        by_need: dict[str, list[str]] = {}
        for tier in candidates[:candidates.index(chosen)]:
            by_need.setdefault(skipped[tier], []).append(tier)
        if by_need:
            moved = "; ".join(self._lacks(c, ts, needs) for c, ts in by_need.items())
            reason = f"; {moved}; tier {chosen!r}"
        deployments = self._dispatcher.deployments(chosen)
        lacking_here = partial.get(chosen, ())
        for capability in dict.fromkeys(c for _, c in lacking_here):
            models = ", ".join(deployments[i].model for i, c in lacking_here if c == capability)
            reason += f"; {phrase(capability, needs)}: skipped {models} of {chosen!r}"
        model = deployments[subsets[chosen][0]].model if chosen in subsets else deployments[0].model
        return _Verdict(attributes, skipped, chosen, model, reason, moved, Capable(frozenset(skipped), subsets))


def _fixed_by(plan: StepPlan, decision: Decision) -> str:
    """What fixed the call's tier ('' when nothing did): a tier hint, the PII guard, a budget cap."""
    if plan.fixed is not None:
        return "a `tier` hint"
    guard = decision.guard or ""
    if not guard:
        return ""
    return {"pii": "the PII guard", "budget": "a budget cap"}.get(guard.split(":")[0], f"the guard {guard!r}")


@dataclass(frozen=True)
class _Verdict:
    """What the filter found for one kind of call (see :meth:`CapabilityGate._verdict`)."""

    attributes: dict[str, Any]
    """For the ``route`` span: what the call needed that some deployment lacks, the tiers skipped."""
    skipped: Mapping[str, str]
    """Tier → the capability none of its deployments has."""
    chosen: str | None
    """The tier the call goes to (``None``: none can serve it)."""
    model: str = ""
    reason: str = ""
    """Added to the decision's reason."""
    moved: str = ""
    """Why the call left its decided tier ('' when it did not), for the log."""
    capable: Capable | None = None
