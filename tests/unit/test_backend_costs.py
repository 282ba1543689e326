"""A trace's cost as Langfuse, LangSmith and Phoenix add it up from steproute's spans.

No backend server runs here (Langfuse's needs ClickHouse; LangSmith's is closed), and neither
vendor's Python SDK parses OpenTelemetry attributes (both only write them). So each backend's
reading is transcribed below, from its source or documentation, and applied to the spans the
OpenTelemetry SDK's in-memory exporter received:

- Langfuse: ``packages/shared/src/server/otel/OtelIngestionProcessor.ts`` (``extractCostDetails``,
  ``extractUsageDetails``, ``extractModelName``), ``.../otel/ObservationTypeMapper.ts`` and
  ``worker/src/services/IngestionService/index.ts`` (``calculateUsageCosts``: a provided cost
  point wins; otherwise usage times the matched model's prices) in langfuse/langfuse; a trace's
  cost is the sum of its observations' ``total_cost``.
- LangSmith: docs.langchain.com/langsmith/trace-with-opentelemetry (attribute mapping:
  ``langsmith.span.kind``, ``langsmith.metadata.{key}``, the OpenInference ``metadata`` JSON
  merged into the run's metadata, ``gen_ai.usage.*``) and /langsmith/cost-tracking (a run's
  ``usage_metadata`` costs are used as sent; otherwise tokens times the price map entry matching
  ``ls_model_name``); a trace's cost is the sum over its runs.
- Phoenix 20: each LLM span priced from ``llm.model_name`` and ``llm.token_count.*`` at the
  registered prices (``steproute.phoenix.register_prices``); ``tests/e2e/test_phoenix.py`` reads
  a real Phoenix's total back.

Each reader is given its backend's own price table set to a price no call has ($1 a token), so
a total equal to steproute's can only come from the cost steproute sent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.phoenix import model_prices
from tests.conftest import mock_tiers

WRONG = 1.0
"""The backends' own price per token: no model costs that, so a matching total is steproute's."""

# -- Langfuse (langfuse/langfuse, packages/shared/src/server/otel) ------------------------------

_LF_TYPES = {"span": "SPAN", "generation": "GENERATION", "agent": "AGENT", "tool": "TOOL", "chain": "CHAIN"}
_OI_TYPES = {"CHAIN": "CHAIN", "LLM": "GENERATION", "AGENT": "AGENT", "TOOL": "TOOL"}
_GENAI_TYPES = {"chat": "GENERATION", "invoke_agent": "AGENT", "execute_tool": "TOOL"}
_LF_USAGE_KEYS = {"prompt_tokens": "input", "completion_tokens": "output", "total_tokens": "total",
                  "input_tokens": "input", "output_tokens": "output", "prompt": "input", "completion": "output"}


def langfuse_observation(span: ReadableSpan) -> dict[str, Any]:
    """An OTLP span as Langfuse's ingestion makes it an observation: type, model, usage, cost."""
    a = dict(span.attributes or {})
    kind = (_LF_TYPES.get(str(a.get("langfuse.observation.type")))
            or _OI_TYPES.get(str(a.get("openinference.span.kind")))
            or _GENAI_TYPES.get(str(a.get("gen_ai.operation.name")))
            or ("GENERATION" if any(a.get(k) for k in ("gen_ai.request.model", "gen_ai.response.model",
                                                       "llm.model_name")) else "SPAN"))
    model = next((a[k] for k in ("langfuse.observation.model.name", "gen_ai.response.model", "gen_ai.request.model",
                                 "llm.model_name") if a.get(k)), None)
    if a.get("langfuse.observation.usage_details"):
        usage = json.loads(a["langfuse.observation.usage_details"])
    else:
        usage = {}
        for key, value in a.items():
            if (key.startswith("gen_ai.usage.") and key != "gen_ai.usage.cost") or key.startswith("llm.token_count."):
                name = key.removeprefix("gen_ai.usage.").removeprefix("llm.token_count.")
                usage[_LF_USAGE_KEYS.get(name, name)] = float(value)
    if a.get("langfuse.observation.cost_details"):
        provided = json.loads(a["langfuse.observation.cost_details"])
    elif a.get("gen_ai.usage.cost"):
        provided = {"total": a["gen_ai.usage.cost"]}
    else:
        provided = {}
    provided = {k: v for k, v in provided.items() if v is not None}
    if provided:
        total = provided.get("total", provided.get("input", 0) + provided.get("output", 0))
    else:  # inferred: usage times the matched model's prices (Langfuse's table, here $1 a token)
        priced = {k: n * WRONG for k, n in usage.items() if model and k in ("input", "output")}
        total = sum(priced.values()) if priced else None
    return {"name": span.name, "type": kind, "model": model, "usage": usage, "total_cost": total}


