"""Shadow mode over real HTTP: LiteLLM → llmock, the live tier and the candidate's both called,
the candidate off the hot path (issue 19, part 3)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from llmock.scenarios import Delay, Fail, Match, Reply, ToolCall
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.decision_log import JsonlDecisionLog, read_log

pytestmark = pytest.mark.integration

LIVE, CANDIDATE = "gpt-4o-mini", "gpt-4o"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                             "required": ["city"]}}}]


def router_for(llmock: Any, tmp_path: Any, *, meter_provider: Any = None, **shadow: Any) -> StepRouter:
    tiers = {name: {"models": [{"model": f"openai/{m}", "api_base": llmock.base_url(), "api_key": "sk-llmock"}]}
             for name, m in (("fast", LIVE), ("strong", CANDIDATE))}
    settings = {"candidate": {"tier": "strong"}, "sample": 1.0, "judge": "exact", **shadow}
    config = RouterConfig(tiers=tiers, default="fast",
                          steps={"answer": {"policy": "fixed", "tier": "fast", "shadow": settings}})
    return StepRouter(config, decision_log=JsonlDecisionLog(tmp_path / "decisions.jsonl"), meter_provider=meter_provider)


def log_of(router: StepRouter, tmp_path: Any) -> Any:
    assert router.decision_log is not None
    router.decision_log.close()
    return read_log(tmp_path / "decisions.jsonl")


def models_called(llmock: Any) -> list[str | None]:
    return [r.model for r in llmock.requests]


def test_both_tiers_are_called_the_user_gets_the_live_answer_and_the_log_gets_the_verdict(llmock, tmp_path):
    llmock.add(Reply(text="Paris", times=None, match=Match(model=LIVE)))
    llmock.add(Reply(text="Lyon", times=None, match=Match(model=CANDIDATE)))
    reader = InMemoryMetricReader()
    router = router_for(llmock, tmp_path, meter_provider=MeterProvider(metric_readers=[reader]))
    result = router.complete(StepRequest("answer", MESSAGES))
    assert (result.decision.tier, result.completion.content) == ("fast", "Paris")
    assert router.close(timeout=30) == 0
    assert sorted(models_called(llmock)) == sorted([LIVE, CANDIDATE])
    contents = log_of(router, tmp_path)
    assert contents.problems == []
    [decision] = contents.decisions
    assert decision["shadow"] == {"candidate_tier": "strong", "agree": False, "sampled": True}
    assert decision["cost_usd"] == result.cost_usd  # the shadow call is never the step's cost
    [shadow] = contents.shadows
    assert shadow["id"] == decision["id"] == result.decision.id
    assert (shadow["tier"], shadow["verdict"], shadow["quality"], shadow["judge"]) == ("strong", "loss", 0.0, "exact")
    assert shadow["live_tier"] == "fast" and shadow["cost_usd"] > 0 and shadow["agree"] is False
    points = {(p.attributes["steproute.step"], p.attributes["steproute.shadow.outcome"]): p.value
              for m in reader.get_metrics_data().resource_metrics[0].scope_metrics for metric in m.metrics
              if metric.name == "steproute.shadow.calls" for p in metric.data.data_points}
    assert points == {("answer", "loss"): 1}


def test_the_same_answer_is_a_tie_and_an_agreeing_candidate_calls_nothing(llmock, tmp_path):
    llmock.add(Reply(text="Paris", times=None))
    router = router_for(llmock, tmp_path)
    router.complete(StepRequest("answer", MESSAGES))
    router.close(timeout=30)
    assert log_of(router, tmp_path).shadows[0]["verdict"] == "tie"

    (tmp_path / "agree").mkdir()
    agreeing = router_for(llmock, tmp_path / "agree", candidate={"tier": "fast"})
    llmock.reset()
    llmock.add(Reply(text="Paris", times=None))
    agreeing.complete(StepRequest("answer", MESSAGES))
    agreeing.close(timeout=30)
    assert models_called(llmock) == [LIVE]
    assert agreeing.shadow is not None and agreeing.shadow.counts() == {("answer", "agree"): 1}


@pytest.mark.parametrize(("candidate_city", "verdict"), [("Oslo", "tie"), ("Bergen", "loss")])
def test_a_tool_call_turn_is_judged_by_tool_call_equivalence(llmock, tmp_path, candidate_city, verdict):
    llmock.add(Reply(tool_calls=(ToolCall("get_weather", {"city": "Oslo"}),), times=None, match=Match(model=LIVE)))
    llmock.add(Reply(tool_calls=(ToolCall("get_weather", {"city": candidate_city}),), times=None,
                     match=Match(model=CANDIDATE)))
    router = router_for(llmock, tmp_path)
    result = router.complete(StepRequest("answer", MESSAGES, tools=WEATHER), tools=WEATHER)
    assert [c.arguments for c in result.completion.tool_calls] == ['{"city": "Oslo"}']
    router.close(timeout=30)
    [shadow] = log_of(router, tmp_path).shadows
    assert (shadow["judge"], shadow["verdict"]) == ("tools", verdict)


def test_the_user_call_returns_before_the_slow_shadow_call_completes(llmock, tmp_path):
    llmock.add(Reply(text="Paris", times=None))
    llmock.add(Delay(1.5, times=None, match=Match(model=CANDIDATE)))
    router = router_for(llmock, tmp_path)
    router.complete(StepRequest("warm", MESSAGES))  # LiteLLM's first call in a process is slow
    started = time.perf_counter()
    result = router.complete(StepRequest("answer", MESSAGES))
    elapsed = time.perf_counter() - started
    assert result.completion.content == "Paris"
    assert elapsed < 1.0
    assert router.shadow is not None and router.shadow.in_flight() == 1
    assert router.close(timeout=30) == 0
    assert [s["verdict"] for s in log_of(router, tmp_path).shadows] == ["tie"]


def test_a_full_bound_skips_and_counts_and_says_so_once(llmock, tmp_path, caplog):
    llmock.add(Reply(text="Paris", times=None))
    llmock.add(Delay(1.5, times=None, match=Match(model=CANDIDATE)))
    router = router_for(llmock, tmp_path, max_concurrency=1)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for _ in range(3):
            router.complete(StepRequest("answer", MESSAGES))
    assert router.shadow is not None
    assert router.shadow.counts() == {("answer", "skipped_concurrency"): 2}
    told = [r.getMessage() for r in caplog.records if "shadow calls skipped" in r.getMessage()]
    assert told == ["step 'answer': shadow calls skipped (concurrency: 1 in flight); each one is counted on "
                    "steproute.shadow.calls (logged once)"]
    router.close(timeout=30)
    contents = log_of(router, tmp_path)
    assert [d["shadow"].get("skipped") for d in contents.decisions] == [None, "concurrency", "concurrency"]
    assert len(contents.shadows) == 1


def test_the_shadow_budget_once_spent_skips_calls(llmock, tmp_path):
    llmock.add(Reply(text="Paris", times=None))
    router = router_for(llmock, tmp_path, budget_usd_per_day=1e-9)
    router.complete(StepRequest("answer", MESSAGES))
    assert router.shadow is not None
    deadline = time.monotonic() + 30
    while router.shadow.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    router.complete(StepRequest("answer", MESSAGES))
    router.close(timeout=30)
    assert router.shadow.counts() == {("answer", "tie"): 1, ("answer", "skipped_budget"): 1}


def test_shadow_errors_never_reach_the_user(llmock, tmp_path, caplog):
    llmock.add(Reply(text="Paris", times=None, match=Match(model=LIVE)))
    llmock.add(Fail(500, times=None, match=Match(model=CANDIDATE)))
    router = router_for(llmock, tmp_path)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        results = [router.complete(StepRequest("answer", MESSAGES)) for _ in range(2)]
        router.close(timeout=60)
    assert [r.completion.content for r in results] == ["Paris", "Paris"]
    assert router.shadow is not None and router.shadow.counts() == {("answer", "error"): 2}
    told = [r.getMessage() for r in caplog.records if "shadow call" in r.getMessage()]
    assert len(told) == 1 and "the user's call is not affected" in told[0] and "sk-llmock" not in told[0]
    assert log_of(router, tmp_path).shadows == []


def test_async_and_streamed_calls_are_shadowed_once_answered(llmock, tmp_path):
    llmock.add(Reply(text="Paris", times=None))
    router = router_for(llmock, tmp_path)

    async def main() -> str:
        await router.acomplete(StepRequest("answer", MESSAGES))
        parts = [getattr(item, "content", "") async for item in router.astream(StepRequest("answer", MESSAGES))]
        await router.aclose(timeout=30)
        return parts[-1]

    assert asyncio.run(main()) == "Paris"
    streamed = list(router.stream(StepRequest("answer", MESSAGES)))
    assert streamed[-1].content == "Paris"  # type: ignore[union-attr]
    contents = log_of(router, tmp_path)
    assert [s["verdict"] for s in contents.shadows] == ["tie", "tie"]  # the router was closed before the sync stream


def test_closing_drops_what_does_not_finish_in_time(llmock, tmp_path):
    llmock.add(Reply(text="Paris", times=None))
    llmock.add(Delay(3.0, times=None, match=Match(model=CANDIDATE)))
    router = router_for(llmock, tmp_path)
    router.complete(StepRequest("answer", MESSAGES))
    started = time.perf_counter()
    assert router.close(timeout=0.2) == 1
    assert time.perf_counter() - started < 1.0
    assert router.shadow is not None
    deadline = time.monotonic() + 10
    while router.shadow.in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert router.shadow.counts() == {("answer", "dropped"): 1}
    assert log_of(router, tmp_path).shadows == []


def test_steproute_report_shows_agreement_verdicts_with_intervals_and_the_cost_delta(llmock, tmp_path, capsys):
    import json

    from steproute.cli import main

    llmock.add(Reply(text="Paris", times=2, match=Match(model=CANDIDATE)))
    llmock.add(Reply(text="Lyon", times=None, match=Match(model=CANDIDATE)))
    llmock.add(Reply(text="Paris", times=None, match=Match(model=LIVE)))
    router = router_for(llmock, tmp_path, max_concurrency=8)
    for _ in range(4):
        router.complete(StepRequest("answer", MESSAGES))
        deadline = time.monotonic() + 30
        while router.shadow is not None and router.shadow.in_flight() and time.monotonic() < deadline:
            time.sleep(0.01)  # one at a time, so the scripted replies come in order
    router.close(timeout=30)
    log_of(router, tmp_path)
    path = str(tmp_path / "decisions.jsonl")
    assert main(["report", path]) == 0
    text = capsys.readouterr().out
    section = text[text.index("shadow (candidate against the live tier"):]
    row = next(line for line in section.splitlines() if line.startswith("answer"))
    assert row.split()[:3] == ["answer", "4", "0"]
    assert "2 (50% [15%–85%])" in row  # two ties, two losses of four judged: Wilson 95%
    assert main(["report", path, "--json"]) == 0
    [step] = json.loads(capsys.readouterr().out)["shadow"]
    assert (step["step"], step["decided"], step["agreed"], step["judged"]) == ("answer", 4, 0, 4)
    assert (step["win"], step["tie"], step["loss"]) == (0, 2, 2)
    assert [round(x, 3) for x in step["tie_95"]] == [0.15, 0.85]
    assert step["shadow_cost_usd"] > step["live_cost_usd"] > 0  # gpt-4o costs more than gpt-4o-mini
    assert step["cost_delta_usd"] == pytest.approx(step["shadow_cost_usd"] - step["live_cost_usd"])


def test_an_async_call_is_shadowed_by_a_task_on_its_loop_and_aclose_waits_or_drops(llmock, tmp_path):
    import threading

    llmock.add(Reply(text="Paris", times=None))
    llmock.add(Delay(1.5, times=2, match=Match(model=CANDIDATE)))
    router = router_for(llmock, tmp_path)
    assert router.shadow is not None

    async def main() -> tuple[float, int, int, int]:
        await router.acomplete(StepRequest("warm", MESSAGES))
        threads = threading.active_count()
        started = time.perf_counter()
        await router.acomplete(StepRequest("answer", MESSAGES))
        elapsed = time.perf_counter() - started
        assert router.shadow is not None and router.shadow.in_flight() == 1
        shadow_threads = threading.active_count() - threads
        waited = await router.aclose(timeout=30)
        return elapsed, shadow_threads, waited, router.shadow.in_flight()

    elapsed, shadow_threads, waited, left = asyncio.run(main())
    assert elapsed < 1.0 and shadow_threads == 0 and waited == 0 and left == 0
    assert [s["verdict"] for s in log_of(router, tmp_path).shadows] == ["tie"]
    assert router.shadow.counts() == {("answer", "tie"): 1}

    (tmp_path / "slow").mkdir()
    slow = router_for(llmock, tmp_path / "slow")

    async def drop() -> int:
        await slow.acomplete(StepRequest("answer", MESSAGES))
        return await slow.aclose(timeout=0.2)

    assert asyncio.run(drop()) == 1
    assert slow.shadow is not None and slow.shadow.counts() == {("answer", "dropped"): 1}
