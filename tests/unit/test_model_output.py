"""Model output, nothing silent and nothing lost (issue 17): streams of ``n`` choices, replies a
``tool_calling: json`` tier cannot take (deep nesting, tool calls without a name), native tool
calls without a name, and streams their consumer abandons. All through real LiteLLM
(``mock_response``) and the router's and the chat model's own entry points.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import MalformedResponse, RouterConfig, StepRequest, StepRouter, model_output, step
from steproute.decision_log import JsonlDecisionLog, read_log
from steproute.json_tools import MAX_DEPTH, MalformedReply, parse_reply
from steproute.pricing import call_cost
from tests.conftest import mock_tiers

ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}
TEXT = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun."
SECRET = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def ask(tenant: str | None = None) -> StepRequest:
    return StepRequest("extract", [{"role": "user", "content": "Tell me about foxes."}], tenant=tenant)


def traced_router(tmp_path, tiers: dict[str, Any], **config: Any) -> tuple[StepRouter, JsonlDecisionLog,
                                                                          InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log = JsonlDecisionLog(tmp_path / "d.jsonl")
    config.setdefault("default", "fast")
    router = StepRouter(RouterConfig(tiers=tiers, **config), tracer_provider=provider, decision_log=log)
    return router, log, exporter


def entries(log: JsonlDecisionLog, path) -> list[dict[str, Any]]:
    log.close()
    return read_log(path).decisions


# -- 1. n > 1 streams --------------------------------------------------------------------------


def test_a_stream_of_two_choices_streams_the_first_choice_only(make_router):
    router = make_router(tiers=mock_tiers(mock_response=TEXT))
    items = list(router.stream(ask(), n=2))
    text = "".join(i.content for i in items[:-1])
    assert text == TEXT  # not the two choices glued piece by piece
    summary = items[-1]
    assert summary.content == TEXT
    assert router.complete(ask(), n=2).completion.content == text  # the same as the non-streamed call


def test_a_stream_of_two_choices_through_the_chat_model(make_router):
    llm = make_router(tiers=mock_tiers(mock_response=TEXT)).chat_model()
    assert "".join(c.text for c in llm.stream("foxes?", n=2)) == TEXT

    async def main() -> str:
        return "".join([c.text async for c in llm.astream("foxes?", n=2)])

    assert asyncio.run(main()) == TEXT
    assert llm.invoke("foxes?", n=2).text == TEXT


def test_two_choices_are_said_once_in_the_log(make_router, caplog, monkeypatch):
    monkeypatch.setattr(model_output, "_told_choices", threading.Event())  # as in a fresh process
    router = make_router(tiers=mock_tiers(mock_response=TEXT))
    with caplog.at_level(logging.WARNING, logger="steproute"):
        list(router.stream(ask(), n=2))
        list(router.stream(ask(), n=3))
        router.complete(ask(), n=2)
    said = [r.getMessage() for r in caplog.records if "choices" in r.getMessage()]
    assert len(said) == 1 and "first" in said[0]


# -- 2. json tool emulation: any reply, never a crash --------------------------------------------


def json_tiers(fast_reply: Any, strong_reply: Any = "answer from strong") -> dict[str, Any]:
    return {"fast": {"tool_calling": "json", "models": [
                {"model": "openai/gpt-4o-mini", "mock_response": fast_reply, "api_key": "sk-test"}]},
            "strong": {"models": [{"model": "openai/gpt-4o", "mock_response": strong_reply, "api_key": "sk-test"}]}}


@pytest.mark.parametrize("reply", [
    "[" * 100_000 + "]" * 100_000,
    '{"tool": "add", "arguments": ' + '{"a": ' * 5_000 + "1" + "}" * 5_001,
    '{"answer": ' + "[" * 50_000,
    "{" * 1_000_000,
])
def test_deeply_nested_replies_are_rejected_not_a_crash(reply):
    with pytest.raises(MalformedReply) as info:
        parse_reply(reply)
    assert f"deeper than {MAX_DEPTH}" in str(info.value) and "[[" not in str(info.value)


def test_a_deep_reply_falls_back_to_the_next_tier_and_says_why(tmp_path, caplog):
    router, log, exporter = traced_router(tmp_path, json_tiers('{"tool": "add", "arguments": ' + "[" * 20_000))
    with caplog.at_level(logging.WARNING, logger="steproute"):
        result = router.complete(ask(), tools=[ADD])
    assert result.decision.tier == "strong" and result.decision.fallback_from == "fast"
    assert result.completion.content == "answer from strong"
    assert "MalformedResponse" in result.decision.reason and "nested deeper than" in result.decision.reason
    (entry,) = entries(log, tmp_path / "d.jsonl")
    assert entry["fallback_from"] == "fast" and "MalformedResponse" in entry["reason"]
    errors = [s for s in exporter.get_finished_spans() if s.attributes.get("error.type") == "MalformedResponse"]
    assert len(errors) == 1 and errors[0].attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert sum("MalformedResponse" in r.getMessage() for r in caplog.records) == 1


def test_a_deep_reply_without_a_fallback_tier_is_a_typed_error():
    router = StepRouter(RouterConfig(tiers=json_tiers("[" * 20_000),
                                     default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"}))
    with pytest.raises(MalformedResponse) as info:
        router.complete(ask(), tools=[ADD])
    assert info.value.step == "extract" and info.value.tier == "fast"
    assert "nested deeper than" in str(info.value) and "[[" not in str(info.value)
    llm = router.chat_model().bind_tools([ADD])
    with pytest.raises(MalformedResponse):
        llm.invoke([HumanMessage("2+3?")])


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


def _tool_shaped(draw_name: Any, arguments: Any) -> str:
    return json.dumps({"tool": draw_name, "arguments": arguments})


@st.composite
def model_outputs(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "json", "tool", "answer", "deep", "cut"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "json":
        return json.dumps(draw(_json))
    if kind == "tool":
        name = draw(st.none() | st.text(max_size=12) | st.integers() | st.lists(st.text(max_size=3), max_size=2))
        data = {"tool": name, "arguments": draw(_json)}
        if draw(st.booleans()):
            del data["arguments"]
        return json.dumps(data)
    if kind == "answer":
        return json.dumps({"answer": draw(_json)})
    if kind == "deep":
        depth = draw(st.integers(min_value=MAX_DEPTH - 2, max_value=5_000))
        opener = draw(st.sampled_from(["[", "{\"a\": ", '{"tool": "add", "arguments": {"x": ']))
        return opener * depth + draw(st.sampled_from(["1", '"x"', ""])) + draw(st.sampled_from(["", "]" * depth]))
    text = json.dumps(draw(_json))
    return text[: draw(st.integers(min_value=0, max_value=len(text)))]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(model_outputs())
def test_parse_reply_takes_any_model_output(reply):
    try:
        text, calls = parse_reply(reply)
    except MalformedReply as exc:  # the only error it raises, and it never shows the reply
        message = str(exc)
        assert len(message) < 200 and (len(reply) < 8 or reply not in message)
        return
    assert isinstance(text, str) and isinstance(calls, tuple)
    for call_id, name, arguments in calls:
        assert isinstance(call_id, str) and call_id.startswith("call_")
        assert isinstance(name, str) and name.strip()
        assert isinstance(arguments, str)
        json.loads(arguments)  # JSON text
    assert not (calls and text)


# -- 3. tool calls without a name ----------------------------------------------------------------


def tool_response(name: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"a": 1}'}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}}


@pytest.mark.parametrize("reply", ['{"tool": null, "arguments": {}}', '{"tool": "", "arguments": {"a": 1}}',
                                   '{"tool": 7, "arguments": {}}', '{"tool": ["add"]}'])
def test_an_emulated_call_without_a_name_is_rejected(reply):
    with pytest.raises(MalformedReply, match="tool call without a usable name"):
        parse_reply(reply)


@pytest.mark.parametrize("name", [None, "", "   "])
def test_a_native_call_without_a_name_falls_back_and_says_why(tmp_path, name):
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = tool_response(name)
    router, log, exporter = traced_router(tmp_path, tiers)
    result = router.complete(ask(), tools=[ADD])
    assert result.decision.tier == "standard" and result.decision.fallback_from == "fast"
    assert not any(c.name == "" or not c.name.strip() for c in result.completion.tool_calls)
    assert "MalformedResponse" in result.decision.reason and "without a usable name" in result.decision.reason
    (entry,) = entries(log, tmp_path / "d.jsonl")
    assert "without a usable name" in entry["reason"]
    assert any(s.attributes.get("error.type") == "MalformedResponse" for s in exporter.get_finished_spans())


def test_a_native_call_without_a_name_and_no_fallback_is_a_typed_error():
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = tool_response(None)
    router = StepRouter(RouterConfig(tiers=tiers, default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"}))
    with pytest.raises(MalformedResponse, match="without a usable name"):
        router.complete(ask(), tools=[ADD])

    async def main() -> None:
        await router.chat_model().bind_tools([ADD]).ainvoke("add")

    with pytest.raises(MalformedResponse):
        asyncio.run(main())


def test_a_named_native_call_still_passes():
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = tool_response("add")
    message = StepRouter(RouterConfig(tiers=tiers, default="fast")).chat_model().bind_tools([ADD]).invoke("add")
    assert message.tool_calls[0]["name"] == "add" and message.tool_calls[0]["args"] == {"a": 1}


def test_native_arguments_nested_too_deep_are_a_malformed_response_not_a_crash():
    tiers = mock_tiers()
    response = tool_response("add")
    response["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"a": ' * 5_000 + "1" + "}" * 5_000
    tiers["fast"]["models"][0]["mock_response"] = response
    model = StepRouter(RouterConfig(tiers=tiers, default="fast")).chat_model().bind_tools([ADD])
    with pytest.raises(MalformedResponse) as caught:
        model.invoke("add", config={"metadata": step("s", max_tier="fast")})
    assert caught.value.what == "the arguments of a tool call are nested too deep to read"


@pytest.mark.parametrize(("arguments", "what"), [('{"a": 1,', "not JSON"), ("[1, 2]", "not a JSON object"),
                                                  ("nope", "not JSON")])
def test_native_arguments_that_are_not_a_json_object_fall_back_and_say_why(arguments, what):
    """LangChain would keep them as an ``invalid_tool_call``, which no agent loop runs."""
    tiers = mock_tiers()
    response = tool_response("add")
    response["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
    tiers["fast"]["models"][0]["mock_response"] = response
    tiers["standard"]["models"][0]["mock_response"] = tool_response("add")
    message = StepRouter(RouterConfig(tiers=tiers, default="fast")).chat_model().bind_tools([ADD]).invoke("add")
    decision = message.response_metadata["steproute"]
    assert decision["fallback_from"] == "fast" and decision["tier"] == "standard" and what in decision["reason"]
    assert message.tool_calls and not message.invalid_tool_calls


# -- 4. streams their consumer abandons ----------------------------------------------------------


LONG = " ".join(["steproute streams every word of this answer"] * 40)


def budget_router(tmp_path) -> tuple[StepRouter, JsonlDecisionLog, InMemorySpanExporter]:
    return traced_router(tmp_path, mock_tiers(mock_response=LONG), guards={"budgets": {"limits": {"acme": 10.0}}})


def spent(router: StepRouter) -> tuple[float, float]:
    return router.budget_store.usage("acme", router._budget.window()[0])


def check_abandoned(router: StepRouter, log: JsonlDecisionLog, exporter: InMemorySpanExporter, tmp_path,
                    streamed: str) -> None:
    (entry,) = entries(log, tmp_path / "d.jsonl")
    assert entry["abandoned"] is True and entry["usage_estimated"] is True
    assert entry["output_tokens"] > 0 and entry["input_tokens"] > 0
    price = router._dispatcher.first_deployment("fast").price
    assert entry["cost_usd"] > 0.0
    assert entry["output_tokens"] < len(LONG) // 4  # what was streamed, not the whole answer
    assert entry["cost_usd"] == pytest.approx(entry["input_tokens"] * price.input + entry["output_tokens"] * price.output)
    assert "error" not in entry
    total, reserved = spent(router)
    assert total == pytest.approx(entry["cost_usd"]) and reserved == 0.0
    (route,) = [s for s in exporter.get_finished_spans() if s.name.startswith("route")]
    assert route.attributes["steproute.stream.abandoned"] is True
    assert route.attributes["steproute.step.cost.usd"] == pytest.approx(entry["cost_usd"])
    (chat,) = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert chat.attributes["steproute.cost.usd"] == pytest.approx(entry["cost_usd"])
    assert chat.attributes["steproute.usage.estimated"] is True
    assert streamed and streamed in LONG


def test_a_router_stream_the_consumer_closes_is_billed_for_what_was_streamed(tmp_path):
    router, log, exporter = budget_router(tmp_path)
    stream = router.stream(ask(tenant="acme"))
    streamed = "".join(next(stream).content for _ in range(5))
    stream.close()
    check_abandoned(router, log, exporter, tmp_path, streamed)


def test_a_router_astream_the_consumer_leaves_is_billed(tmp_path):
    router, log, exporter = budget_router(tmp_path)

    async def main() -> str:
        stream = router.astream(ask(tenant="acme"))
        parts = [(await stream.__anext__()).content for _ in range(5)]
        await stream.aclose()
        return "".join(parts)

    check_abandoned(router, log, exporter, tmp_path, asyncio.run(main()))


def test_a_cancelled_astream_is_billed(tmp_path):
    router, log, exporter = budget_router(tmp_path)
    parts: list[str] = []

    async def consume() -> None:
        async for item in router.astream(ask(tenant="acme")):
            parts.append(item.content)
            if len(parts) == 5:
                await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(consume())
        while len(parts) < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    check_abandoned(router, log, exporter, tmp_path, "".join(parts))


def test_a_chat_model_stream_broken_off_is_billed(tmp_path):
    router, log, exporter = budget_router(tmp_path)
    llm = router.chat_model()
    parts = []
    for chunk in llm.stream("foxes?", config={"metadata": {"tenant": "acme"}}):
        parts.append(chunk.text)
        if len(parts) == 5:
            break
    check_abandoned(router, log, exporter, tmp_path, "".join(parts))


def test_a_chat_model_astream_broken_off_is_billed(tmp_path):
    router, log, exporter = budget_router(tmp_path)
    llm = router.chat_model()

    async def main() -> str:
        parts = []
        stream = llm.astream("foxes?", config={"metadata": {"tenant": "acme"}})
        async for chunk in stream:
            parts.append(chunk.text)
            if len(parts) == 5:
                break
        await stream.aclose()
        return "".join(parts)

    check_abandoned(router, log, exporter, tmp_path, asyncio.run(main()))


def test_a_finished_stream_is_not_marked_abandoned(tmp_path):
    router, log, _ = budget_router(tmp_path)
    items = list(router.stream(ask(tenant="acme")))
    (entry,) = entries(log, tmp_path / "d.jsonl")
    assert "abandoned" not in entry and items[-1].cost_usd > 0
    assert entry["cost_usd"] == pytest.approx(items[-1].cost_usd)
    price = router._dispatcher.first_deployment("fast").price
    assert entry["cost_usd"] == pytest.approx(call_cost(price, items[-1].usage))
