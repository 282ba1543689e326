"""Spans, metrics and the decision log of routed calls (OpenTelemetry SDK, in-memory)."""

from __future__ import annotations

import asyncio
import contextvars
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from steproute import DispatchError, RouterConfig, RoutingError, StepRequest, StepRouter, step
from steproute.decision_log import read_log, to_evaluation
from tests.conftest import mock_tiers


@pytest.fixture
def otel():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    class Otel:
        tracer = tracer_provider.get_tracer("test")

        @staticmethod
        def spans(prefix=""):
            return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]

        @staticmethod
        def metrics():
            data = reader.get_metrics_data()
            return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

        @staticmethod
        def router(tmp_path=None, **config):
            config.setdefault("tiers", mock_tiers())
            config.setdefault("default", "fast")
            log = tmp_path / "decisions.jsonl" if tmp_path is not None else None
            return StepRouter(RouterConfig(**config), tracer_provider=tracer_provider, meter_provider=meter_provider,
                              decision_log=log)

    return Otel


def test_route_and_chat_spans_carry_the_decision_and_the_cost(otel):
    router = otel.router(steps={"plan": "advanced"}, baseline="advanced")
    result = router.complete(StepRequest("extract", [{"role": "user", "content": "x"}], kind="extract",
                                         thread="t-1", metadata={"langgraph_node": "extract_node"}))
    (route,) = otel.spans("route")
    (chat,) = otel.spans("chat")
    assert route.name == "route extract" and route.kind == SpanKind.INTERNAL
    assert chat.name == "chat openai/gpt-4o-mini" and chat.kind == SpanKind.CLIENT
    assert chat.parent.span_id == route.context.span_id and chat.context.trace_id == route.context.trace_id
    a = route.attributes
    assert (a["steproute.step"], a["steproute.step.kind"], a["steproute.tier"], a["steproute.policy"]) == (
        "extract", "extract", "fast", "fixed")
    assert a["steproute.decision.reason"] == result.decision.reason and a["steproute.decision.id"] == result.decision.id
    assert a["gen_ai.conversation.id"] == "t-1" and a["langgraph.node"] == "extract_node"
    assert a["steproute.pinned"] is False and "steproute.escalated_from" not in a
    assert a["steproute.step.cost.usd"] == pytest.approx(result.cost_usd)
    assert a["steproute.step.baseline_cost.usd"] == pytest.approx(result.baseline_cost_usd)
    assert a["steproute.step.savings.usd"] == pytest.approx(result.savings_usd) and result.savings_usd > 0
    c = chat.attributes
    assert (c["gen_ai.operation.name"], c["gen_ai.provider.name"], c["gen_ai.request.model"]) == (
        "chat", "openai", "openai/gpt-4o-mini")
    assert c["gen_ai.usage.input_tokens"] == result.completion.usage.input_tokens > 0
    assert c["gen_ai.usage.output_tokens"] == result.completion.usage.output_tokens > 0
    assert c["steproute.cost.usd"] == c["gen_ai.usage.cost"] == c["llm.cost.total"] == pytest.approx(result.cost_usd)
    assert c["llm.token_count.total"] == result.completion.usage.total_tokens
    assert "error.type" not in c and "decision" not in " ".join(e.name for e in route.events)  # attributes, not events


def test_spans_nest_under_the_callers_span_in_every_path(otel):
    router = otel.router()
    llm = router.chat_model(step="s")

    class State(TypedDict, total=False):
        a: str
        b: str

    builder = StateGraph(State)  # two nodes in one superstep: LangGraph runs them on its thread pool
    builder.add_node("left", lambda s: {"a": llm.invoke("l").text}, metadata=step("left"))
    builder.add_node("right", lambda s: {"b": llm.invoke("r").text}, metadata=step("right"))
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    builder.add_edge("left", END)
    builder.add_edge("right", END)
    graph = builder.compile()

    def in_pool():
        # A plain thread pool does not carry contextvars: submit with the caller's context, as
        # LangChain's batch and LangGraph do.
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(contextvars.copy_context().run, llm.invoke, "p") for _ in range(2)]
            return [f.result() for f in futures]

    async def run_async():
        await llm.ainvoke("a")
        async for _ in llm.astream("as"):
            pass

    paths = {
        "invoke": lambda: llm.invoke("x"),
        "stream": lambda: list(llm.stream("x")),
        "batch": lambda: llm.batch(["x", "y", "z"]),
        "async": lambda: asyncio.run(run_async()),
        "graph": lambda: graph.invoke({}),
        "thread pool": in_pool,
    }
    for name, call in paths.items():
        with otel.tracer.start_as_current_span(f"user {name}") as user:
            call()
        routes = [s for s in otel.spans("route") if s.context.trace_id == user.get_span_context().trace_id]
        expected = {"invoke": 1, "stream": 1, "batch": 3, "async": 2, "graph": 2, "thread pool": 2}[name]
        assert len(routes) == expected, name
        assert {r.parent.span_id for r in routes} == {user.get_span_context().span_id}, name


