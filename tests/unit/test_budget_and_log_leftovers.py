"""Issue 17, "nothing silent, nothing lost": budget refusals in the decision log and on the span,
budgets settled from the provider's usage (not a guess), store-backed budgets for any tenant id,
no environment-sourced model name in a warning or error, a bounded ``read_log`` line, and
``StoreLockError`` in the public API."""

from __future__ import annotations

import asyncio
import json
import logging
import tracemalloc
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import steproute
from steproute import (
    BudgetExceeded,
    ConfigError,
    Hint,
    RouterConfig,
    RoutingError,
    StepRequest,
    StepRouter,
    decision_log,
)
from steproute.decision_log import read_log
from steproute.guards import BaseStoreBudgetStore, estimate_cost
from steproute.pinning import decode_store_label
from steproute.report import format_table, summarise
from tests.conftest import mock_tiers

ODD_TENANTS = ["a.b", "user@x.com", "a/b", "with space", "", ".", "%", "%2E", "a\x00b", "ünïcode ✓"]


def ask(text: str = "hello", **kw: Any) -> StepRequest:
    return StepRequest(kw.pop("step", "s"), [{"role": "user", "content": text}], **kw)


def traced(**config: Any) -> tuple[StepRouter, InMemorySpanExporter, Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log = config.pop("decision_log", None)
    config.setdefault("tiers", mock_tiers())
    return StepRouter(RouterConfig(**config), tracer_provider=provider, decision_log=log), exporter, log


def spent(router: StepRouter, tenant: str = "acme") -> tuple[float, float]:
    return router.budget_store.usage(tenant, router._budget.window()[0])


# -- 1. a refused call is in the decision log, on its span, and in the report ----------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_budget_refusal_is_logged_and_shown_on_the_route_span(tmp_path, mode):
    router, exporter, log = traced(default="advanced", decision_log=tmp_path / "d.jsonl",
                                   guards={"budgets": {"limits": {"acme": 1e-9}}})
    router.complete(ask(tenant="acme"))  # under the limit when it started: spends it
    with pytest.raises(BudgetExceeded):
        if mode == "sync":
            router.complete(ask(tenant="acme"))
        else:
            asyncio.run(router.acomplete(ask(tenant="acme")))
    router.decision_log.close()
    contents = read_log(log)
    assert not contents.problems
    answered, refused = contents.decisions
    assert answered.get("outcome") is None and answered["tier"] == "advanced"
    assert (refused["outcome"], refused["error"], refused["guard"]) == ("refused", "BudgetExceeded", "budget:refused")
    assert (refused["step"], refused["tenant"], refused["cost_usd"]) == ("s", "acme", 0.0)
    assert "budget: tenant 'acme' spent $" in refused["reason"] and "refused" in refused["reason"]
    assert refused["id"] != answered["id"]
    routes = [s for s in exporter.get_finished_spans() if s.name == "route s"]
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert len(routes) == 2 and len(chats) == 1  # the refused call made no model call
    span = dict(routes[1].attributes or {})
    assert span["steproute.guard"] == "budget:refused" and span["error.type"] == "BudgetExceeded"
    assert span["steproute.decision.id"] == refused["id"] and "refused" in span["steproute.decision.reason"]


def test_the_report_counts_refusals_per_step_and_tenant(tmp_path):
    router, _, log = traced(default="advanced", decision_log=tmp_path / "d.jsonl",
                            guards={"budgets": {"limits": {"acme": 1e-9, "beta": 1e-9}}})
    for tenant, step in [("acme", "plan"), ("acme", "plan"), ("acme", "answer"), ("beta", "plan"), ("beta", "plan")]:
        try:
            router.complete(ask(tenant=tenant, step=step))
        except BudgetExceeded:
            pass
    router.decision_log.close()
    plan, answer, total = summarise(read_log(log))
    assert (plan.step, plan.calls, plan.refused, plan.errors) == ("plan", 2, 2, 0)
    assert (answer.calls, answer.refused) == (0, 1)
    assert (total.calls, total.refused, dict(total.refused_tenants)) == (2, 3, {"acme": 2, "beta": 1})
    assert dict(total.tiers) == {"advanced": 2}  # a refused call used no tier
    table = format_table([plan, answer, total])
    assert table.splitlines()[0].split()[-1] == "refused"
    assert "refused by budget: tenant 'acme' 2, tenant 'beta' 1" in table


def test_a_report_without_refusals_keeps_its_columns(tmp_path):
    router, _, log = traced(default="fast", decision_log=tmp_path / "d.jsonl")
    router.complete(ask())
    router.decision_log.close()
    table = format_table(summarise(read_log(log)))
    assert "refused" not in table


def test_the_cap_tier_says_so_on_the_reason_the_span_and_the_log(tmp_path):
    router, exporter, log = traced(default="advanced", decision_log=tmp_path / "d.jsonl",
                                   guards={"budgets": {"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"}})
    router.complete(ask(tenant="acme"))
    capped = router.complete(ask(tenant="acme")).decision
    router.decision_log.close()
    assert (capped.tier, capped.guard) == ("fast", "budget:capped") and "held to 'fast'" in capped.reason
    entry = read_log(log).decisions[-1]
    assert (entry["tier"], entry["guard"], entry["reason"]) == ("fast", "budget:capped", capped.reason)
    route = [s for s in exporter.get_finished_spans() if s.name == "route s"][-1]
    assert route.attributes["steproute.guard"] == "budget:capped"
    assert route.attributes["steproute.decision.reason"] == capped.reason


def test_a_fixed_tier_above_the_cap_is_a_logged_refusal(tmp_path):
    router, exporter, log = traced(default="advanced", decision_log=tmp_path / "d.jsonl",
                                   guards={"budgets": {"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"}})
    router.complete(ask(tenant="acme"))
    with pytest.raises(RoutingError, match="over its budget"):
        router.complete(ask(tenant="acme", hint=Hint(tier="advanced")))
    router.decision_log.close()
    refused = read_log(log).decisions[-1]
    assert (refused["outcome"], refused["error"], refused["tier"]) == ("refused", "RoutingError", "advanced")
    assert "holds it to 'fast'" in refused["reason"] and refused["reason"].endswith("; refused")
    route = [s for s in exporter.get_finished_spans() if s.name == "route s"][-1]
    assert route.attributes["steproute.guard"] == "budget:refused" and route.attributes["error.type"] == "RoutingError"
    assert summarise(read_log(log))[-1].refused == 1


# -- 2. the budget is settled from the provider's usage --------------------------------------------


def answer(usage: bool, completion_tokens: int = 40) -> dict[str, Any]:
    response: dict[str, Any] = {"model": "gpt-4o", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "word " * 40}, "finish_reason": "stop"}]}
    if usage:
        response["usage"] = {"prompt_tokens": 10, "completion_tokens": completion_tokens,
                             "total_tokens": 10 + completion_tokens}
    return response


