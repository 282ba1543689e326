"""Routing over real HTTP: LiteLLM → llmock (an OpenAI-compatible server on 127.0.0.1)."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from steproute import DispatchError, RouterConfig, StepRouter, step
from steproute._litellm import litellm

pytestmark = pytest.mark.integration

MODELS = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini", "advanced": "openai/gpt-4o"}
KEY = "sk-llmock-secret-value"


def tiers_for(llmock, models: dict[str, list[str]] | None = None) -> dict[str, Any]:
    models = models or {name: [m] for name, m in MODELS.items()}
    return {name: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": KEY} for m in ms]}
            for name, ms in models.items()}


def price(model: str, input_tokens: int, output_tokens: int) -> float:
    info = litellm().get_model_info(model)
    return input_tokens * info["input_cost_per_token"] + output_tokens * info["output_cost_per_token"]


class State(TypedDict, total=False):
    question: str
    query: str
    fields: str
    plan: str
    tool_result: str
    answer: str


def test_five_step_kinds_across_three_tiers(llmock):
    router = StepRouter(RouterConfig(
        tiers=tiers_for(llmock),
        default="fast",
        steps={
            "plan": {"policy": "fixed", "tier": "advanced", "kind": "plan"},
            "use_tool": {"policy": "rules", "rules": [{"name": "tools", "when": {"has_tools": True}, "tier": "standard"}],
                         "fallback": "fast"},
        },
    ))
    llm = router.chat_model()
    seen: dict[str, dict[str, Any]] = {}

    def call(name: str, text: str, **bind: Any) -> str:
        model = llm.bind_tools(bind["tools"]) if "tools" in bind else llm
        message = model.invoke([HumanMessage(text)])
        seen[name] = {"meta": message.response_metadata, "usage": message.usage_metadata, "msg": message}
        return message.text or str(message.tool_calls)

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    builder = StateGraph(State)
    builder.add_node("rewrite", lambda s: {"query": call("rewrite", s["question"])},
                     metadata=step("rewrite", kind="rewrite"))
    builder.add_node("extract", lambda s: {"fields": call("extract", s["query"])},
                     metadata=step("extract", kind="extract", tier="standard"))
    builder.add_node("plan", lambda s: {"plan": call("plan", s["fields"])})
    builder.add_node("use_tool", lambda s: {"tool_result": call("use_tool", s["plan"], tools=[lookup])},
                     metadata=step("use_tool", kind="tool_use"))
    builder.add_node("answer", lambda s: {"answer": call("answer", s["tool_result"])},
                     metadata=step("answer", kind="synthesis", min_tier="advanced"))
    previous = START
    for node in ("rewrite", "extract", "plan", "use_tool", "answer"):
        builder.add_edge(previous, node)
        previous = node
    builder.add_edge(previous, END)
    out = builder.compile().invoke({"question": "What is the weather in Paris?"})
    assert out["answer"]

    expected = {"rewrite": ("rewrite", "fast"), "extract": ("extract", "standard"), "plan": ("plan", "advanced"),
                "use_tool": ("tool_use", "standard"), "answer": ("synthesis", "advanced")}
    for name, (kind, tier) in expected.items():
        meta, usage = seen[name]["meta"], seen[name]["usage"]
        routed = meta["steproute"]
        assert (routed["step"], routed["kind"], routed["tier"]) == (name, kind, tier), name
        assert meta["model_name"] == MODELS[tier], name
        assert routed["cost_usd"] == pytest.approx(price(MODELS[tier], usage["input_tokens"], usage["output_tokens"]))
        assert routed["baseline_cost_usd"] == pytest.approx(
            price(MODELS["advanced"], usage["input_tokens"], usage["output_tokens"]))
    # what went over the wire: one request per step, to the model of its tier
    assert [r.model for r in llmock.requests] == [MODELS[t].split("/")[1] for _, t in expected.values()]
    assert seen["use_tool"]["msg"].tool_calls[0]["name"] == "lookup"
    assert seen["rewrite"]["meta"]["steproute"]["savings_usd"] > 0


def test_in_tier_fallback_reports_the_model_that_answered(llmock):
    router = StepRouter(RouterConfig(
        tiers=tiers_for(llmock, {"fast": ["openai/gpt-4o-mini"], "advanced": ["openai/gpt-4o", "openai/gpt-4.1"]}),
        default="advanced"))
    llmock.fail(503, times=None, model="gpt-4o")  # the first deployment is down
    message = router.chat_model().invoke("hi")
    assert message.response_metadata["model_name"] == "openai/gpt-4.1"
    assert message.response_metadata["steproute"]["model"] == "openai/gpt-4.1"
    assert message.response_metadata["steproute"]["cost_usd"] == pytest.approx(
        price("openai/gpt-4.1", message.usage_metadata["input_tokens"], message.usage_metadata["output_tokens"]))
    assert [r.model for r in llmock.requests] == ["gpt-4o", "gpt-4.1"]


def test_whole_tier_down_raises_typed_error_without_secrets(llmock):
    router = StepRouter(RouterConfig(tiers=tiers_for(llmock), default="fast"))
    llmock.fail(500, times=None)
    with pytest.raises(DispatchError) as excinfo:
        router.chat_model().invoke("hi", config={"metadata": step("rewrite")})
    err = excinfo.value
    # the tier, then the next stronger one (the default cross-tier fallback), both down
    assert (err.step, err.tier, err.tiers) == ("rewrite", "fast", ("fast", "standard"))
    assert [(a.model, a.error_type) for a in err.attempts] == [
        ("openai/gpt-4o-mini", "InternalServerError"), ("openai/gpt-4.1-mini", "InternalServerError")]
    assert "step 'rewrite'" in str(err) and "tiers 'fast', 'standard'" in str(err)
    assert KEY not in str(err) and KEY not in repr(err)


def test_streaming_over_http(llmock):
    router = StepRouter(RouterConfig(tiers=tiers_for(llmock), default="standard"))
    chunks = list(router.chat_model().stream("hello"))
    text = "".join(c.text for c in chunks)
    assert "gpt-4.1-mini" in text  # llmock names the model that answered
    last = chunks[-1]
    assert last.usage_metadata["output_tokens"] > 0
    assert last.response_metadata["steproute"]["cost_usd"] == pytest.approx(
        price(MODELS["standard"], last.usage_metadata["input_tokens"], last.usage_metadata["output_tokens"]))
    assert llmock.last_request.stream is True


async def test_async_streaming_and_tools_over_http(llmock):
    router = StepRouter(RouterConfig(tiers=tiers_for(llmock), default="fast"))

    def get_weather(city: str) -> str:
        """Weather of a city."""
        return "sunny"

    llm = router.chat_model().bind_tools([get_weather])
    message = await llm.ainvoke("weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    assert set(message.tool_calls[0]["args"]) == {"city"}
    chunks = [c async for c in llm.astream("weather in Paris?")]
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert full.tool_calls and full.tool_calls[0]["name"] == "get_weather"
    assert full.response_metadata["steproute"]["tier"] == "fast"


def test_structured_output_over_http(llmock):
    class Person(BaseModel):
        """A person."""

        name: str
        age: int

    router = StepRouter(RouterConfig(
        tiers=tiers_for(llmock),
        default={"policy": "rules", "rules": [{"name": "schema", "when": {"has_schema": True}, "tier": "standard"}],
                 "fallback": "fast"}))
    out = router.chat_model().with_structured_output(Person, include_raw=True).invoke("Bob is 30")
    assert isinstance(out["parsed"], Person)
    assert out["raw"].response_metadata["steproute"]["tier"] == "standard"
    assert llmock.last_request.model == "gpt-4.1-mini"
