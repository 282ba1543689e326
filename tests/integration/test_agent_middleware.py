"""`StepRouterMiddleware` in LangChain's `create_agent`: a real tool loop over HTTP to llmock."""

from __future__ import annotations

import asyncio

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from steproute import RouterConfig, StepRouter
from steproute.middleware import StepRouterMiddleware, classify_call

pytestmark = pytest.mark.integration
MODELS = {"fast": "openai/gpt-4o-mini", "strong": "openai/gpt-4o"}


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18°C and sunny in {city}"


def agent_for(llmock):
    tiers = {t: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "k"}]} for t, m in MODELS.items()}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast",
                                     steps={"plan": "strong", "tool_use": "strong", "synthesis": "fast"}))
    return router, create_agent(router.chat_model(), tools=[get_weather], middleware=[StepRouterMiddleware(router)])


def test_each_agent_call_is_routed_by_its_kind_with_native_tool_calls(llmock):
    _, agent = agent_for(llmock)
    llmock.call_tool("get_weather", {"city": "Paris"})
    llmock.reply("It is 18°C and sunny in Paris.")
    result = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]}, {"configurable": {"thread_id": "chat-1"}})
    messages = result["messages"]
    assert isinstance(messages[2], ToolMessage) and messages[2].content == "18°C and sunny in Paris"
    answers = [m for m in messages if isinstance(m, AIMessage)]
    routed = [(m.response_metadata["steproute"]["step"], m.response_metadata["steproute"]["tier"],
               m.response_metadata["model_name"]) for m in answers]
    # the answer after the tool result is a synthesis (docs/integrations.md has the table)
    assert routed == [("plan", "strong", "openai/gpt-4o"), ("synthesis", "fast", "openai/gpt-4o-mini")]
    assert answers[0].tool_calls[0]["args"] == {"city": "Paris"}  # the native tool call, over HTTP
    assert [r.model for r in llmock.requests] == ["gpt-4o", "gpt-4o-mini"]
    assert answers[1].response_metadata["steproute"]["thread"] == "chat-1"

    # the next turn on the same thread: plan is pinned, and the follow-up synthesis routed as such
    llmock.reply("Take sunglasses.")
    again = agent.invoke({"messages": [HumanMessage("What should I bring?")]}, {"configurable": {"thread_id": "chat-1"}})
    last = again["messages"][-1].response_metadata["steproute"]
    assert (last["step"], last["tier"], last["pinned"]) == ("plan", "strong", True)


def test_async_agent_and_a_custom_classifier(llmock):
    tiers = {t: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "k"}]} for t, m in MODELS.items()}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast", steps={"everything": "strong"}))
    agent = create_agent(router.chat_model(), tools=[get_weather],
                         middleware=[StepRouterMiddleware(router, classify=lambda request: "everything")])
    llmock.reply("Hello!")
    result = asyncio.run(agent.ainvoke({"messages": [HumanMessage("hi")]}))
    meta = result["messages"][-1].response_metadata["steproute"]
    assert (meta["step"], meta["tier"]) == ("everything", "strong")


def test_the_default_classifier(llmock):
    from langchain.agents.middleware import ModelRequest
    from langchain.agents.structured_output import ToolStrategy
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str

    model = agent_for(llmock)[0].chat_model()

    def kind(messages, response_format=None, tools=(get_weather,), tool_choice=None):
        return classify_call(ModelRequest(model=model, messages=messages, response_format=response_format,
                                          tools=list(tools), tool_choice=tool_choice))

    hello = HumanMessage("hi")
    call = AIMessage("", tool_calls=[{"name": "get_weather", "args": {}, "id": "c1"}])
    assert kind([hello]) == "plan"
    result = ToolMessage("ok", tool_call_id="c1")
    assert kind([hello, call, result]) == "synthesis"  # the answer after tool results
    assert kind([hello, call, ToolMessage("boom", tool_call_id="c1", status="error")]) == "tool_use"  # a retry
    assert kind([hello, call, result], tool_choice="required") == "tool_use"  # a tool forced
    assert kind([hello, AIMessage("done")]) == "synthesis"
    assert kind([hello, AIMessage("done"), HumanMessage("and?")]) == "plan"
    assert kind([hello], ToolStrategy(Weather)) == "plan"  # first call with tools: plan, even with a format
    assert kind([hello, call, result], ToolStrategy(Weather)) == "extract"  # the structured final answer
    assert kind([hello], tools=[]) == "synthesis"  # no tools: the first call is the answer
    assert kind([hello], ToolStrategy(Weather), tools=[]) == "extract"
