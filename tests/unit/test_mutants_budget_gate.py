"""Tests that kill mutmut mutants of steproute/_budget_gate.py (see docs/architecture.md, "Mutation testing").

The budget at the door of a call, through the real router: what a call reserves, when a
tenant over its budget is held to the cap tier or refused, and what the error, the ``route``
span and the decision log say.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import BudgetExceeded, DispatchError, Hint, RouterConfig, RoutingError, StepRequest, StepRouter
from steproute.decision_log import read_log
from steproute.testing import FunctionTransport, TierCall

FAST, STRONG = "openai/gpt-4o-mini", "openai/gpt-4o"
TIERS = {"fast": {"models": [{"model": FAST, "api_key": "sk-fast", "input_cost_per_token": 1e-7,
                              "output_cost_per_token": 1e-6}]},
         "strong": {"models": [{"model": STRONG, "api_key": "sk-strong", "input_cost_per_token": 1e-6,
                                "output_cost_per_token": 1e-5}]}}
TEXT = "How much are 3 notebooks at 4.50?"  # 33 characters: 33 // 3 + 16 + 1 = 28 input tokens reserved
EMAIL = "ann.lee@example.org"


def ask(text: str = TEXT, **kw: Any) -> StepRequest:
    return StepRequest("calc", [{"role": "user", "content": text}], tenant="acme", **kw)


class Gate:
    def __init__(self, tmp_path: Any, handler: Any = lambda call: "13.50", default: Any = "fast", **guards: Any) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.log_path = tmp_path / "decisions.jsonl"
        self.router = StepRouter(RouterConfig(tiers=TIERS, default=default, guards=guards), tracer_provider=provider,
                                 transport=FunctionTransport(handler), decision_log=self.log_path)

    def routes(self) -> list[dict[str, Any]]:
        return [dict(s.attributes) for s in self.exporter.get_finished_spans() if s.name.startswith("route")]

    def log(self) -> list[dict[str, Any]]:
        self.router.decision_log.flush()
        return read_log(self.log_path).decisions if self.log_path.exists() else []


def window() -> int:
    return int(time.time() // 86400)  # the default one-day window


def test_a_call_reserves_its_most_expensive_outcome_at_its_tiers_first_deployment(tmp_path):
    reserved: list[float] = []

    def answer(call: TierCall) -> str:
        reserved.append(gate.router.budget_store.usage("acme", window())[1])
        return "13.50"

    gate = Gate(tmp_path, answer, default="strong", budgets={"limits": {"acme": 100.0}})
    gate.router.complete(ask())  # no max_tokens: gpt-4o's most, 16,384 tokens (LiteLLM's map)
    gate.router.complete(ask(), max_tokens=100)
    assert reserved == [pytest.approx(28 * 1e-6 + 16384 * 1e-5), pytest.approx(28 * 1e-6 + 100 * 1e-5)]


def spend(gate: Gate) -> None:
    gate.router.complete(ask())  # under the tiny limit when it starts; spends past it


def test_a_refused_call_says_what_the_tenant_spent_on_the_span_and_in_the_log(tmp_path):
    gate = Gate(tmp_path, budgets={"limits": {"acme": 1e-9}})
    spend(gate)
    with pytest.raises(BudgetExceeded):
        gate.router.complete(ask())
    spent = gate.log()[0]["cost_usd"]
    reason = gate.routes()[-1]["steproute.decision.reason"]
    assert reason.endswith(f"; budget: tenant 'acme' spent ${spent:.6g} of $1e-09; refused")
    refused = gate.log()[-1]
    assert (refused["reason"], refused["guard"], refused["outcome"]) == (reason, "budget:refused", "refused")


@pytest.mark.parametrize("fixed", [{"hint": Hint(tier="fast")}, {"text": f"mail {EMAIL} the total"}])
def test_a_tier_fixed_at_the_cap_tier_by_a_hint_or_a_guard_is_capped_not_refused(tmp_path, fixed):
    gate = Gate(tmp_path, default="strong", pii={"tier": "fast"},
                budgets={"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"})
    spend(gate)
    capped = gate.router.complete(ask(**fixed)).decision
    assert (capped.tier, capped.model) == ("fast", FAST)
    assert capped.guard == ("budget:capped" if "hint" in fixed else "pii:email") and "held to 'fast'" in capped.reason


def test_a_guards_tier_above_the_cap_is_refused_and_the_error_says_why(tmp_path):
    gate = Gate(tmp_path, pii={"tier": "strong"},
                budgets={"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"})
    spend(gate)
    with pytest.raises(RoutingError) as raised:
        gate.router.complete(ask(f"mail {EMAIL} the total"))
    assert str(raised.value) == ("step 'calc': tenant 'acme' is over its budget, which holds it to tier 'fast'; "
                                 "the step's tier is fixed at 'strong'")
    reason = gate.routes()[-1]["steproute.decision.reason"]
    assert reason.endswith("; budget: tenant 'acme' is over its budget, which holds it to 'fast', below the tier "
                           "the step must use; refused")
    assert gate.log()[-1]["reason"] == reason and EMAIL not in reason


def test_a_cap_above_the_decided_tier_leaves_the_call_where_it_was(tmp_path):
    gate = Gate(tmp_path, budgets={"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "strong"})
    spend(gate)
    capped = gate.router.complete(ask()).decision
    assert (capped.tier, capped.model, capped.guard) == ("fast", FAST, "budget:capped")
    assert "held to 'strong'" in capped.reason


def test_a_capped_call_that_fails_is_booked_at_the_cap_tiers_model(tmp_path):
    def answer(call: TierCall) -> str:
        if call.tier == "fast" and gate.log():
            raise DispatchError(call.step, call.tier, ())  # the whole tier fails, no deployment named
        return "13.50"

    gate = Gate(tmp_path, answer, default="strong",
                budgets={"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"})
    spend(gate)
    with pytest.raises(DispatchError):
        gate.router.complete(ask())
    failed = gate.log()[-1]
    assert (failed["tier"], failed["model"], failed["guard"], failed["error"]) == (
        "fast", FAST, "budget:capped", "DispatchError")
    chat = [s for s in gate.exporter.get_finished_spans() if s.name.startswith("chat")][-1]
    assert (chat.attributes["gen_ai.request.model"], chat.attributes["error.type"]) == (FAST, "DispatchError")
