"""RoutedChatModel over LiteLLM mock responses: every LangChain surface, and inside a graph."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel

from steproute import RoutedChatModel, step
from tests.conftest import mock_tiers

TOOL_CALL = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]


class Weather(BaseModel):
    """Weather in a city."""

    city: str


def get_weather(city: str) -> str:
    """Get the weather of a city."""
    return f"sunny in {city}"


def test_invoke_routes_and_reports(make_router):
    llm = make_router(steps={"plan": "advanced"}).chat_model()
    message = llm.invoke("hello", config={"metadata": step("plan", kind="plan")})
    assert isinstance(message, AIMessage)
    assert message.content == "answer from advanced"
    assert message.response_metadata["model_name"] == "openai/gpt-4o"
    routed = message.response_metadata["steproute"]
    assert (routed["step"], routed["kind"], routed["tier"], routed["policy"]) == ("plan", "plan", "advanced", "fixed")
    assert routed["cost_usd"] == routed["baseline_cost_usd"] > 0
    assert message.usage_metadata == {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30}


def test_step_field_names_calls_outside_graphs(make_router):
    llm = make_router(steps={"rewrite": "fast", "plan": "advanced"}).chat_model(step="plan")
    assert llm.invoke("x").response_metadata["steproute"]["tier"] == "advanced"
    # a hint in the run metadata wins over the field
    assert llm.invoke("x", config={"metadata": step("rewrite")}).response_metadata["steproute"]["tier"] == "fast"


async def test_ainvoke_and_abatch(make_router):
    llm = make_router(default="standard").chat_model()
    message = await llm.ainvoke([HumanMessage("hi")])
    assert message.response_metadata["steproute"]["tier"] == "standard"
    batch = await llm.abatch(["a", "b", "c"])
    assert [m.content for m in batch] == ["answer from standard"] * 3


def test_batch_keeps_each_calls_step(make_router):
    llm = make_router(steps={"plan": "advanced"}).chat_model()
    out = llm.batch(["a", "b"], config=[{"metadata": step("plan")}, {"metadata": step("other")}])
    assert [m.response_metadata["steproute"]["tier"] for m in out] == ["advanced", "fast"]


def test_stream_yields_text_then_usage_and_decision_on_last_chunk(make_router):
    llm = make_router(default="standard").chat_model()
    chunks = list(llm.stream("hi"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert full.content == "answer from standard"
    last = chunks[-1]
    assert last.usage_metadata is not None and last.usage_metadata["output_tokens"] > 0
    assert last.response_metadata["steproute"]["tier"] == "standard"
    assert last.response_metadata["model_name"] == "openai/gpt-4.1-mini"


async def test_astream(make_router):
    llm = make_router().chat_model()
    chunks = [c async for c in llm.astream("hi")]
    assert "".join(c.text for c in chunks) == "answer from fast"
    assert chunks[-1].response_metadata["steproute"]["cost_usd"] > 0


def test_bind_tools_sends_tools_and_parses_tool_calls(make_router):
    router = make_router(tiers=mock_tiers(mock_tool_calls=TOOL_CALL),
                         default={"policy": "rules", "rules": [{"name": "tools", "when": {"has_tools": True},
                                                                "tier": "standard"}], "fallback": "fast"})
    message = router.chat_model().bind_tools([get_weather]).invoke("weather in Paris?")
    assert message.tool_calls == [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}]
    assert message.response_metadata["steproute"]["reason"].startswith("rule 'tools' matched")


def test_invalid_tool_arguments_are_a_malformed_response_not_an_invalid_call_no_agent_runs(make_router):
    """LangChain would keep them as an ``invalid_tool_call``, which an agent's tool loop never
    runs (the loop would end on an empty answer): every tier is tried, then a typed error."""
    from steproute import MalformedResponse

    bad = [{"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]
    llm = make_router(tiers=mock_tiers(mock_tool_calls=bad)).chat_model().bind_tools([get_weather])
    with pytest.raises(MalformedResponse) as caught:
        llm.invoke("x")
    assert caught.value.what == "the arguments of a tool call are not JSON"
    assert "{not json" not in str(caught.value)


def test_tool_choice_forms(make_router):
    llm = make_router().chat_model()
    assert llm.bind_tools([get_weather], tool_choice="any").kwargs["tool_choice"] == "required"
    assert llm.bind_tools([get_weather], tool_choice="get_weather").kwargs["tool_choice"] == {
        "type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(ValueError, match="tool_choice 'nope' is not one of the bound tools"):
        llm.bind_tools([get_weather], tool_choice="nope")


def test_with_structured_output_routes_on_schema(make_router):
    calls = [{"id": "c", "type": "function", "function": {"name": "Weather", "arguments": '{"city": "Oslo"}'}}]
    router = make_router(tiers=mock_tiers(mock_tool_calls=calls),
                         default={"policy": "rules", "rules": [{"name": "schema", "when": {"has_schema": True},
                                                                "tier": "standard"}], "fallback": "fast"})
    structured = router.chat_model().with_structured_output(Weather, include_raw=True)
    out = structured.invoke("weather?")
    assert out["parsed"] == Weather(city="Oslo")
    assert out["raw"].response_metadata["steproute"]["tier"] == "standard"


def test_tool_round_trip_messages_are_accepted(make_router):
    llm = make_router().chat_model()
    history = [
        HumanMessage("weather?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}]),
        ToolMessage("sunny", tool_call_id="call_1"),
    ]
    assert llm.invoke(history).content == "answer from fast"


def test_model_override_is_refused(make_router):
    with pytest.raises(ValueError, match="chooses the model per step"):
        make_router().chat_model().invoke("x", model="openai/gpt-4o")


def test_step_helper_validates():
    assert step("plan", tier="fast") == {"steproute": {"step": "plan", "tier": "fast"}}
    with pytest.raises(ValueError, match="'name' must be a non-empty string"):
        step("")
    with pytest.raises(ValueError, match="'min_tier' must be a non-empty string"):
        step("x", min_tier="")


def test_graph_routes_by_node_metadata_and_node_name(make_router):
    router = make_router(steps={"plan": "advanced", "answer": "standard"})
    llm = router.chat_model()
    seen = {}

    def node(name):
        def run(state: MessagesState):
            message = llm.invoke(state["messages"])
            seen[name] = message.response_metadata["steproute"]
            return {"messages": [message]}
        return run

    builder = StateGraph(MessagesState)
    builder.add_node("rewrite", node("rewrite"), metadata=step("rewrite", kind="rewrite", tier="fast"))
    builder.add_node("plan", node("plan"))  # no hint: routed by its node name
    builder.add_node("answer", node("answer"), metadata=step("answer", kind="synthesis", min_tier="advanced"))
    builder.add_edge(START, "rewrite")
    builder.add_edge("rewrite", "plan")
    builder.add_edge("plan", "answer")
    builder.add_edge("answer", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    graph.invoke({"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": "th-9"}})
    assert {k: v["tier"] for k, v in seen.items()} == {"rewrite": "fast", "plan": "advanced", "answer": "advanced"}
    assert seen["rewrite"]["policy"] == "hint"
    assert seen["answer"]["reason"] == "fixed tier 'standard'; raised to min_tier 'advanced'"
    assert {v["thread"] for v in seen.values()} == {"th-9"}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_graph_streamed_as_messages_still_routes_by_step(make_router, mode):
    """langchain-core streams a node's ``invoke`` without a run manager under
    ``stream_mode="messages"``: the step must come from the run's config all the same."""
    import asyncio

    router = make_router(steps={"plan": "advanced"})
    llm = router.chat_model()

    async def anode(state: MessagesState):
        return {"messages": [await llm.ainvoke(state["messages"])]}

    def node(state: MessagesState):
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("think", anode if mode == "async" else node, metadata=step("plan"))
    builder.add_edge(START, "think")
    builder.add_edge("think", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": f"th-{mode}"}}
    if mode == "async":
        async def run():
            return [c async for c, _ in graph.astream({"messages": [HumanMessage("hi")]}, config, stream_mode="messages")]
        chunks = asyncio.run(run())
    else:
        chunks = [c for c, _ in graph.stream({"messages": [HumanMessage("hi")]}, config, stream_mode="messages")]
    assert "".join(c.content for c in chunks) == "answer from advanced"
    routed = next(c.response_metadata["steproute"] for c in chunks if "steproute" in c.response_metadata)
    assert (routed["step"], routed["tier"], routed["thread"]) == ("plan", "advanced", f"th-{mode}")


def test_stream_outside_a_graph_keeps_the_steps_hint(make_router):
    """langchain-core's ``stream()``/``astream()`` reach ``_stream`` without a run manager: the
    step hint in the config must still decide."""
    import asyncio

    llm = make_router(steps={"plan": "advanced"}).chat_model()
    config = {"metadata": step("plan", max_tier="standard")}
    chunks = list(llm.stream("hi", config=config))
    routed = chunks[-1].response_metadata["steproute"]
    assert (routed["step"], routed["tier"]) == ("plan", "standard")  # the policy's advanced, lowered by the hint

    async def collect() -> list:
        return [c async for c in llm.astream("hi", config=config)]

    assert asyncio.run(collect())[-1].response_metadata["steproute"]["tier"] == "standard"


def test_routed_node_writes_the_answer(make_router):
    router = make_router(steps={"extract": "standard"})
    node = router.node("extract", "Capital of {country}?", output_key="capital", kind="extract")
    assert node.invoke({"country": "France", "other": 1}) == {"capital": "answer from standard"}
    messages_node = router.node("answer", [("system", "be brief"), ("placeholder", "{messages}")],
                                output_key="messages", tier="advanced")
    out = messages_node.invoke({"messages": [HumanMessage("hi")]})
    assert out["messages"][0].response_metadata["steproute"]["tier"] == "advanced"


def test_model_fields_reach_litellm(make_router):
    llm = make_router().chat_model(temperature=0.2, max_tokens=5, model_kwargs={"seed": 1})
    assert llm._default_params() == {"seed": 1, "temperature": 0.2, "max_tokens": 5}
    assert isinstance(llm, RoutedChatModel)
    assert llm.invoke("x").content == "answer from fast"