def langfuse_trace_cost(spans: list[ReadableSpan]) -> float:
    return sum(o["total_cost"] or 0.0 for o in map(langfuse_observation, spans))


# -- LangSmith (docs.langchain.com/langsmith/trace-with-opentelemetry, /cost-tracking) ----------

_LS_OI_TYPES = {"LLM": "llm", "CHAIN": "chain", "AGENT": "chain", "TOOL": "tool"}


def langsmith_run(span: ReadableSpan) -> dict[str, Any]:
    """An OTLP span as LangSmith's OpenTelemetry ingestion makes it a run: type, metadata, cost."""
    a = dict(span.attributes or {})
    run_type = (str(a.get("langsmith.span.kind", "")).lower()
                or _LS_OI_TYPES.get(str(a.get("openinference.span.kind")))
                or ("llm" if a.get("gen_ai.operation.name") in ("chat", "completion") else "chain"))
    metadata: dict[str, Any] = json.loads(a["metadata"]) if a.get("metadata") else {}
    metadata.update({k.removeprefix("langsmith.metadata."): v for k, v in a.items() if k.startswith("langsmith.metadata.")})
    usage = dict(metadata.get("usage_metadata") or {})
    for key, name in (("gen_ai.usage.input_tokens", "input_tokens"), ("gen_ai.usage.output_tokens", "output_tokens"),
                      ("gen_ai.usage.total_tokens", "total_tokens"), ("llm.token_count.prompt", "input_tokens"),
                      ("llm.token_count.completion", "output_tokens"), ("llm.token_count.total", "total_tokens")):
        if key in a:
            usage.setdefault(name, a[key])
    if "total_cost" in usage or "input_cost" in usage or "output_cost" in usage:
        cost = usage.get("total_cost", usage.get("input_cost", 0) + usage.get("output_cost", 0))
    elif run_type == "llm" and metadata.get("ls_model_name"):  # the price map (here $1 a token)
        cost = (usage.get("input_tokens", 0) + usage.get("output_tokens", 0)) * WRONG
    else:
        cost = 0.0
    return {"name": span.name, "run_type": run_type, "metadata": metadata, "usage_metadata": usage, "cost": cost}


def langsmith_trace_cost(spans: list[ReadableSpan]) -> float:
    return sum(r["cost"] for r in map(langsmith_run, spans))


# -- Phoenix 20 (prices each LLM span itself, at the prices register_prices gave it) ------------


def phoenix_trace_cost(spans: list[ReadableSpan], config: RouterConfig) -> float:
    prices, total = model_prices(config), 0.0
    for span in spans:
        a = span.attributes or {}
        if a.get("openinference.span.kind") != "LLM" or "llm.token_count.prompt" not in a:
            continue
        price = prices[a["llm.model_name"]]
        cached = a.get("llm.token_count.prompt_details.cache_read", 0)
        total += ((a["llm.token_count.prompt"] - cached) * price.input + cached * (price.cache_read or price.input)
                  + a["llm.token_count.completion"] * price.output)
    return total


