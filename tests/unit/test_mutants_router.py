"""Tests that kill mutmut mutants of steproute/router.py (see docs/architecture.md, "Mutation testing").

Each drives the real :class:`~steproute.StepRouter` over :class:`~steproute.testing.FunctionTransport`
and reads what a user sees: the calls the tiers got (step, parameters, thread), the pins kept,
the budget's spend, the shadow calls dropped, the batch's results, and the router's own answers
(``policy_of``, ``deployments``, ``repr``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from steproute import BudgetExceeded, Hint, RouterConfig, RoutingError, StepRequest, StepRouter
from steproute.guards import InMemoryBudgetStore
from steproute.pinning import InMemoryPinStore
from steproute.testing import FunctionTransport, TierCall

FAST, STRONG = "openai/gpt-4o-mini", "openai/gpt-4o"
TIERS = {"fast": {"models": [FAST]}, "strong": {"models": [STRONG]}}


def ask(text: str = "How much are 3 notebooks at 4.50?", step: str = "calc", **kw: Any) -> StepRequest:
    return StepRequest(step, [{"role": "user", "content": text}], **kw)


def router_of(handler: Any = lambda call: "13.50", steps: dict[str, Any] | None = None, **config: Any) -> StepRouter:
    kwargs = {k: config.pop(k) for k in ("budget_store", "pin_store") if k in config}
    config.setdefault("default", "fast")
    return StepRouter(RouterConfig(tiers=TIERS, steps=steps or {}, **config),
                      transport=FunctionTransport(handler), **kwargs)


def calls(router: StepRouter) -> list[TierCall]:
    return router._dispatcher._transport.calls  # type: ignore[attr-defined]


# -- the llm policy's routing question ---------------------------------------------------------------


def test_the_llm_policy_asks_its_tier_a_short_deterministic_question_as_the_router_step():
    def answer(call: TierCall) -> str:
        return "strong" if call.step == "router" else "13.50"

    router = router_of(answer, {"calc": {"policy": "llm", "router_tier": "fast", "fallback": "fast", "max_tokens": 5}})
    result = router.complete(ask())
    assert result.decision.tier == "strong"
    question, call = calls(router)
    assert (question.step, question.tier, question.params) == ("router", "fast", {"max_tokens": 5, "temperature": 0})
    assert (call.step, call.tier) == ("calc", "strong")


# -- the default stores -------------------------------------------------------------------------------


def test_the_default_pin_store_keeps_the_configured_number_of_threads():
    router = router_of(pinning={"mode": "sticky", "max_threads": 1, "group": "g"})
    router.complete(ask(thread="t1"))
    router.complete(ask(thread="t2"))
    assert isinstance(router.pin_store, InMemoryPinStore)
    assert router.pin_store.get("t1", "g") is None and router.pin_store.get("t2", "g") is not None


def test_the_default_pin_store_forgets_a_pin_after_the_configured_ttl():
    router = router_of(pinning={"mode": "sticky", "ttl_seconds": 0.3, "group": "g"})
    router.complete(ask(thread="t1"))
    assert router.pin_store.get("t1", "g") is not None
    time.sleep(0.5)
    assert router.pin_store.get("t1", "g") is None


def test_a_pin_store_set_on_the_router_is_the_one_calls_use():
    router = router_of(pinning={"mode": "sticky", "group": "g"})
    store = InMemoryPinStore()
    router.pin_store = store
    router.complete(ask(thread="t1"))
    assert router.pin_store is store and store.get("t1", "g") is not None


class ThreadNoting:
    """A budget store that notes whether each reservation ran on the main (event loop's) thread."""

    def __init__(self) -> None:
        self.inner = InMemoryBudgetStore()
        self.on_main: list[bool] = []

    def reserve(self, tenant: str, window: int, amount: float, limit: float) -> float | None:
        self.on_main.append(threading.current_thread() is threading.main_thread())
        return self.inner.reserve(tenant, window, amount, limit)

    def settle(self, tenant: str, window: int, reserved: float, spent: float) -> None:
        self.inner.settle(tenant, window, reserved, spent)

    def usage(self, tenant: str, window: int) -> tuple[float, float]:
        return self.inner.usage(tenant, window)


class MemoryNoting(InMemoryBudgetStore):
    def __init__(self) -> None:
        super().__init__()
        self.on_main: list[bool] = []

    def reserve(self, tenant: str, window: int, amount: float, limit: float) -> float | None:
        self.on_main.append(threading.current_thread() is threading.main_thread())
        return super().reserve(tenant, window, amount, limit)


@pytest.mark.parametrize(("store", "on_main"), [(ThreadNoting, False), (MemoryNoting, True)],
                         ids=["shared-store-off-the-loop", "in-memory-on-the-loop"])
def test_an_async_call_reserves_its_budget_off_the_event_loop_unless_the_store_is_in_memory(store, on_main):
    budget = store()
    router = router_of(guards={"budgets": {"limits": {"acme": 10.0}}}, budget_store=budget)
    assert router.budget_store is budget
    result = asyncio.run(router.acomplete(ask(tenant="acme")))
    assert budget.on_main == [on_main]
    assert budget.usage("acme", router._budget.window()[0])[0] == pytest.approx(result.cost_usd)


# -- batches --------------------------------------------------------------------------------------------


def _concurrency(router: StepRouter, n: int, run: Any) -> int:
    state = {"now": 0, "most": 0}
    lock = threading.Lock()
    handler = router._dispatcher._transport.handler  # type: ignore[attr-defined]

    def answer(call: TierCall) -> str:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return handler(call)

    router._dispatcher._transport.handler = answer  # type: ignore[attr-defined]
    run([ask(f"q{i}") for i in range(n)])
    return state["most"]


def test_a_batchs_max_concurrency_bounds_the_calls_in_flight():
    steps = {"calc": {"policy": "cascade", "tiers": ["fast", "strong"], "signals": [{"signal": "hedging"}]}}
    router = router_of(steps=steps)
    assert _concurrency(router, 4, lambda rs: router.complete_batch(rs, max_concurrency=1)) == 1
    assert _concurrency(router, 4, lambda rs: router.complete_batch(rs)) > 1


def test_an_async_batch_returns_or_raises_its_items_errors():
    router = router_of()
    bad = ask(hint=Hint(tier="nope"))
    results = asyncio.run(router.acomplete_batch([ask(), bad], return_exceptions=True))
    assert results[0].completion.content == "13.50" and isinstance(results[1], RoutingError)
    with pytest.raises(RoutingError, match="'nope' is not a tier"):
        asyncio.run(router.acomplete_batch([ask(), bad]))


def test_only_a_cascade_step_without_a_tier_hint_runs_in_phases():
    steps = {"calc": {"policy": "cascade", "tiers": ["fast", "strong"], "signals": [{"signal": "hedging"}]}}
    router = router_of(steps=steps)
    assert router.runs_in_phases(ask())
    assert not router.runs_in_phases(ask(hint=Hint(tier="strong")))
    assert not router.runs_in_phases(ask(step="other"))


# -- closing, and what the router says about itself ----------------------------------------------------


def _shadowed(delay: float, sync: bool = True) -> StepRouter:
    async def slow() -> str:
        await asyncio.sleep(delay)
        return "13.50"

    def answer(call: TierCall) -> Any:
        if call.tier == "strong":
            if not sync:
                return slow()
            time.sleep(delay)
        return "13.50"

    return router_of(answer, default={"policy": "fixed", "tier": "fast", "shadow": {"candidate": "strong"}})


def test_close_waits_for_shadow_calls_only_as_long_as_asked():
    router = _shadowed(1.0)
    router.complete(ask())
    started = time.monotonic()
    assert router.close(0.05) == 1
    assert time.monotonic() - started < 0.9
    assert router_of().close() == 0


def test_aclose_waits_for_shadow_calls_only_as_long_as_asked():
    router = _shadowed(1.0, sync=False)

    async def main() -> int:
        await router.acomplete(ask())
        return await router.aclose(0.05)

    started = time.monotonic()
    assert asyncio.run(main()) == 1
    assert time.monotonic() - started < 0.9
    assert asyncio.run(router_of().aclose()) == 0


def test_the_router_names_its_tiers_deployments_and_policies():
    rules = {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "strong"}], "fallback": "fast"}
    router = router_of(steps={"calc": "strong", "plan": rules})
    assert repr(router) == "StepRouter(tiers=['fast', 'strong'], baseline='strong', steps=['calc', 'plan'])"
    assert [d.model for d in router.deployments("strong")] == [STRONG]
    assert router.policy_of("calc").name == "fixed" and router.policy_of("plan").name == "rules"
    assert router.policy_of("x", "plan").name == "rules"


