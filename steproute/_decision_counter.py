"""The ``steproute.decisions`` counter: one per routed call, by step, the tier that answered,
whether a cascade escalated, whether a tier fell back, and the outcome. A metrics backend turns
it into each step's tier mix and escalation and fallback rates over time (docs/drift.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steproute.types import Decision

__all__ = ["ESCALATED", "FELL_BACK", "OUTCOME", "count_decision", "decision_counter"]

ESCALATED = "steproute.escalated"
FELL_BACK = "steproute.fell_back"
OUTCOME = "steproute.outcome"


def decision_counter(meter: Any) -> Any:
    """The counter, made on ``meter`` (a router's :class:`~steproute.telemetry.Telemetry` makes one)."""
    return meter.create_counter("steproute.decisions", unit="{decision}",
                                description="Routed calls by step, final tier, escalated, fell back and outcome")


def count_decision(counter: Any, decision: Decision, outcome: str) -> None:
    """Count one call: ``outcome`` is ``answered``, ``abandoned`` (a stream stopped by its
    consumer) or ``failed``.

    Example:
        >>> from opentelemetry.metrics import NoOpMeter
        >>> from steproute.types import Decision
        >>> decision = Decision("plan", None, "fast", "openai/gpt-4o-mini", "fixed", "fixed tier 'fast'")
        >>> count_decision(decision_counter(NoOpMeter("x")), decision, "answered")
    """
    counter.add(1, {"steproute.step": decision.step, "steproute.tier": decision.tier,
                    ESCALATED: decision.escalated_from is not None, FELL_BACK: decision.fallback_from is not None,
                    OUTCOME: outcome})