# -- the calls ------------------------------------------------------------------------------------

ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}
HEDGING = {
    "fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "I'm not sure, maybe 12.", "api_key": "k"}]},
    "standard": {"models": [{"model": "openai/gpt-4.1-mini", "mock_response": '{"n": 12}', "api_key": "k"}]},
    "advanced": {"models": [{"model": "openai/gpt-4o", "mock_response": '{"n": 12}', "api_key": "k"}]},
}


def run(scenario: str) -> tuple[Any, list[ReadableSpan], RouterConfig]:
    """One routed call of ``scenario``: its result, every span it made, the configuration."""
    ask = StepRequest("s", [{"role": "user", "content": "What is 5 + 7?"}])
    tools, streamed = None, scenario.startswith("streamed ")
    scenario = scenario.removeprefix("streamed ")
    if scenario == "routed":
        config = RouterConfig(tiers=mock_tiers(), default="fast", baseline="advanced")
    elif scenario == "cascade":  # fast hedges: rejected, paid for; standard answers
        config = RouterConfig(tiers=HEDGING, default="fast", steps={"s": {"policy": "cascade"}})
    elif scenario == "fallback":  # fast answers a malformed tool call (paid for): the next tier answers
        tiers = mock_tiers()
        tiers["fast"] = {"tool_calling": "json", "models": [{"model": "openai/gpt-4o-mini", "api_key": "k",
                                                             "mock_response": '{"tool": "add", "arguments": ' + "[" * 20_000}]}
        config, tools = RouterConfig(tiers=tiers, default="fast"), [ADD]
    else:  # in-tier fallback: the tier's first deployment fails (unpaid), its second answers
        tiers = mock_tiers()
        tiers["advanced"]["models"] = [
            {"model": "openai/gpt-4o", "mock_response": "litellm.InternalServerError", "api_key": "k"},
            {"model": "openai/gpt-4.1", "mock_response": "from the second", "api_key": "k"}]
        config = RouterConfig(tiers=tiers, default="advanced")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = StepRouter(config, tracer_provider=provider)
    result = list(router.stream(ask, tools=tools))[-1] if streamed else router.complete(ask, tools=tools)
    return result, list(exporter.get_finished_spans()), config