# -- feedback, a router from a file, the LangChain conveniences -----------------------------------------


def test_feedback_is_written_to_the_decision_log_with_its_extra_keys(tmp_path):
    path = tmp_path / "d.jsonl"
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=FunctionTransport(lambda c: "13.50"),
                        decision_log=str(path))
    decision = router.complete(ask()).decision
    router.feedback(decision.id, 0.25, rater="alice")
    router.decision_log.close()  # type: ignore[union-attr]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[-1] == {"type": "feedback", "id": decision.id, "quality": 0.25, "rater": "alice"}
    with pytest.raises(ValueError, match="feedback needs a decision log"):
        router_of().feedback(decision.id, 1.0)


def test_a_router_from_a_file_takes_the_constructors_arguments(tmp_path):
    path = tmp_path / "steproute.yaml"
    path.write_text(f"tiers:\n  fast:\n    models: [{FAST}]\n  strong:\n    models: [{STRONG}]\ndefault: fast\n")
    transport = FunctionTransport(lambda call: "from the file")
    router = StepRouter.from_file(path, transport=transport)
    assert router.complete(ask()).completion.content == "from the file" and len(transport.calls) == 1


def test_the_chat_model_node_and_factory_patch_route_by_the_step_they_are_given():
    router = router_of(lambda call: "13.50")
    assert router.chat_model(step="plan").invoke("hi").content == "13.50"
    node = router.node("extract", "Capital of {country}?", output_key="capital")
    assert node.invoke({"country": "France"}) == {"capital": "13.50"}
    assert [c.step for c in calls(router)] == ["plan", "extract"]
    with router.route_init_chat_model(step="agent") as patch:
        from langchain.chat_models import init_chat_model

        assert patch.step == "agent"
        assert init_chat_model("openai:gpt-4o-mini").invoke("hi").content == "13.50"
    assert [c.step for c in calls(router)] == ["plan", "extract", "agent"]