def budgeted(response: Any, **config: Any) -> StepRouter:
    tiers = mock_tiers()
    tiers["advanced"]["models"][0]["mock_response"] = response
    config.setdefault("default", {"policy": "fixed", "tier": "advanced", "tier_fallback": "none"})
    return StepRouter(RouterConfig(tiers=tiers, guards={"budgets": {"limits": {"acme": 10.0}}}, **config))


def test_a_call_without_usage_made_while_the_app_handles_an_error_is_charged_the_estimate():
    router = budgeted(answer(usage=False))
    try:
        raise KeyError("the app's own error, being handled")
    except KeyError:
        result = router.complete(ask(tenant="acme"), max_tokens=300)  # e.g. a retry in an except block
    assert result.cost_usd == 0.0
    price = router._dispatcher.first_deployment("advanced").price
    estimate = estimate_cost(price, ask(tenant="acme"), {"max_tokens": 300})
    assert spent(router) == (pytest.approx(estimate), 0.0)


def test_a_call_with_usage_made_while_the_app_handles_an_error_is_charged_its_cost():
    router = budgeted(answer(usage=True))
    try:
        raise KeyError("the app's own error, being handled")
    except KeyError:
        result = router.complete(ask(tenant="acme"), max_tokens=300)
    assert result.cost_usd > 0
    assert spent(router) == (pytest.approx(result.cost_usd), 0.0)


