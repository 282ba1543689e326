"""A call whose tier walk ends in an error is booked where the walk went, not where it was admitted.

A speculative start that restarted the call on a stronger tier, a fallback across tiers, a
cascade that escalated: when the last tier tried fails too, the decision log's entry and the
``route`` span name that tier and say, on the reason, each tier tried and why none answered.
Driven through the real router with :class:`~steproute.testing.FunctionTransport`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import DispatchError, RouterConfig, StepRequest, StepRouter
from steproute.testing import FunctionTransport, Reply, TierCall
from steproute.types import Usage

FAST, STRONG = "openai/gpt-4o-mini", "openai/gpt-4o"
TIERS = {"fast": {"models": [{"model": FAST, "api_key": "sk-fast"}]},
         "strong": {"models": [{"model": STRONG, "api_key": "sk-strong"}]}}
USAGE = Usage(11, 7)


def strong_is_down(call: TierCall) -> Reply:
    if call.tier == "strong":
        raise TimeoutError("strong is down")
    return Reply("I'm not sure, I cannot say.", usage=USAGE)


def everything_is_down(call: TierCall) -> Reply:
    raise TimeoutError(f"{call.tier} is down")


class Booked:
    """A router over ``handler`` whose decision log and spans are read back."""

    def __init__(self, tmp_path: Path, handler: Any, step: dict[str, Any]) -> None:
        self.path = tmp_path / "decisions.jsonl"
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.router = StepRouter(RouterConfig(tiers=TIERS, default="fast", steps={"calc": step}),
                                 transport=FunctionTransport(handler), tracer_provider=provider,
                                 decision_log=self.path)

    def entry(self) -> dict[str, Any]:
        self.router.decision_log.close()
        (line,) = self.path.read_text().splitlines()
        return json.loads(line)

    def route(self) -> dict[str, Any]:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == "route calc"]
        return dict(span.attributes)


def ask(text: str) -> StepRequest:
    return StepRequest("calc", [{"role": "user", "content": text}])


def test_a_call_that_fails_after_a_speculative_restart_is_booked_at_the_tier_it_restarted_on(tmp_path):
    start = {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "strong"}], "fallback": "fast"}
    booked = Booked(tmp_path, strong_is_down, {"policy": "cascade", "tiers": ["fast", "strong"],
                                               "signals": [{"signal": "hedging"}], "start": start,
                                               "speculative": True})
    with pytest.raises(DispatchError):
        asyncio.run(booked.router.acomplete(ask("prove it")))
    entry, route = booked.entry(), booked.route()
    assert (entry["tier"], entry["model"], entry["error"]) == ("strong", STRONG, "DispatchError")
    assert "speculative: rules picked 'strong', the 'fast' call was cancelled" in entry["reason"]
    assert "no tier answered: fast → strong (fast: speculative call cancelled; strong: failed: " in entry["reason"]
    assert [(a["tier"], a["reason"][:6]) for a in entry["cascade"]] == [("fast", "specul"), ("strong", "failed")]
    assert entry["escalated_from"] is None  # a cancelled speculative call is no escalation
    assert (route["steproute.tier"], route["steproute.decision.reason"]) == ("strong", entry["reason"])
    assert list(route["steproute.cascade.chain"]) == ["fast", "strong"]


@pytest.mark.parametrize("sync", [True, False])
def test_a_cascade_that_escalated_and_then_failed_says_why_each_tier_did_not_answer(tmp_path, sync):
    booked = Booked(tmp_path, strong_is_down, {"policy": "cascade", "tiers": ["fast", "strong"],
                                               "signals": [{"signal": "hedging"}]})
    with pytest.raises(DispatchError):
        booked.router.complete(ask("3 x 4.50?")) if sync else asyncio.run(booked.router.acomplete(ask("3 x 4.50?")))
    entry, route = booked.entry(), booked.route()
    assert (entry["tier"], entry["model"], entry["escalated_from"], entry["attempts"]) == ("strong", STRONG, "fast", 2)
    assert "no tier answered: fast → strong (fast: hedging" in entry["reason"]
    assert "; strong: failed: openai/gpt-4o: " in entry["reason"]
    assert [(a["tier"], a["model"], a["accepted"]) for a in entry["cascade"]] == [
        ("fast", FAST, False), ("strong", STRONG, None)]
    assert entry["fallback_from"] is None  # strong failed, but nothing fell back: fast answered and was rejected
    assert entry["cost_usd"] > 0  # the rejected answer was paid for
    assert (route["steproute.tier"], route["steproute.escalated_from"]) == ("strong", "fast")
    assert route["steproute.decision.reason"] == entry["reason"]


@pytest.mark.parametrize("sync", [True, False])
def test_a_fallback_that_failed_on_every_tier_names_each(tmp_path, sync):
    booked = Booked(tmp_path, everything_is_down, {"policy": "fixed", "tier": "fast", "tier_fallback": "stronger"})
    with pytest.raises(DispatchError):
        booked.router.complete(ask("hi")) if sync else asyncio.run(booked.router.acomplete(ask("hi")))
    entry, route = booked.entry(), booked.route()
    assert (entry["tier"], entry["model"], entry["fallback_from"]) == ("strong", STRONG, "fast")
    assert "no tier answered: fast → strong (fast: failed: openai/gpt-4o-mini: " in entry["reason"]
    assert "; strong: failed: openai/gpt-4o: " in entry["reason"]
    assert "cascade" not in entry  # not a cascade: its attempts are the failed_attempts list
    assert [a["model"] for a in entry["failed_attempts"]] == [FAST, STRONG]
    assert (route["steproute.tier"], route["steproute.fallback.from"]) == ("strong", "fast")
    assert route["steproute.decision.reason"] == entry["reason"]


def test_a_call_whose_only_tier_failed_keeps_its_decision(tmp_path):
    booked = Booked(tmp_path, everything_is_down, {"policy": "fixed", "tier": "fast", "tier_fallback": "none"})
    decided = booked.router.decide(ask("hi"))
    with pytest.raises(DispatchError):
        booked.router.complete(ask("hi"))
    entry = booked.entry()
    assert (entry["tier"], entry["model"], entry["fallback_from"]) == ("fast", FAST, None)
    assert entry["reason"] == decided.reason and "no tier answered" not in entry["reason"]
    assert "cascade" not in entry and [a["model"] for a in entry["failed_attempts"]] == [FAST]
    assert booked.route()["steproute.tier"] == "fast"


def test_a_cascade_whose_every_tier_failed_fell_back_from_the_first(tmp_path):
    booked = Booked(tmp_path, everything_is_down, {"policy": "cascade", "tiers": ["fast", "strong"],
                                                   "signals": [{"signal": "hedging"}]})
    with pytest.raises(DispatchError):
        booked.router.complete(ask("3 x 4.50?"))
    entry = booked.entry()
    assert (entry["tier"], entry["fallback_from"], entry["escalated_from"], entry["attempts"]) == (
        "strong", "fast", None, 2)
    assert [(a["tier"], a["reason"][:7]) for a in entry["cascade"]] == [("fast", "failed:"), ("strong", "failed:")]
    assert booked.route()["steproute.fallback.from"] == "fast"