# -- route and aroute: the decision and the pin a call follows ---------------------------------------------


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_route_decides_and_makes_the_threads_first_pin_then_follows_it(sync):
    router = router_of(steps={"calc": "strong"}, pinning={"mode": "sticky", "group": "g"})

    def route(request: StepRequest) -> Any:
        return router.route(request) if sync else asyncio.run(router.aroute(request))

    decision, action = route(ask(thread="t1"))
    assert (decision.tier, decision.model, decision.pinned) == ("strong", STRONG, False)
    assert action is not None and action.made and action.held is not None and action.held.tier == "strong"
    assert router.pin_store.get("t1", "g") == action.held
    followed, kept = route(ask(thread="t1", hint=Hint(min_tier="fast")))
    assert followed.pinned and kept is not None and not kept.made
    assert route(ask())[1] is None  # no thread, no pin
    assert calls(router) == []  # routing calls no model


# -- batches pass the call's parameters on, and bound async batches too -------------------------------------


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_batchs_parameters_reach_every_item(sync):
    steps = {"calc": {"policy": "cascade", "tiers": ["fast", "strong"], "signals": [{"signal": "hedging"}]}}
    router = router_of(steps=steps)
    requests = [ask(step="plain"), ask()]
    results = (router.complete_batch(requests, temperature=0.3) if sync
               else asyncio.run(router.acomplete_batch(requests, temperature=0.3)))
    assert [r.completion.content for r in results] == ["13.50", "13.50"]
    assert sorted((c.step, c.params.get("temperature")) for c in calls(router)) == [("calc", 0.3), ("plain", 0.3)]


def test_an_async_batchs_max_concurrency_bounds_the_calls_in_flight():
    state = {"now": 0, "most": 0}

    async def answer(call: TierCall) -> str:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return "13.50"

    steps = {"calc": {"policy": "cascade", "tiers": ["fast", "strong"], "signals": [{"signal": "hedging"}]}}
    router = router_of(answer, steps=steps)
    asyncio.run(router.acomplete_batch([ask(f"q{i}") for i in range(4)], max_concurrency=1))
    assert state["most"] == 1
    asyncio.run(router.acomplete_batch([ask(f"q{i}") for i in range(4)]))
    assert state["most"] > 1