def test_a_failed_dispatch_marks_both_spans(otel):
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = "litellm.InternalServerError"  # LiteLLM raises it
    router = otel.router(tiers=tiers, default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"})
    with pytest.raises(DispatchError):
        router.complete(StepRequest("s", [{"role": "user", "content": "x"}]))
    (route,) = otel.spans("route")
    (chat,) = otel.spans("chat")
    assert chat.status.status_code == StatusCode.ERROR and route.status.status_code == StatusCode.ERROR
    assert chat.attributes["error.type"] == route.attributes["error.type"] == "InternalServerError"
    calls = otel.metrics()["steproute.calls"].data.data_points
    assert [p.attributes.get("error.type") for p in calls] == ["InternalServerError"]


def test_a_routing_error_ends_the_route_span(otel):
    router = otel.router()
    with pytest.raises(RoutingError):
        router.complete(StepRequest("s", [{"role": "user", "content": "x"}], hint=__import__("steproute").Hint("gold")))
    (route,) = otel.spans("route")
    assert route.attributes["error.type"] == "RoutingError" and not otel.spans("chat")


def test_metrics_count_cost_calls_tokens_and_latency(otel):
    router = otel.router(steps={"plan": "advanced"})
    results = [router.complete(StepRequest(s, [{"role": "user", "content": "hello"}])) for s in ("a", "plan", "a")]
    m = otel.metrics()
    cost = {(p.attributes["steproute.step"], p.attributes["steproute.tier"]): p.value
            for p in m["steproute.cost"].data.data_points}
    assert cost[("a", "fast")] == pytest.approx(results[0].cost_usd + results[2].cost_usd)
    assert cost[("plan", "advanced")] == pytest.approx(results[1].cost_usd)
    calls = {p.attributes["steproute.step"]: p.value for p in m["steproute.calls"].data.data_points}
    assert calls == {"a": 2, "plan": 1}
    point = m["steproute.calls"].data.data_points[0].attributes
    assert set(point) == {"steproute.step", "steproute.tier", "gen_ai.request.model", "steproute.policy", "steproute.pinned"}
    tokens = {p.attributes["gen_ai.token.type"]: p.count for p in m["gen_ai.client.token.usage"].data.data_points
              if p.attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"}
    assert tokens == {"input": 2, "output": 2}
    assert sum(p.count for p in m["gen_ai.client.operation.duration"].data.data_points) == 3
    assert sum(p.count for p in m["steproute.decision.duration"].data.data_points) == 3


def test_the_decision_log_has_one_line_per_call_and_takes_feedback(otel, tmp_path):
    router = otel.router(tmp_path)
    ok = router.complete(StepRequest("extract", [{"role": "user", "content": "secret prompt"}], thread="t"))
    list(router.stream(StepRequest("rewrite", [{"role": "user", "content": "x"}])))
    router.feedback(ok.decision.id, 1.0, rater="unit-test")
    with pytest.raises(ValueError, match=r"quality must be a number in \[0, 1\], got 1.5"):
        router.feedback(ok.decision.id, 1.5)
    router.decision_log.flush()
    contents = read_log(tmp_path / "decisions.jsonl")
    assert contents.problems == []
    first, second = contents.decisions
    assert first["id"] == ok.decision.id and first["step"] == "extract" and first["model"] == "openai/gpt-4o-mini"
    assert first["cost_usd"] == pytest.approx(ok.cost_usd) and first["baseline_cost_usd"] == pytest.approx(ok.baseline_cost_usd)
    assert first["input_tokens"] > 0 and first["latency_s"] > 0 and first["thread"] == "t"
    (route,) = [s for s in otel.spans("route") if s.attributes["steproute.decision.id"] == ok.decision.id]
    assert first["trace_id"] == format(route.context.trace_id, "032x")
    assert "messages" not in first and "response" not in first  # prompts only when opted in
    assert "secret prompt" not in (tmp_path / "decisions.jsonl").read_text()
    assert second["step"] == "rewrite" and second["output_tokens"] > 0
    (row,) = to_evaluation(contents)
    assert row["outcomes"] == {"openai/gpt-4o-mini": {"quality": 1.0, "cost_usd": first["cost_usd"]}}


def test_prompts_are_logged_only_when_asked(tmp_path):
    from steproute.decision_log import JsonlDecisionLog

    log = JsonlDecisionLog(tmp_path / "d.jsonl", include_prompts=True)
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"), decision_log=log)
    result = router.complete(StepRequest("s", [{"role": "user", "content": "what is 2+2"}]))
    router.feedback(result.decision.id, 0.5)
    log.close()
    (row,) = to_evaluation(read_log(tmp_path / "d.jsonl"))
    assert row["messages"] == [{"role": "user", "content": "what is 2+2"}]
    assert row["outcomes"]["openai/gpt-4o-mini"] == {"quality": 0.5, "cost_usd": result.cost_usd,
                                                     "response": "answer from fast"}


def test_bad_log_lines_are_reported_with_their_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([
        json.dumps({"type": "decision", "id": "d-1", "model": "m"}),
        "{not json",
        json.dumps({"type": "feedback", "id": "d-1", "quality": "good"}),
        json.dumps({"type": "mystery", "id": "d-2"}),
        json.dumps(["no", "id"]),
    ]) + "\n")
    contents = read_log(path)
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in contents.problems] == ["2", "3", "4", "5"]
    assert "quality must be a number in [0, 1]" in contents.problems[1]
    assert list(to_evaluation(contents)) == []