SCENARIOS = ["routed", "cascade", "fallback", "streamed fallback", "deployment fallback"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_backend_adds_the_trace_up_to_the_steps_cost(scenario):
    result, spans, config = run(scenario)
    (route,) = [s for s in spans if s.name.startswith("route ")]
    chats = [s for s in spans if s.name.startswith("chat ")]
    step_cost = result.cost_usd
    assert step_cost > 0 and route.attributes["steproute.step.cost.usd"] == pytest.approx(step_cost)
    if scenario != "routed":
        assert len(chats) == 2, [c.name for c in chats]  # the attempt that did not answer has its own span
    if scenario in ("cascade", "fallback", "streamed fallback"):
        (answer,) = [c for c in chats if "error.type" not in c.attributes
                     and c.attributes.get("steproute.cascade.role", "answer") == "answer"]
        assert step_cost > answer.attributes["steproute.cost.usd"]  # the rejected or malformed attempt was paid for
    assert langfuse_trace_cost(spans) == pytest.approx(step_cost, rel=1e-9)
    assert langsmith_trace_cost(spans) == pytest.approx(step_cost, rel=1e-9)
    assert phoenix_trace_cost(spans, config) == pytest.approx(step_cost, rel=1e-9)
    # Each chat span is one backend cost of its own call; the route span adds nothing.
    assert [langfuse_observation(s)["total_cost"] for s in chats] == pytest.approx(
        [s.attributes["steproute.cost.usd"] for s in chats])
    assert langfuse_observation(route)["total_cost"] is None and langsmith_run(route)["cost"] == 0.0
    assert (langfuse_observation(route)["type"], langsmith_run(route)["run_type"]) == ("CHAIN", "chain")


def test_without_steproutes_cost_the_backends_would_price_the_calls_themselves():
    """The readers do read the attributes: strip the costs and each falls back to its own table."""
    result, spans, _ = run("routed")
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    own = {k: v for k, v in chat.attributes.items()
           if k not in ("langfuse.observation.cost_details", "gen_ai.usage.cost", "metadata")}
    stripped = ReadableSpan(name=chat.name, attributes=own)
    tokens = result.completion.usage.input_tokens + result.completion.usage.output_tokens
    assert langfuse_observation(stripped)["total_cost"] == pytest.approx(tokens * WRONG)
    assert langsmith_run(stripped)["cost"] == pytest.approx(tokens * WRONG)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chat_spans_carry_each_backends_cost_usage_model_and_type(scenario):
    result, spans, _ = run(scenario)
    for chat in (s for s in spans if s.name.startswith("chat ")):
        a = chat.attributes
        model, provider, cost = a["gen_ai.request.model"], a["gen_ai.provider.name"], a["steproute.cost.usd"]
        # Langfuse: a generation of the configured model, at steproute's cost, never its own price
        assert a["langfuse.observation.type"] == "generation"
        assert a["langfuse.observation.model.name"] == model
        assert json.loads(a["langfuse.observation.cost_details"]) == {"total": pytest.approx(cost)}
        assert a["gen_ai.usage.cost"] == pytest.approx(cost)
        # LangSmith: an llm run, its provider and model as LangChain names them, the cost as usage_metadata
        assert a["langsmith.span.kind"] == "llm"
        assert a["langsmith.metadata.ls_provider"] == provider == "openai"
        assert a["langsmith.metadata.ls_model_name"] == model.removeprefix("openai/")
        usage_metadata = json.loads(a["metadata"])["usage_metadata"]
        assert usage_metadata["total_cost"] == pytest.approx(cost)
        observation, run_ = langfuse_observation(chat), langsmith_run(chat)
        assert (observation["type"], observation["model"], run_["run_type"]) == ("GENERATION", model, "llm")
        if "gen_ai.usage.input_tokens" in a:  # an answered call: its tokens, the same in both
            i, o = a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]
            assert json.loads(a["langfuse.observation.usage_details"]) == {"input": i, "output": o, "total": i + o}
            assert a["gen_ai.usage.total_tokens"] == i + o
            assert {k: usage_metadata[k] for k in ("input_tokens", "output_tokens", "total_tokens")} == {
                "input_tokens": i, "output_tokens": o, "total_tokens": i + o}
        else:  # a failed attempt: no usage, and still a cost (0, or what a malformed answer cost)
            assert "langfuse.observation.usage_details" not in a and set(usage_metadata) == {"total_cost"}
    (route,) = [s for s in spans if s.name.startswith("route ")]
    summed = {"gen_ai.usage.cost", "langfuse.observation.cost_details", "langfuse.observation.usage_details",
              "langfuse.observation.model.name", "metadata", "llm.cost.total", "gen_ai.usage.input_tokens",
              "gen_ai.usage.total_tokens", "llm.token_count.total", "gen_ai.request.model", "llm.model_name"}
    assert not summed & set(route.attributes), "the route span would count the step twice"
    assert route.attributes["output.value"].startswith(f"tier {result.decision.tier} · $")


def test_cached_input_tokens_are_their_own_usage_type():
    from steproute.tracing_backends import chat_cost_attributes
    from steproute.types import Usage

    a = chat_cost_attributes("anthropic/claude-haiku-4-5", "anthropic", 0.0021, Usage(1000, 50, cache_read_tokens=800))
    assert json.loads(a["langfuse.observation.usage_details"]) == {
        "input": 200, "input_cached_tokens": 800, "output": 50, "total": 1050}
    usage_metadata = json.loads(a["metadata"])["usage_metadata"]
    assert usage_metadata == {"input_tokens": 1000, "output_tokens": 50, "total_tokens": 1050,
                              "input_token_details": {"cache_read": 800}, "total_cost": 0.0021}
    assert a["langsmith.metadata.ls_model_name"] == "claude-haiku-4-5"