# -- close's documented default: five seconds --------------------------------------------------------------


def test_close_waits_five_seconds_by_default():
    router = _shadowed(5.6)
    router.complete(ask())
    started = time.monotonic()
    assert router.close() == 1  # given up at 5 s; the call would have ended at 5.6 s
    assert 4.5 < time.monotonic() - started < 5.5


def test_aclose_waits_five_seconds_by_default():
    router = _shadowed(5.6, sync=False)

    async def main() -> tuple[int, float]:
        await router.acomplete(ask())
        started = time.monotonic()
        return await router.aclose(), time.monotonic() - started

    dropped, waited = asyncio.run(main())
    assert dropped == 1 and 4.5 < waited < 5.5


# -- the PII guard forces a tier, and the call is never pinned ------------------------------------------------


@pytest.mark.parametrize("path", ["route", "aroute", "acomplete"])
def test_personal_data_goes_to_the_guards_tier_unpinned_on_every_path(path):
    router = router_of(guards={"pii": {"tier": "strong"}}, pinning={"mode": "sticky", "group": "g"})
    request = ask("Mail the total to jane.doe@example.com", thread="t1")
    if path == "route":
        decision, action = router.route(request)
    elif path == "aroute":
        decision, action = asyncio.run(router.aroute(request))
    else:
        decision, action = asyncio.run(router.acomplete(request)).decision, None
        assert [(c.step, c.tier) for c in calls(router)] == [("calc", "strong")]
    assert (decision.tier, decision.policy, decision.guard, action) == ("strong", "guard", "pii:email", None)
    assert "pii guard: email detected; tier 'strong'" in decision.reason
    assert router.pin_store.get("t1", "g") is None


def test_an_async_call_over_budget_on_a_shared_store_is_held_to_the_cap_tier_or_refused_when_fixed():
    budgets = {"budgets": {"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"}}
    router = router_of(default="strong", guards=budgets, budget_store=ThreadNoting())
    router.budget_store.inner.settle("acme", router._budget.window()[0], 0.0, 1.0)  # type: ignore[attr-defined]
    result = asyncio.run(router.acomplete(ask(tenant="acme")))
    assert (result.decision.tier, result.decision.guard) == ("fast", "budget:capped")
    assert "held to 'fast'" in result.decision.reason
    fixed = router_of(guards=budgets, budget_store=ThreadNoting())
    fixed.budget_store.inner.settle("acme", fixed._budget.window()[0], 0.0, 1.0)  # type: ignore[attr-defined]
    with pytest.raises(RoutingError, match="the step's tier is fixed at 'strong'"):
        asyncio.run(fixed.acomplete(ask(tenant="acme", hint=Hint(tier="strong"))))
    assert calls(fixed) == []


def test_an_async_call_over_budget_in_memory_is_held_to_the_cap_tier():
    budgets = {"budgets": {"limits": {"acme": 1e-9}, "on_exceed": "cap", "cap_tier": "fast"}}
    router = router_of(default="strong", guards=budgets)
    router.budget_store.settle("acme", router._budget.window()[0], 0.0, 1.0)
    result = asyncio.run(router.acomplete(ask(tenant="acme")))
    assert (result.decision.tier, result.decision.guard) == ("fast", "budget:capped")


