"""Guards before the policy: personal data forces a tier, tenant budgets cap or refuse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import BudgetExceeded, ConfigError, Hint, RouterConfig, RoutingError, StepRequest, StepRouter
from steproute.guards import BaseStoreBudgetStore, BudgetGuard, InMemoryBudgetStore, PiiGuard, iban_ok, luhn_ok
from tests.conftest import mock_tiers

EMAIL = "ann.lee@example.org"


def ask(text: str = "hello", **kw: Any) -> StepRequest:
    return StepRequest(kw.pop("step", "s"), [{"role": "user", "content": text}], **kw)


@pytest.mark.parametrize(("text", "fired"), [
    (f"Write to {EMAIL} please", ("email",)),
    ("Call me on +44 20 7946 0958.", ("phone",)),
    ("My number is (555) 123-4567", ("phone",)),
    ("Pay with 4111 1111 1111 1111", ("card",)),
    ("Pay with 4111-1111-1111-1112", ()),  # fails the Luhn check
    # a card after another number's digit group: the whole run fails Luhn, the card's groups pass
    ("EMP-123 4111 1111 1111 1111", ("card",)),
    ("ref 4111 1111 1111 1111 77", ("card",)),
    ("order 1234 5678 9012 3456 7", ()),  # no run of groups passes
    ("IBAN GB82 WEST 1234 5698 7654 32", ("iban",)),
    ("IBAN GB82 WEST 1234 5698 7654 33", ("phone",)),  # not an IBAN (mod-97), but its digits could dial
    ("Meet on 2026-11-22 at 10:30; 12 + 30 = 42; order 123456789; version 1.2.3.4", ()),
])
def test_detectors(text, fired):
    assert PiiGuard("x").detect(ask(text)) == fired


def test_checksums():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01") and not iban_ok("DE89")


def test_every_message_and_tool_argument_is_read_and_patterns_add_detectors():
    import re

    guard = PiiGuard("x", ("email",), (("employee", re.compile(r"EMP-\d{6}")),))
    request = StepRequest("s", [{"role": "system", "content": "hi"},
                                {"role": "assistant", "content": None, "tool_calls": [
                                    {"id": "1", "type": "function", "function": {"name": "f", "arguments":
                                                                                 f'{{"to": "{EMAIL}"}}'}}]},
                                {"role": "user", "content": [{"type": "text", "text": "file EMP-123456"}]}])
    assert guard.detect(request) == ("email", "employee")


def pii_router(**extra: Any) -> tuple[StepRouter, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = {"tiers": mock_tiers(), "default": "advanced", "guards": {"pii": {"tier": "fast"}}, **extra}
    return StepRouter(RouterConfig(**config), tracer_provider=provider, **({})), exporter


def test_personal_data_forces_the_guard_tier_and_the_text_is_never_recorded(tmp_path):
    router, exporter = pii_router()
    router.decision_log = None
    result = router.complete(ask(f"Summarise the thread with {EMAIL}", thread="t"))
    d = result.decision
    assert (d.tier, d.policy, d.guard, d.pinned) == ("fast", "guard", "pii:email", False)
    assert d.reason == "pii guard: email detected; tier 'fast'"
    assert router.pin_store.get("t", "s") is None  # a guarded call makes no pin
    spans = exporter.get_finished_spans()
    assert all(EMAIL not in json.dumps(dict(s.attributes or {}), default=str) for s in spans)
    (route,) = [s for s in spans if s.name == "route s"]
    assert route.attributes["steproute.guard"] == "pii:email"
    assert router.complete(ask("What is 12 + 30?")).decision.tier == "advanced"  # no personal data: the policy


def test_a_step_that_may_not_use_the_guard_tier_is_refused_not_leaked():
    router, _ = pii_router()
    with pytest.raises(RoutingError, match=r"PII guard \(email\) requires tier 'fast'"):
        router.complete(ask(EMAIL, hint=Hint(min_tier="standard")))
    with pytest.raises(RoutingError):
        router.complete(ask(EMAIL, hint=Hint(tier="advanced")))
    assert router.complete(ask(EMAIL, hint=Hint(tier="fast"))).decision.tier == "fast"


def test_guard_config_problems_name_their_path():
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(tiers=mock_tiers(), default="fast", guards={
            "pii": {"tier": "onprem", "detectors": ["email", "dna"], "patterns": {"emp": "EMP-(\\d"}},
            "budgets": {"limits": {"acme": -1}, "on_exceed": "cap"}})
    text = str(excinfo.value)
    assert "guards.pii.detectors[1]" in text and "guards.budgets" in text
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(tiers=mock_tiers(), default="fast", guards={
            "pii": {"tier": "onprem", "patterns": {"emp": "EMP-(\\d"}}, "budgets": {"limits": {}, "cap_tier": "gold"}})
    problems = [p.path for p in excinfo.value.problems]
    assert problems == ["guards.pii.tier", "guards.pii.patterns.emp", "guards.budgets.cap_tier"]


# -- budgets -------------------------------------------------------------------------------------


def budget_router(on_exceed: str = "refuse", limit: float = 5e-5, **extra: Any) -> StepRouter:
    budgets: dict[str, Any] = {"limits": {"acme": limit, "default": 1.0}, "on_exceed": on_exceed, **extra}
    return StepRouter(RouterConfig(tiers=mock_tiers(), default="advanced", guards={"budgets": budgets}))


def test_a_tenant_over_its_limit_is_refused_before_any_call():
    router = budget_router()
    costs = []
    with pytest.raises(BudgetExceeded) as excinfo:
        for _ in range(100):
            costs.append(router.complete(ask(tenant="acme"), max_tokens=20).cost_usd)
    err = excinfo.value
    assert (err.tenant, err.step, err.limit_usd) == ("acme", "s", 5e-5)
    assert err.spent_usd == pytest.approx(sum(costs))
    assert sum(costs) - max(costs) < 5e-5 <= sum(costs)  # stopped by the call that crossed the limit
    assert "tenant 'acme' has spent" in str(err) and "hello" not in str(err)
    window = router._budget.window()[0]
    assert router.budget_store.usage("acme", window) == (pytest.approx(sum(costs)), 0.0)
    assert router.complete(ask(tenant="other")).decision.tier == "advanced"  # the default limit is far off
    assert router.complete(ask()).decision.guard is None  # no tenant: no limit


def test_cap_holds_an_exhausted_tenant_to_the_cap_tier():
    router = budget_router("cap", cap_tier="fast", limit=1e-9)
    first = router.complete(ask(tenant="acme"))
    assert first.decision.tier == "advanced"  # under the limit when it started
    capped = router.complete(ask(tenant="acme")).decision
    assert (capped.tier, capped.guard) == ("fast", "budget:capped")
    assert "budget: tenant 'acme' spent" in capped.reason and "held to 'fast'" in capped.reason
    with pytest.raises(RoutingError, match="over its budget"):
        router.complete(ask(tenant="acme", hint=Hint(tier="advanced")))


def test_a_failed_call_releases_its_reservation():
    tiers = mock_tiers()
    tiers["advanced"]["models"][0]["mock_response"] = "litellm.InternalServerError"
    router = StepRouter(RouterConfig(tiers=tiers, default={"policy": "fixed", "tier": "advanced", "tier_fallback": "none"},
                                     guards={"budgets": {"limits": {"acme": 1.0}}}))
    with pytest.raises(Exception, match="every deployment"):
        router.complete(ask(tenant="acme"))
    store = router.budget_store
    assert isinstance(store, InMemoryBudgetStore)
    window = router._budget.window()[0]
    assert store._counters[("acme", window)] == [0.0, 0.0]


def test_windows_roll_over():
    now = [1000.0]
    guard = BudgetGuard({"acme": 1.0}, 100.0, InMemoryBudgetStore(), clock=lambda: now[0])
    hold = guard.admit(ask(tenant="acme"), 0.6).hold
    hold.settle(1.0)
    with pytest.raises(BudgetExceeded):
        guard.admit(ask(tenant="acme"), 0.1)
    now[0] = 1100.0
    assert guard.admit(ask(tenant="acme"), 0.1).hold is not None


def test_budgets_in_a_langgraph_store_behave_the_same():
    store = BaseStoreBudgetStore(InMemoryStore())
    assert store.reserve("acme", 1, 0.4, 1.0) == 0.0
    assert store.reserve("acme", 1, 0.4, 1.0) == 0.0
    store.settle("acme", 1, 0.4, 0.5)
    store.settle("acme", 1, 0.4, 0.5)
    assert store.usage("acme", 1) == (1.0, 0.0)
    assert store.reserve("acme", 1, 0.1, 1.0) is None
    store.store.put(("steproute", "budgets", "acme"), "2", {"spent": "lots"})  # a corrupt counter
    assert store.usage("acme", 2) == (0.0, 0.0) and store.reserve("acme", 2, 0.1, 1.0) == 0.0


def test_guards_hold_cascades_and_fallbacks_to_the_tier_they_set():
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = "I'm not sure."  # a cascade would escalate this
    router = StepRouter(RouterConfig(tiers=tiers, default={"policy": "cascade"}, guards={
        "pii": {"tier": "fast"}, "budgets": {"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"}}))
    guarded = router.complete(ask(f"mail {EMAIL}")).decision
    assert (guarded.tier, [a.tier for a in guarded.cascade]) == ("fast", ["fast"])
    router.complete(ask(tenant="acme"))  # spends the tiny budget (escalating to standard)
    capped = router.complete(ask(tenant="acme")).decision
    assert (capped.tier, capped.guard, [a.tier for a in capped.cascade]) == ("fast", "budget:capped", ["fast"])
    down = mock_tiers()
    down["fast"]["models"][0]["mock_response"] = "litellm.InternalServerError"
    router = StepRouter(RouterConfig(tiers=down, default="fast", guards={"pii": {"tier": "fast"}}))
    with pytest.raises(Exception, match="every deployment of tier 'fast'"):
        router.complete(ask(f"mail {EMAIL}"))  # no fallback out of the guard's tier