def test_feedback_needs_a_log():
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"))
    with pytest.raises(ValueError, match="feedback needs a decision log"):
        router.feedback("d-1", 1.0)


def _two_deployment_tiers(first: str, second: str):
    tiers = mock_tiers()
    tiers["advanced"]["models"] = [
        {"model": "openai/gpt-4o", "mock_response": first, "api_key": "sk-test"},
        {"model": "openai/gpt-4.1", "mock_response": second, "api_key": "sk-test"},
    ]
    return tiers


def test_every_attempt_in_a_tier_gets_its_own_chat_span(otel, tmp_path):
    router = otel.router(tmp_path, tiers=_two_deployment_tiers("litellm.InternalServerError", "from the second"),
                         steps={"plan": "advanced"})
    result = router.complete(StepRequest("plan", [{"role": "user", "content": "x"}]))
    assert result.completion.content == "from the second" and result.decision.model == "openai/gpt-4.1"
    assert [(a.model, a.error_type) for a in result.completion.failed_attempts] == [
        ("openai/gpt-4o", "InternalServerError")]
    failed, answered = sorted(otel.spans("chat"), key=lambda s: s.start_time)
    (route,) = otel.spans("route")
    assert failed.name == "chat openai/gpt-4o" and failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "InternalServerError" and failed.attributes["steproute.cost.usd"] == 0
    assert answered.name == "chat openai/gpt-4.1" and answered.status.status_code != StatusCode.ERROR
    assert failed.end_time <= answered.start_time and {failed.parent.span_id, answered.parent.span_id} == {
        route.context.span_id}
    assert route.attributes["steproute.step.cost.usd"] == pytest.approx(answered.attributes["steproute.cost.usd"])
    router.decision_log.flush()
    (entry,) = read_log(tmp_path / "decisions.jsonl").decisions
    assert entry["failed_attempts"] == [{"model": "openai/gpt-4o", "error_type": "InternalServerError"}]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_dispatch_error_names_every_attempt(otel, mode):
    router = otel.router(tiers=_two_deployment_tiers("litellm.InternalServerError", "litellm.RateLimitError"),
                         steps={"plan": "advanced"})
    request = StepRequest("plan", [{"role": "user", "content": "x"}])
    with pytest.raises(DispatchError) as caught:
        router.complete(request) if mode == "sync" else asyncio.run(router.acomplete(request))
    attempts = [(a.model, a.error_type) for a in caught.value.attempts]
    assert ("openai/gpt-4o", "InternalServerError") in attempts and ("openai/gpt-4.1", "RateLimitError") in attempts
    assert "openai/gpt-4o (InternalServerError)" in str(caught.value)
    spans = otel.spans("chat")
    assert {s.name for s in spans} == {"chat openai/gpt-4o", "chat openai/gpt-4.1"}
    assert all(s.status.status_code == StatusCode.ERROR for s in spans)


def test_a_streamed_fallback_shows_the_failed_attempt_too(otel):
    router = otel.router(tiers=_two_deployment_tiers("litellm.InternalServerError", "streamed"), steps={"plan": "advanced"})
    items = list(router.stream(StepRequest("plan", [{"role": "user", "content": "x"}])))
    assert items[-1].decision.model == "openai/gpt-4.1"
    names = [s.name for s in sorted(otel.spans("chat"), key=lambda s: s.start_time)]
    assert names == ["chat openai/gpt-4o", "chat openai/gpt-4.1"]


