"""Per-step decision counters, in process: ``steproute.decisions`` by step, final tier, whether a
cascade escalated, whether a tier fell back, and the outcome; a backend turns them into each
step's tier mix and escalation and fallback rates."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from steproute import DispatchError, RouterConfig, StepRequest, StepRouter
from steproute.testing import FunctionTransport, TierCall

TIERS = {"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}}


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple, float]:
    data = reader.get_metrics_data()
    found: dict[tuple, float] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        found[tuple(sorted(p.attributes.items()))] = p.value
    return found


def ask(step: str) -> StepRequest:
    return StepRequest(step, [{"role": "user", "content": "What is 6 * 7?"}])


def test_decisions_are_counted_by_step_tier_escalation_fallback_and_outcome():
    down = {"fast": False}

    def answer(call: TierCall) -> str:
        if call.step == "extract" and call.tier == "fast":
            return "I'm not sure, maybe 42."  # hedging: the cascade escalates
        if call.step == "calc" and call.tier == "fast" and down["fast"]:
            raise TimeoutError("down")
        if call.step == "broken":
            raise TimeoutError("down")
        return "42"

    reader = InMemoryMetricReader()
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", steps={
        "extract": {"policy": "cascade", "tiers": ["fast", "strong"], "signals": [{"signal": "hedging"}]}}),
        transport=FunctionTransport(answer), meter_provider=MeterProvider(metric_readers=[reader]))
    router.complete(ask("calc"))
    router.complete(ask("calc"))
    down["fast"] = True
    router.complete(ask("calc"))
    router.complete(ask("extract"))
    with pytest.raises(DispatchError):
        router.complete(ask("broken"))

    def key(step, tier, escalated, fell_back, outcome):
        return tuple(sorted({"steproute.step": step, "steproute.tier": tier, "steproute.escalated": escalated,
                             "steproute.fell_back": fell_back, "steproute.outcome": outcome}.items()))

    assert points(reader, "steproute.decisions") == {
        key("calc", "fast", False, False, "answered"): 2,
        key("calc", "strong", False, True, "answered"): 1,
        key("extract", "strong", True, False, "answered"): 1,
        key("broken", "strong", False, True, "failed"): 1,  # fell back to strong, which failed too
    }
