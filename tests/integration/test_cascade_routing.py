"""The cascade over real HTTP: LiteLLM → llmock on 127.0.0.1, inside LangGraph graphs and
LangChain's ``create_agent``; invoke, stream, tool calls, batches and speculative routing."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from llmock.scenarios import Delay, Match, Reply, ToolCall

from steproute import RouterConfig, StepRouter, step
from steproute.middleware import StepRouterMiddleware

pytestmark = pytest.mark.integration
CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"


def reply(llmock, model: str, text: str, times: int = 1) -> None:
    llmock.add(Reply(text=text, times=times, match=Match(model=model)))


def router_for(llmock, cascade: dict, **steps: dict) -> StepRouter:
    tiers = {"fast": {"models": [{"model": f"openai/{CHEAP}", "api_base": llmock.base_url(), "api_key": "k"}]},
             "strong": {"models": [{"model": f"openai/{STRONG}", "api_base": llmock.base_url(), "api_key": "k"}]}}
    return StepRouter(RouterConfig(tiers=tiers, default="fast",
                                   steps={"answer": {"policy": "cascade", **cascade}, **steps}))


class State(TypedDict, total=False):
    question: str
    answer: str


def graph(router: StepRouter):
    model = router.chat_model()

    def answer(state: State, config) -> State:
        return {"answer": model.invoke([HumanMessage(state["question"])], config=config).content}

    g = StateGraph(State)
    g.add_node("answer", answer, metadata=step("answer"))
    g.add_edge(START, "answer")
    g.add_edge("answer", END)
    return g.compile()


def test_a_graph_step_escalates_a_hedged_answer_and_streams_only_the_accepted_one(llmock):
    router = router_for(llmock, {"signals": [{"signal": "hedging"}]})
    app = graph(router)
    reply(llmock, CHEAP, "I'm not sure, maybe Lyon.")
    reply(llmock, STRONG, "Paris.")
    assert app.invoke({"question": "Capital of France?"})["answer"] == "Paris."
    assert [r.model for r in llmock.requests] == [CHEAP, STRONG]

    llmock.reset()
    reply(llmock, CHEAP, "I don't know.")
    reply(llmock, STRONG, "Paris is the capital of France.")
    streamed = [(chunk.content, meta["langgraph_node"]) for chunk, meta in
                app.stream({"question": "Capital of France?"}, stream_mode="messages") if isinstance(chunk, AIMessageChunk)]
    assert "".join(c for c, _ in streamed) == "Paris is the capital of France."  # the hedge never reached the user
    assert [r.stream for r in llmock.requests] == [False, True]  # cheap attempt buffered, last tier live

    llmock.reset()
    reply(llmock, CHEAP, "Paris.")
    assert app.invoke({"question": "Capital of France?"})["answer"] == "Paris."
    assert [r.model for r in llmock.requests] == [CHEAP]


def test_a_broken_tool_call_escalates_to_a_valid_one(llmock):
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    router = router_for(llmock, {"signals": [{"signal": "tools"}]})
    model = router.chat_model(step="answer").bind_tools([get_weather])
    llmock.add(Reply(tool_calls=(ToolCall("get_forecast", {"town": "Oslo"}),), match=Match(model=CHEAP)))
    llmock.add(Reply(tool_calls=(ToolCall("get_weather", {"city": "Oslo"}),), match=Match(model=STRONG)))
    message = model.invoke("Weather in Oslo?")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("get_weather", {"city": "Oslo"})]
    routed = message.response_metadata["steproute"]
    assert (routed["tier"], routed["escalated_from"]) == ("strong", "fast")
    assert routed["cascade"][0]["signals"] == {"tools": 0.0}


def test_create_agent_runs_a_cascade_step_inside_its_tool_loop(llmock):
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"18°C in {city}"

    router = router_for(llmock, {}, plan={"policy": "cascade", "signals": [{"signal": "tools"}]},
                        synthesis={"policy": "cascade", "signals": [{"signal": "hedging"}]})
    agent = create_agent(router.chat_model(), tools=[get_weather], middleware=[StepRouterMiddleware(router)])
    llmock.break_tool_call("malformed_arguments")  # the cheap plan's tool call does not parse
    llmock.add(Reply(tool_calls=(ToolCall("get_weather", {"city": "Rome"}),), match=Match(model=STRONG)))
    result = agent.invoke({"messages": [HumanMessage("Weather in Rome?")]})
    answers = [m for m in result["messages"] if isinstance(m, AIMessage)]
    steps = [(m.response_metadata["steproute"]["step"], m.response_metadata["steproute"]["tier"],
              m.response_metadata["steproute"]["attempts"]) for m in answers]
    assert steps == [("plan", "strong", 2), ("synthesis", "fast", 1)]  # the answer after the tool result
    assert "18°C in Rome" in answers[-1].content  # llmock's default answer echoes the tool result


def test_a_batch_escalates_only_the_rejected_items_after_the_cheap_phase(llmock):
    router = router_for(llmock, {"signals": [{"signal": "hedging"}], "max_concurrency": 3})
    reply(llmock, CHEAP, "I'm not sure.", times=2)
    reply(llmock, CHEAP, "42.", times=4)
    reply(llmock, STRONG, "42, for sure.", times=2)
    messages = router.chat_model(step="answer").batch([f"question {i}" for i in range(6)])
    tiers = sorted(m.response_metadata["steproute"]["tier"] for m in messages)
    assert tiers == ["fast"] * 4 + ["strong"] * 2
    models = [r.model for r in sorted(llmock.requests, key=lambda r: r.started_at)]
    assert models == [CHEAP] * 6 + [STRONG] * 2  # the whole cheap phase first, then the two escalations
    assert sum(m.response_metadata["steproute"]["cost_usd"] for m in messages) > 0


async def test_speculative_routing_cancels_the_cheap_call_over_http(llmock):
    router = router_for(llmock, {"start": {"policy": "llm", "router_tier": "fast", "fallback": "strong"},
                                 "speculative": True})
    llmock.add(Delay(2.0, match=Match(model=CHEAP)))  # the step's cheap call is slow ...
    reply(llmock, CHEAP, "strong")                    # ... the routing call (also cheap) says: strong
    reply(llmock, STRONG, "A proof by induction.")
    message = await router.chat_model(step="answer").ainvoke("Prove that 1 + ... + n = n(n+1)/2.")
    routed = message.response_metadata["steproute"]
    assert message.content == "A proof by induction."
    assert [(a["tier"], a["reason"]) for a in routed["cascade"]] == [
        ("fast", "speculative call cancelled"), ("strong", "last tier: not judged")]
    await asyncio.sleep(0)