def test_the_log_writer_queue_is_bounded_and_loses_nothing(tmp_path):
    from steproute.decision_log import JsonlDecisionLog

    with pytest.raises(ValueError, match="max_pending must be at least 1"):
        JsonlDecisionLog(tmp_path / "x.jsonl", max_pending=0)
    log = JsonlDecisionLog(tmp_path / "d.jsonl", max_pending=2, flush_interval_s=0.001, max_wait_s=5)
    for i in range(300):  # far more than fit: with max_wait_s, writers wait (bounded) for room
        log.write({"type": "decision", "id": f"d-{i}"})
    assert log._queue.maxsize == 2
    log.close()
    assert [d["id"] for d in read_log(tmp_path / "d.jsonl").decisions] == [f"d-{i}" for i in range(300)]
    assert log.dropped == 0


def test_the_route_span_summary_shows_tier_and_cost_readable_at_fractions_of_a_cent(otel):
    router = otel.router(baseline="advanced")
    result = router.complete(StepRequest("extract", [{"role": "user", "content": "x"}]))
    (route,) = otel.spans("route")
    summary = route.attributes["output.value"]
    assert route.attributes["steproute.summary"] == summary and route.attributes["output.mime_type"] == "text/plain"
    assert summary.startswith("tier fast · $0.0") and "<" not in summary
    from steproute.telemetry import usd

    assert usd(result.cost_usd) in summary and usd(result.baseline_cost_usd) in summary
    assert (usd(0.0017), usd(0.000012345), usd(2.5), usd(0)) == ("$0.0017", "$0.000012", "$2.50", "$0")


def test_chat_spans_name_the_priced_model_for_phoenix_and_carry_no_content_by_default(otel):
    router = otel.router()
    router.complete(StepRequest("extract", [{"role": "user", "content": "Mail ann@example.org"}]))
    (chat,) = otel.spans("chat")
    assert chat.attributes["llm.model_name"] == "openai/gpt-4o-mini"  # the model steproute priced the call at
    cost = chat.attributes["steproute.cost.usd"]
    assert json.loads(chat.attributes["langfuse.observation.cost_details"]) == {"total": cost}  # Langfuse's cost
    (route,) = otel.spans("route")  # the step's total under steproute's names only: a backend never adds it twice
    assert not {"llm.cost.total", "gen_ai.usage.cost", "langfuse.observation.cost_details"} & set(route.attributes)
    assert "input.value" not in chat.attributes and "output.value" not in chat.attributes


def test_recorded_content_is_opt_in_and_redacted_by_the_pii_guard(otel):
    from opentelemetry.sdk.trace import TracerProvider as Provider

    exporter = InMemorySpanExporter()
    provider = Provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = RouterConfig(tiers=mock_tiers(), default="fast", guards={"pii": {"tier": "advanced"}})
    router = StepRouter(config, tracer_provider=provider, record_content=True)
    router.complete(StepRequest("a", [{"role": "user", "content": "What is 12 + 30?"}]))
    router.complete(StepRequest("b", [{"role": "user", "content": "Mail me at ann@example.org"}]))
    chats = {s.parent.span_id: s for s in exporter.get_finished_spans() if s.name.startswith("chat ")}
    routes = {s.attributes["steproute.step"]: s for s in exporter.get_finished_spans() if s.name.startswith("route ")}
    plain, personal = chats[routes["a"].context.span_id], chats[routes["b"].context.span_id]
    assert "What is 12 + 30?" in plain.attributes["input.value"] and plain.attributes["output.value"]
    assert "ann@example.org" not in json.dumps(dict(personal.attributes))
    assert personal.attributes["input.value"] == "[redacted by the PII guard: email]"


def test_configure_names_the_phoenix_project(monkeypatch):
    from steproute import telemetry
    from steproute.telemetry import configure

    monkeypatch.setattr(telemetry.trace, "set_tracer_provider", lambda provider: None)  # no global change
    monkeypatch.setattr(telemetry.metrics, "set_meter_provider", lambda provider: None)

    tracer_provider, meter_provider = configure(service_name="svc", endpoint="http://127.0.0.1:9", export_metrics=False)
    try:
        assert tracer_provider.resource.attributes["openinference.project.name"] == "svc"
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    tracer_provider, meter_provider = configure(service_name="svc", project_name="proj", endpoint="http://127.0.0.1:9",
                                                export_metrics=False)
    assert tracer_provider.resource.attributes["openinference.project.name"] == "proj"
    tracer_provider.shutdown()
    meter_provider.shutdown()


def test_a_price_registration_phoenix_does_not_answer_names_only_the_error_type():
    import socket

    from steproute.phoenix import register_prices

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = RouterConfig(tiers=mock_tiers(), default="fast")
    with pytest.raises(RuntimeError) as caught:
        register_prices(f"http://127.0.0.1:{port}", config, headers={"api_key": "sk-secret-123"}, wait=False)
    assert str(caught.value) == "Phoenix did not answer a price registration (ConnectError)"
