"""Leftovers of issue 17 in the dispatch path, over real HTTP (LiteLLM → llmock on 127.0.0.1):

- a stream whose connection drops before its first chunk, on a tier of several deployments,
  tries each deployment at most ``1 + num_retries`` times, then the next, then the next tier:
  bounded in requests and in time (LiteLLM's Router alone re-opened the same deployment ~475
  times in 40–55 s);
- a tier whose deployments are all cooling down says that no deployment was called;
- what a malformed answer cost is on the step's cost (log, span, budget, the answer's
  metadata), even though the step was answered by another tier;
- a failed call's ``route`` span never shows a savings figure (its baseline is unknown).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from llmock.scenarios import Fail, Match, Reply, StreamFault, ToolCall
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import DispatchError, MalformedResponse, RouterConfig, StepRequest, StepRouter
from steproute.decision_log import JsonlDecisionLog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHEAP, SECOND, STRONG = "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"
ADD = {"type": "function", "function": {"name": "add", "description": "Add two numbers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}
BOUND_S = 10.0
"""A bounded tier walk over llmock on 127.0.0.1 takes well under a second; the storm took 40–55 s."""


def deployment(llmock, model: str, **params: Any) -> dict[str, Any]:
    return {"model": f"openai/{model}", "api_base": llmock.base_url(), "api_key": "k", **params}


def router_for(llmock, *, fast: list[str] = (CHEAP, SECOND), tracer_provider: Any = None,
               decision_log: Any = None, **config: Any) -> StepRouter:
    tiers = {"fast": {"models": [deployment(llmock, m) for m in fast]},
             "strong": {"models": [deployment(llmock, STRONG)]}}
    config.setdefault("default", "fast")
    config.setdefault("dispatch", {"timeout": 10})
    return StepRouter(RouterConfig(tiers=tiers, **config), tracer_provider=tracer_provider,
                      decision_log=decision_log)


def ask(tenant: str | None = None) -> StepRequest:
    return StepRequest("extract", [{"role": "user", "content": "What is the weather in Oslo?"}], tenant=tenant)


def on_the_wire(llmock) -> Counter[str]:
    return Counter(r.model for r in llmock.requests)


def drop_before_first_chunk(llmock, model: str) -> None:
    llmock.add(StreamFault("disconnect", after_chunks=0, times=None, match=Match(model=model, stream=True)))


def streamed(router: StepRouter, request: StepRequest, mode: str, **params: Any) -> list[Any]:
    if mode == "sync":
        return list(router.stream(request, **params))

    async def run() -> list[Any]:
        return [item async for item in router.astream(request, **params)]

    return asyncio.run(run())


def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- 1. a stream dropped before its first chunk: bounded ------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("retries", [0, 1])
def test_a_stream_dropped_before_its_first_chunk_moves_to_the_tiers_next_deployment(llmock, mode, retries):
    drop_before_first_chunk(llmock, CHEAP)
    llmock.add(Reply(text="Sunny in Oslo.", times=None))
    router = router_for(llmock, dispatch={"timeout": 10, "num_retries": retries})
    started = time.monotonic()
    items = streamed(router, ask(), mode)
    elapsed = time.monotonic() - started
    summary = items[-1]
    assert "".join(i.content for i in items[:-1]) == "Sunny in Oslo."
    assert (summary.decision.tier, summary.decision.model) == ("fast", f"openai/{SECOND}")
    assert on_the_wire(llmock) == Counter({CHEAP: 1 + retries, SECOND: 1})
    assert elapsed < BOUND_S, elapsed
    print(f"num_retries {retries}, {mode}: {dict(on_the_wire(llmock))} in {elapsed:.2f} s")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("retries", [0, 1])
def test_a_tier_whose_every_stream_drops_falls_back_after_a_bounded_walk(llmock, mode, retries):
    drop_before_first_chunk(llmock, CHEAP)
    drop_before_first_chunk(llmock, SECOND)
    llmock.add(Reply(text="Sunny in Oslo.", times=None, match=Match(model=STRONG)))
    router = router_for(llmock, dispatch={"timeout": 10, "num_retries": retries})
    started = time.monotonic()
    summary = streamed(router, ask(), mode)[-1]
    elapsed = time.monotonic() - started
    assert (summary.decision.tier, summary.decision.fallback_from) == ("strong", "fast")
    assert on_the_wire(llmock) == Counter({CHEAP: 1 + retries, SECOND: 1 + retries, STRONG: 1})
    assert elapsed < BOUND_S, elapsed


def test_a_tier_whose_every_stream_drops_is_a_typed_error_with_every_attempt(llmock):
    drop_before_first_chunk(llmock, CHEAP)
    drop_before_first_chunk(llmock, SECOND)
    router = router_for(llmock, dispatch={"timeout": 10, "num_retries": 1},
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"})
    started = time.monotonic()
    with pytest.raises(DispatchError) as info:
        list(router.stream(ask()))
    assert time.monotonic() - started < BOUND_S
    assert [a.model for a in info.value.attempts] == [f"openai/{CHEAP}"] * 2 + [f"openai/{SECOND}"] * 2
    assert {a.error_type for a in info.value.attempts} <= {"APIConnectionError", "InternalServerError"}
    assert on_the_wire(llmock) == Counter({CHEAP: 2, SECOND: 2})


def test_a_stream_broken_after_its_first_chunk_is_not_reopened(llmock):
    llmock.add(StreamFault("disconnect", after_chunks=2, times=None, match=Match(model=CHEAP, stream=True)))
    router = router_for(llmock, dispatch={"timeout": 10, "num_retries": 2})
    with pytest.raises(DispatchError):
        list(router.stream(ask()))
    assert on_the_wire(llmock) == Counter({CHEAP: 1})  # text was shown: no retry, no fallback


# -- 2. a tier cooling down: no deployment was called ------------------------------------------------


def test_a_tier_cooling_down_says_no_deployment_was_called_and_falls_back(llmock, tmp_path, caplog):
    llmock.add(Fail(500, times=None, match=Match(model=CHEAP)))
    llmock.add(Fail(500, times=None, match=Match(model=SECOND)))
    provider, exporter = tracing()
    log = JsonlDecisionLog(tmp_path / "d.jsonl")
    router = router_for(llmock, dispatch={"timeout": 10, "allowed_fails": 0, "cooldown_time": 60},
                        tracer_provider=provider, decision_log=log)
    first = router.complete(ask())
    assert (first.decision.tier, first.decision.fallback_from) == ("strong", "fast")
    assert on_the_wire(llmock) == Counter({CHEAP: 1, SECOND: 1, STRONG: 1})
    exporter.clear()
    with caplog.at_level(logging.WARNING, logger="steproute"):
        second = router.complete(ask())
    assert on_the_wire(llmock) == Counter({CHEAP: 1, SECOND: 1, STRONG: 2})  # fast: nothing called
    assert (second.decision.tier, second.decision.fallback_from) == ("strong", "fast")
    reason = second.decision.reason
    assert "CooledDown" in reason and "cooling down" in reason and "none was called" in reason
    assert f"openai/{CHEAP}: RouterRateLimitError" not in reason
    assert any("cooling down" in r.getMessage() for r in caplog.records)
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert [s.name for s in chats] == [f"chat openai/{STRONG}"]  # no span for a call never made
    (route,) = [s for s in exporter.get_finished_spans() if s.name == "route extract"]
    assert "cooling down" in route.attributes["steproute.decision.reason"]
    log.flush()
    assert "cooling down" in entries(tmp_path / "d.jsonl")[-1]["reason"]


def test_a_tier_cooling_down_with_no_fallback_is_a_typed_error_saying_so(llmock, tmp_path):
    llmock.add(Fail(500, times=None, match=Match(model=CHEAP)))
    llmock.add(Fail(500, times=None, match=Match(model=SECOND)))
    log = JsonlDecisionLog(tmp_path / "d.jsonl")
    router = router_for(llmock, dispatch={"timeout": 10, "allowed_fails": 0, "cooldown_time": 60},
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"}, decision_log=log)
    with pytest.raises(DispatchError):
        router.complete(ask())
    for call in (router.complete, lambda r: list(router.stream(r))):
        with pytest.raises(DispatchError) as info:
            call(ask())
        (attempt,) = info.value.attempts
        assert (attempt.model, attempt.error_type, attempt.kind) == (None, "CooledDown", None)
        assert "cooling down" in attempt.message and "none was called" in attempt.message
        assert "cooling down" in str(info.value)
    assert on_the_wire(llmock) == Counter({CHEAP: 1, SECOND: 1})
    log.flush()
    last = entries(tmp_path / "d.jsonl")[-1]
    assert last["failed_attempts"] == [{"model": None, "error_type": "CooledDown"}]


# -- 3. a malformed answer's cost is the step's -------------------------------------------------------


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_a_malformed_answers_cost_is_on_the_steps_cost_log_span_and_budget(llmock, tmp_path, mode):
    llmock.add(Reply(tool_calls=(ToolCall("", {"a": 1}),), times=None, match=Match(model=CHEAP)))
    llmock.add(Reply(tool_calls=(ToolCall("add", {"a": 2, "b": 3}),), times=None, match=Match(model=STRONG)))
    provider, exporter = tracing()
    log = JsonlDecisionLog(tmp_path / "d.jsonl")
    router = router_for(llmock, fast=[CHEAP], tracer_provider=provider, decision_log=log,
                        guards={"budgets": {"limits": {"acme": 10.0}}})
    if mode == "invoke":
        routed = router.complete(ask(tenant="acme"), tools=[ADD])
        decision, cost = routed.decision, routed.cost_usd
    else:
        summary = list(router.stream(ask(tenant="acme"), tools=[ADD]))[-1]
        decision, cost = summary.decision, summary.cost_usd
    assert (decision.tier, decision.fallback_from) == ("strong", "fast")
    spans = exporter.get_finished_spans()
    chats = {s.name: s.attributes.get("steproute.cost.usd", 0.0) for s in spans if s.name.startswith("chat ")}
    assert set(chats) == {f"chat openai/{CHEAP}", f"chat openai/{STRONG}"}
    assert chats[f"chat openai/{CHEAP}"] > 0  # the malformed answer was paid for
    paid = sum(chats.values())
    (route,) = [s for s in spans if s.name == "route extract"]
    assert route.attributes["steproute.step.cost.usd"] == pytest.approx(paid)
    log.flush()
    assert entries(tmp_path / "d.jsonl")[-1]["cost_usd"] == pytest.approx(paid)
    assert router.budget_store.usage("acme", router._budget.window()[0]) == (pytest.approx(paid), 0.0)
    assert cost == pytest.approx(paid)


def test_a_malformed_answer_with_no_fallback_books_its_cost_on_the_failed_call(llmock, tmp_path):
    llmock.add(Reply(tool_calls=(ToolCall("", {"a": 1}),), times=None))
    provider, exporter = tracing()
    log = JsonlDecisionLog(tmp_path / "d.jsonl")
    router = router_for(llmock, fast=[CHEAP], tracer_provider=provider, decision_log=log,
                        guards={"budgets": {"limits": {"acme": 10.0}}},
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"})
    with pytest.raises(MalformedResponse) as info:
        router.complete(ask(tenant="acme"), tools=[ADD])
    (attempt,) = info.value.attempts
    assert attempt.cost_usd is not None and attempt.cost_usd > 0
    (route,) = [s for s in exporter.get_finished_spans() if s.name == "route extract"]
    assert route.attributes["steproute.step.cost.usd"] == pytest.approx(attempt.cost_usd)
    log.flush()
    assert entries(tmp_path / "d.jsonl")[-1]["cost_usd"] == pytest.approx(attempt.cost_usd)
    assert router.budget_store.usage("acme", router._budget.window()[0]) == (pytest.approx(attempt.cost_usd), 0.0)


# -- 4. a failed call's span shows no savings ---------------------------------------------------------


def test_a_failed_call_that_spent_money_shows_no_savings_on_its_span(llmock):
    llmock.add(Reply(tool_calls=(ToolCall("", {"a": 1}),), times=None))
    provider, exporter = tracing()
    router = router_for(llmock, fast=[CHEAP], tracer_provider=provider,
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"})
    with pytest.raises(MalformedResponse):
        router.complete(ask(), tools=[ADD])
    (route,) = [s for s in exporter.get_finished_spans() if s.name == "route extract"]
    assert route.attributes["steproute.step.cost.usd"] > 0
    assert "steproute.step.savings.usd" not in route.attributes
    assert "steproute.step.baseline_cost.usd" not in route.attributes


def test_a_stream_whose_open_fails_is_retried_within_num_retries_then_the_next_deployment(llmock):
    llmock.add(Fail(500, times=None, match=Match(model=CHEAP)))
    llmock.add(Reply(text="Sunny in Oslo.", times=None))
    router = router_for(llmock, dispatch={"timeout": 10, "num_retries": 1})
    summary = list(router.stream(ask()))[-1]
    assert summary.decision.model == f"openai/{SECOND}"
    assert on_the_wire(llmock) == Counter({CHEAP: 2, SECOND: 1})
