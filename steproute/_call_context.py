"""What a call's tier walks (cross-tier fallback, the cascade) use of the router that made
them: the configuration, the tiers in order, the dispatcher, the pins, styling, the
baseline's price and the capability filter. One per router; the walks never see the router itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from steproute._capability_gate import CapabilityGate
from steproute._pin_keeper import PinKeeper
from steproute._plan import StepPlan
from steproute._style import styled
from steproute.config import RouterConfig
from steproute.dispatch import Dispatcher
from steproute.pricing import Price, call_cost
from steproute.shadow import ShadowRunner
from steproute.types import Decision, StepRequest, Usage

__all__ = ["CallContext"]


@dataclass(frozen=True, eq=False)
class CallContext:
    config: RouterConfig
    tiers: tuple[str, ...]
    rank: Mapping[str, int]
    dispatcher: Dispatcher
    pins: PinKeeper
    baseline_price: Price
    shadow: ShadowRunner | None = None
    """The steps' shadow calls (``shadow:`` entries), off the hot path."""
    answered: Callable[[StepPlan, Decision], Decision] | None = None
    """Once a call's walk is over: tells the online policy that decided which tier answered, and returns the
    decision with what it said (:meth:`steproute._plan.Planner.answered`)."""
    capabilities: CapabilityGate = field(init=False)
    """The capability filter: every deployment's facts, resolved once here, as the router is built."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", CapabilityGate(self.config, self.dispatcher, self.tiers))

    def style(self, plan: StepPlan, request: StepRequest, decision: Decision,
              params: dict[str, Any]) -> tuple[Sequence[Mapping[str, Any]], dict[str, Any]]:
        """One attempt's messages and parameters at ``decision.tier`` (see :mod:`steproute._style`)."""
        return styled(self.config, plan.style, request, decision, params)

    def baseline_cost(self, usage: Usage) -> float:
        """``usage`` priced at the baseline tier's first deployment."""
        return call_cost(self.baseline_price, usage)