def test_an_async_call_the_budget_refuses_is_logged_as_refused_with_its_error(tmp_path):
    path = tmp_path / "d.jsonl"
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", guards={"budgets": {"limits": {"acme": 1e-9}}}),
                        transport=FunctionTransport(lambda c: "13.50"), decision_log=str(path))
    router.budget_store.settle("acme", router._budget.window()[0], 0.0, 1.0)
    with pytest.raises(BudgetExceeded):
        asyncio.run(router.acomplete(ask(tenant="acme")))
    router.decision_log.close()  # type: ignore[union-attr]
    (entry,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (entry["error"], entry["outcome"], entry["guard"]) == ("BudgetExceeded", "refused", "budget:refused")
    assert calls(router) == []


# -- the planner reads the latency the calls observed ---------------------------------------------------------


def test_a_tier_the_calls_found_slow_is_left_for_the_next_that_fits():
    def answer(call: TierCall) -> str:
        if call.tier == "fast":
            time.sleep(0.15)
        return f"from {call.tier}"

    router = router_of(answer, steps={"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 100}})
    first = router.complete(ask(step="answer"))
    second = router.complete(ask(step="answer"))
    assert (first.decision.tier, second.decision.tier) == ("fast", "strong")
    assert second.completion.content == "from strong" and second.decision.latency_from == "fast"
    assert "latency: 'fast' p95" in second.decision.reason


def test_the_router_says_which_steps_entries_calls_matched_and_exports_the_latency_it_observed():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", steps={"calc": "strong", "unused": "fast"}),
                        transport=FunctionTransport(lambda call: "13.50"),
                        meter_provider=MeterProvider(metric_readers=[reader]))
    router.complete(ask())
    router.complete(ask(step="other"))
    assert router.coverage.unmatched_entries() == ["unused"] and router.coverage.unconfigured_steps() == ["other"]
    gauges = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics}
    p95 = {(p.attributes["steproute.tier"], p.attributes["gen_ai.request.model"])
           for p in gauges["steproute.deployment.latency.p95"].data.data_points}
    assert p95 == {("strong", STRONG), ("fast", FAST)}


def test_a_pin_on_a_deployment_the_tier_no_longer_has_is_followed_on_the_tiers_first():
    from steproute.pinning import Pin

    router = router_of(pinning={"mode": "sticky", "group": "g"})
    router.pin_store.put("t1", "g", Pin("strong", "openai/gpt-4-0613", "d-old", time.time()))
    decision, _ = router.route(ask(thread="t1"))
    assert (decision.tier, decision.model, decision.pinned) == ("strong", STRONG, True)
    result = router.complete(ask(thread="t1"))
    assert result.decision.model == STRONG and [c.model for c in calls(router)] == [STRONG]


def test_the_shadow_candidate_is_logged_and_counted_where_the_router_logs_and_counts(tmp_path):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    path = tmp_path / "d.jsonl"
    reader = InMemoryMetricReader()
    router = StepRouter(RouterConfig(tiers=TIERS, default={"policy": "fixed", "tier": "fast", "shadow": {"candidate": "strong"}}),
                        transport=FunctionTransport(lambda call: "13.50"), decision_log=str(path),
                        meter_provider=MeterProvider(metric_readers=[reader]))
    decision = router.complete(ask()).decision
    assert router.close(10) == 0
    router.decision_log.close()  # type: ignore[union-attr]
    (shadow,) = [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "shadow"]
    assert (shadow["id"], shadow["tier"], shadow["live_tier"]) == (decision.id, "strong", "fast")
    counted = [p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics
               if m.name == "steproute.shadow.calls" for p in m.data.data_points]
    assert sum(p.value for p in counted) == 1 and counted[0].attributes["steproute.step"] == "calc"


def test_a_bandit_is_told_which_tier_answered_its_decision():
    def answer(call: TierCall) -> str:
        if call.tier == "fast":
            raise TimeoutError("down")
        return "13.50"

    bandit = {"policy": "bandit", "prior": "fast", "prior_strength": 50, "explore": 0.0, "seed": 0,
              "tiers": ["fast", "strong"]}
    router = router_of(answer, steps={"calc": bandit})
    decision = router.complete(ask()).decision
    assert (decision.tier, decision.fallback_from) == ("strong", "fast")
    assert "bandit: feedback on this call is learnt for tier 'strong', which answered (decided 'fast')" in decision.reason


def test_the_budget_reserves_at_the_tier_the_capability_filter_moves_the_call_to():
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}
    tiers = {"fast": {"models": [{"model": FAST, "capabilities": {"tools": False}}]}, "strong": {"models": [STRONG]}}
    reserved: list[float] = []

    def answer(call: TierCall) -> str:
        reserved.append(router.budget_store.usage("acme", router._budget.window()[0])[1])
        return "13.50"

    router = StepRouter(RouterConfig(tiers=tiers, default="fast", guards={"budgets": {"limits": {"acme": 10.0}}}),
                        transport=FunctionTransport(answer))
    result = router.complete(ask(tenant="acme"), max_tokens=1000, tools=[tool])
    assert result.decision.tier == "strong"
    # 1000 output tokens at strong's price (gpt-4o: $10 per million): about $0.01, not fast's $0.0006
    (held,) = reserved
    assert held == pytest.approx(1000 * router.deployments("strong")[0].price.output, rel=0.05)