def test_a_cascade_whose_answer_has_no_usage_is_charged_at_least_the_estimate():
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = {**answer(usage=True), "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "I'm not sure."}, "finish_reason": "stop"}]}
    tiers["standard"]["models"][0]["mock_response"] = answer(usage=False)
    router = StepRouter(RouterConfig(tiers=tiers, default={"policy": "cascade"},
                                     guards={"budgets": {"limits": {"acme": 10.0}}}))
    result = router.complete(ask(tenant="acme"), max_tokens=300)
    assert [a.tier for a in result.decision.cascade] == ["fast", "standard"]
    assert 0 < result.cost_usd  # the rejected first attempt reported its usage; the answer did not
    fast = router._dispatcher.first_deployment("fast").price
    estimate = estimate_cost(fast, ask(tenant="acme"), {"max_tokens": 300})
    total, reserved = spent(router)
    assert reserved == 0.0 and total >= estimate > result.cost_usd


@pytest.mark.parametrize("usage", [True, False])
def test_async_calls_settle_from_usage(usage):
    router = budgeted(answer(usage=usage))
    price = router._dispatcher.first_deployment("advanced").price
    estimate = estimate_cost(price, ask(tenant="acme"), {"max_tokens": 300})
    result = asyncio.run(router.acomplete(ask(tenant="acme"), max_tokens=300))
    assert spent(router)[0] == pytest.approx(result.cost_usd if usage else estimate)
    assert (result.cost_usd > 0) == usage


# -- 3. store-backed budgets take any tenant id ---------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_store_backed_budgets_work_for_any_tenant_id(kind, tmp_path):
    def check(store):
        budgets = BaseStoreBudgetStore(store)
        for i, tenant in enumerate(ODD_TENANTS):
            assert budgets.reserve(tenant, 7, 0.5, limit=1.0) == 0.0, repr(tenant)
            budgets.settle(tenant, 7, 0.5, 0.01 * (i + 1))
        for i, tenant in enumerate(ODD_TENANTS):  # each tenant has its own counter
            assert budgets.usage(tenant, 7) == (pytest.approx(0.01 * (i + 1)), 0.0), repr(tenant)
        found = {decode_store_label(item.namespace[-1]) for item in store.search(("steproute", "budgets"), limit=100)}
        assert found == set(ODD_TENANTS)

    if kind == "memory":
        check(InMemoryStore())
    else:
        with SqliteStore.from_conn_string(str(tmp_path / "budgets.sqlite")) as store:
            store.setup()
            check(store)


def test_plain_tenant_ids_keep_their_stored_counters():
    store = InMemoryStore()
    store.put(("steproute", "budgets", "acme"), "7", {"spent": 0.25, "reserved": 0.0})  # written before the encoding
    assert BaseStoreBudgetStore(store).usage("acme", 7) == (0.25, 0.0)


def test_the_router_limits_a_tenant_with_dots_in_a_store():
    tiers = mock_tiers()
    router = StepRouter(RouterConfig(tiers=tiers, default="advanced",
                                     guards={"budgets": {"limits": {"user@x.com": 1e-9, "default": 1.0}}}),
                        budget_store=BaseStoreBudgetStore(InMemoryStore()))
    router.complete(ask(tenant="user@x.com"))
    with pytest.raises(BudgetExceeded):
        router.complete(ask(tenant="user@x.com"))
    assert router.complete(ask(tenant="")).decision.tier == "advanced"


# -- 4. a model name from the environment is never shown ------------------------------------------


SECRET_MODEL = "secret-model-7f3c9a"


def test_an_unpriced_model_from_the_environment_is_not_named_in_the_price_warning(monkeypatch, caplog):
    monkeypatch.setenv("STEPROUTE_TEST_MODEL", f"openai/{SECRET_MODEL}")
    tiers = mock_tiers()
    tiers["standard"]["models"].insert(0, {"model": "${STEPROUTE_TEST_MODEL}", "mock_response": "hi"})
    tiers["fast"]["models"][0]["model"] = "openai/plainly-unpriced-model"
    with caplog.at_level(logging.WARNING, logger="steproute"):
        router = StepRouter(RouterConfig(tiers=tiers, default="standard"))
        assert router.complete(ask()).decision.tier == "standard"
    messages = [r.getMessage() for r in caplog.records]
    assert all(SECRET_MODEL not in m for m in messages), messages
    assert any("no price for tiers.standard.models[0]" in m and "environment" in m for m in messages), messages
    assert any("openai/plainly-unpriced-model" in m for m in messages), messages  # a plain name is still said


def test_a_model_from_the_environment_is_not_named_in_a_config_error(monkeypatch):
    monkeypatch.setenv("STEPROUTE_TEST_MODEL", f"acmeprov/{SECRET_MODEL}")  # LiteLLM cannot place the provider
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["model"] = "${STEPROUTE_TEST_MODEL}"
    with pytest.raises(ConfigError) as excinfo:
        StepRouter(RouterConfig(tiers=tiers, default="fast"))
    assert SECRET_MODEL not in str(excinfo.value) and "tiers.fast.models[0].model" in str(excinfo.value)


# -- 5. read_log bounds the memory one line may take ----------------------------------------------


def _entry(i: str) -> bytes:
    return (json.dumps({"type": "decision", "id": i, "step": "s", "tier": "fast"}) + "\n").encode()


@pytest.mark.parametrize("newline", [True, False])
def test_a_gigantic_line_is_skipped_counted_and_warned_about_in_bounded_memory(tmp_path, caplog, newline):
    path = tmp_path / "d.jsonl"
    size = 100 * 1024 * 1024
    with open(path, "wb") as f:
        f.write(_entry("d-1"))
        f.write(b'{"type": "decision", "id": "huge", "x": "')
        block = b"x" * (1024 * 1024)
        for _ in range(size // len(block)):
            f.write(block)
        if newline:
            f.write(b'"}\n')
            f.write(_entry("d-3"))
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="steproute"):
            contents = read_log(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [d["id"] for d in contents.decisions] == (["d-1", "d-3"] if newline else ["d-1"])
    assert contents.too_long == 1
    (problem,) = contents.problems
    assert f"{path}:2:" in problem and "longer than" in problem
    (warning,) = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert "line 2" in warning
    assert peak < decision_log.MAX_LINE_BYTES + 32 * 1024 * 1024, f"read_log held {peak / 2**20:.0f} MiB at its peak"


def test_lines_up_to_the_limit_are_read(tmp_path):
    path = tmp_path / "d.jsonl"
    long_entry = json.dumps({"type": "decision", "id": "long", "messages": ["y" * 2_000_000]}) + "\n"
    path.write_text(long_entry + _entry("d-2").decode())
    contents = read_log(path)
    assert [d["id"] for d in contents.decisions] == ["long", "d-2"] and contents.too_long == 0
    small = read_log(path, max_line_bytes=1024)
    assert [d["id"] for d in small.decisions] == ["d-2"] and small.too_long == 1


# -- 6. StoreLockError is public ----------------------------------------------------------------


def test_store_lock_error_is_exported_and_a_steproute_error():
    from steproute.pin_locks import StoreLockError

    assert "StoreLockError" in steproute.__all__ and steproute.StoreLockError is StoreLockError
    assert issubclass(StoreLockError, steproute.StepRouteError)
