"""Third-party LangGraph apps routed unmodified but for the line that hands in the model.

Each test builds an app as its package's README does (langgraph-supervisor's quickstart,
prebuilt agents as subgraphs of a user graph, LangChain's ``create_agent`` with tools, a
``response_format`` and the middleware), routes it through llmock on 127.0.0.1 and asserts the
tier each agent's calls reached *on the wire*, with and without a ``thread_id``, sync, async and
``stream_mode="messages"``.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import BaseModel

from steproute import RouterConfig, StepRouter, StepRouterMiddleware, step

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # create_react_agent moved to langchain.agents (still the README's way)
    from langgraph.prebuilt import create_react_agent
from langgraph_supervisor import create_supervisor

pytestmark = pytest.mark.integration
MODELS = {"fast": "gpt-4o-mini", "standard": "gpt-4.1-mini", "advanced": "gpt-4o"}
MODES = ["invoke", "ainvoke", "messages"]
THREADS = [None, "thread-1"]


def make_router(llmock: Any, **config: Any) -> StepRouter:
    tiers = {t: {"models": [{"model": "openai/" + m, "api_base": llmock.base_url(), "api_key": "k"}]}
             for t, m in MODELS.items()}
    config.setdefault("default", "fast")
    return StepRouter(RouterConfig(tiers=tiers, **config))


def run(app: Any, text: str, mode: str, thread: str | None) -> None:
    config: dict[str, Any] = {"configurable": {"thread_id": thread}} if thread else {}
    state = {"messages": [HumanMessage(text)]}
    if mode == "invoke":
        app.invoke(state, config)
    elif mode == "ainvoke":
        asyncio.run(app.ainvoke(state, config))
    else:
        chunks = list(app.stream(state, config, stream_mode="messages"))
        assert chunks, "the graph streamed nothing"


def on_the_wire(llmock: Any) -> list[str]:
    return [r.model for r in llmock.requests]


@tool
def web_search(query: str) -> str:
    """Search the web for information."""
    return "FAANG headcount 2024: Meta 67,317; Apple 164,000; Amazon 1,551,000; Netflix 14,000; Google 181,269."


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def supervisor_app(model: Any) -> Any:
    """langgraph-supervisor's README quickstart, with one shared model."""
    research_agent = create_react_agent(model=model, tools=[web_search], name="research_expert",
                                        prompt="You are a world class researcher with access to web search.")
    math_agent = create_react_agent(model=model, tools=[add], name="math_expert",
                                    prompt="You are a math expert. Always use one tool at a time.")
    workflow = create_supervisor([research_agent, math_agent], model=model,
                                 prompt="You are a team supervisor managing a research expert and a math expert.")
    return workflow.compile()


def script_supervisor_run(llmock: Any) -> None:
    llmock.call_tool("transfer_to_research_expert", {})
    llmock.call_tool("web_search", {"query": "FAANG headcount 2024"})
    llmock.reply("Meta 67,317 and Google 181,269.")
    llmock.call_tool("transfer_to_math_expert", {})
    llmock.call_tool("add", {"a": 67317, "b": 181269})
    llmock.reply("248,586.")
    llmock.reply("Meta and Google had 248,586 employees together.")


SUPERVISOR_WIRE = ["gpt-4.1-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", "gpt-4o", "gpt-4.1-mini"]


@pytest.mark.parametrize("thread", THREADS)
@pytest.mark.parametrize("mode", MODES)
def test_supervisor_quickstart_routes_each_agent_by_its_name(llmock, mode, thread):
    router = make_router(llmock, steps={"supervisor": "standard", "research_expert": "fast", "math_expert": "advanced"})
    app = supervisor_app(router.chat_model())
    script_supervisor_run(llmock)
    run(app, "What is the combined headcount of Meta and Google in 2024?", mode, thread)
    # each agent's calls reached its own tier; with a thread, each agent keeps its own pin
    assert on_the_wire(llmock) == SUPERVISOR_WIRE


def test_supervisor_decisions_say_where_the_step_came_from(llmock):
    router = make_router(llmock, steps={"supervisor": "standard", "research_expert": "fast", "math_expert": "advanced"})
    app = supervisor_app(router.chat_model())
    script_supervisor_run(llmock)
    result = app.invoke({"messages": [HumanMessage("Headcount?")]}, {"configurable": {"thread_id": "t-9"}})
    routed = {(m.response_metadata["steproute"]["step"], m.response_metadata["steproute"]["agent"],
               m.response_metadata["steproute"]["pin_group"])
              for m in result["messages"] if isinstance(m, AIMessage) and "steproute" in m.response_metadata}
    assert routed == {("supervisor", "supervisor", "supervisor"), ("research_expert", "research_expert", "research_expert"),
                      ("math_expert", "math_expert", "math_expert")}
    first = next(m for m in result["messages"] if isinstance(m, AIMessage)).response_metadata["steproute"]
    assert first["reason"].startswith("step from the subgraph 'supervisor': fixed tier 'standard'")
    last = result["messages"][-1].response_metadata["steproute"]
    assert (last["step"], last["pinned"]) == ("supervisor", True)


def test_a_pin_group_makes_agents_share_a_pin(llmock):
    router = make_router(llmock, steps={
        "supervisor": "standard",
        "research_expert": {"tier": "fast", "pinning": {"group": "team"}},
        "math_expert": {"tier": "advanced", "pinning": {"group": "team"}}})
    app = supervisor_app(router.chat_model())
    script_supervisor_run(llmock)
    run(app, "Headcount?", "invoke", "thread-2")
    # the research expert made the team's pin (fast); the math expert follows it, as configured
    assert on_the_wire(llmock) == ["gpt-4.1-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o-mini",
                                   "gpt-4o-mini", "gpt-4.1-mini"]


def test_an_unmatched_configured_step_is_said_once(llmock, caplog):
    router = make_router(llmock, steps={"researcher": "advanced"})  # the agent is called research_expert
    app = supervisor_app(router.chat_model())
    script_supervisor_run(llmock)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        run(app, "Headcount?", "invoke", None)
    warned = [r.getMessage() for r in caplog.records if "matches no steps: entry" in r.getMessage()]
    assert len(warned) == 3  # once per arriving name: supervisor, research_expert, math_expert
    assert "'research_expert'" in warned[1] and "'researcher'" in warned[1]
    assert router.coverage.unmatched_entries() == ["researcher"]
    assert router.coverage.unconfigured_steps() == ["math_expert", "research_expert", "supervisor"]


@pytest.mark.parametrize("thread", THREADS)
@pytest.mark.parametrize("mode", MODES)
def test_prebuilt_agents_as_subgraphs_route_by_their_parent_node(llmock, mode, thread):
    router = make_router(llmock, steps={"researcher": "fast", "writer": "advanced"})
    model = router.chat_model()
    graph = StateGraph(MessagesState)
    graph.add_node("researcher", create_react_agent(model, [web_search]))
    graph.add_node("writer", create_agent(model, [add]))
    graph.add_edge(START, "researcher")
    graph.add_edge("researcher", "writer")
    llmock.call_tool("web_search", {"query": "q"})
    llmock.reply("found it")
    llmock.reply("the report")
    run(graph.compile(), "Research and write.", mode, thread)
    assert on_the_wire(llmock) == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]


def test_an_explicit_hint_on_the_parent_node_wins_over_the_subgraph(llmock):
    router = make_router(llmock, steps={"researcher": "fast"})
    graph = StateGraph(MessagesState)
    graph.add_node("researcher", create_react_agent(router.chat_model(), [web_search]),
                   metadata=step("deep_research", tier="advanced"))
    graph.add_edge(START, "researcher")
    llmock.reply("done")
    result = graph.compile().invoke({"messages": [HumanMessage("go")]})
    meta = result["messages"][-1].response_metadata["steproute"]
    assert (meta["step"], meta["tier"], meta["agent"]) == ("deep_research", "advanced", "researcher")
    assert on_the_wire(llmock) == ["gpt-4o"]


class Weather(BaseModel):
    city: str
    temperature_c: float


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18°C and sunny in {city}"


@pytest.mark.parametrize("thread", THREADS)
@pytest.mark.parametrize("mode", MODES)
def test_create_agent_with_tools_response_format_and_the_middleware(llmock, mode, thread):
    router = make_router(llmock, steps={"plan": "advanced", "tool_use": "standard", "synthesis": "fast",
                                        "extract": "standard"})
    agent = create_agent(router.chat_model(), tools=[get_weather], response_format=ToolStrategy(Weather),
                         middleware=[StepRouterMiddleware(router)], name="weather_agent")
    llmock.call_tool("get_weather", {"city": "Paris"})
    llmock.call_tool("Weather", {"city": "Paris", "temperature_c": 18})
    run(agent, "Weather in Paris?", mode, thread)
    # the first call plans (advanced); the structured final answer after the tool result is an extract
    assert on_the_wire(llmock) == ["gpt-4o", "gpt-4.1-mini"]


def test_middleware_kinds_follow_the_agent_loop_in_a_named_agent(llmock):
    router = make_router(llmock, steps={"plan": "advanced", "tool_use": "standard", "synthesis": "fast"})
    agent = create_agent(router.chat_model(), tools=[get_weather], middleware=[StepRouterMiddleware(router)],
                         name="weather_agent")
    llmock.call_tool("get_weather", {"city": "Paris"})
    llmock.reply("It is 18°C and sunny in Paris.")
    llmock.reply("Take sunglasses.")
    config = {"configurable": {"thread_id": "w-1"}}
    first = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]}, config)
    answers = [m.response_metadata["steproute"] for m in first["messages"] if isinstance(m, AIMessage)]
    assert [(a["step"], a["kind"], a["tier"], a["pin_group"]) for a in answers] == [
        ("weather_agent", "plan", "advanced", "weather_agent/plan"),
        ("weather_agent", "synthesis", "fast", "weather_agent/synthesis")]
    # the next turn has no tools to call for: still planned first, on the plan's pin
    again = agent.invoke({"messages": [*first["messages"], HumanMessage("What should I bring?")]}, config)
    meta = again["messages"][-1].response_metadata["steproute"]
    assert (meta["kind"], meta["tier"], meta["pinned"]) == ("plan", "advanced", True)
    assert on_the_wire(llmock) == ["gpt-4o", "gpt-4o-mini", "gpt-4o"]


@pytest.mark.parametrize("mode", MODES)
def test_hints_on_the_model_survive_agent_factories(llmock, mode):
    router = make_router(llmock)
    hinted = router.chat_model(step="critic", tier="advanced")
    configured = router.chat_model().with_config(metadata=step("reviewer", max_tier="standard", min_tier="standard"))
    llmock.reply("looks good")
    run(create_agent(hinted, [add]), "Review.", mode, None)
    llmock.reply("fine")
    run(create_react_agent(configured, [add]), "Review again.", mode, None)
    assert on_the_wire(llmock) == ["gpt-4o", "gpt-4.1-mini"]


@pytest.mark.parametrize("mode", MODES)
def test_swarm_quickstart_routes_each_agent_by_its_name(llmock, mode):
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph_swarm import create_handoff_tool, create_swarm

    router = make_router(llmock, steps={"Alice": "fast", "Bob": "advanced"})
    model = router.chat_model()
    alice = create_react_agent(model, [add, create_handoff_tool(agent_name="Bob")], prompt="You are Alice.",
                               name="Alice")
    bob = create_react_agent(model, [create_handoff_tool(agent_name="Alice", description="Transfer to Alice")],
                             prompt="You are Bob, you speak like a pirate.", name="Bob")
    app = create_swarm([alice, bob], default_active_agent="Alice").compile(checkpointer=InMemorySaver())
    llmock.call_tool("transfer_to_bob", {})
    llmock.reply("Arr, hello!")
    run(app, "I'd like to speak to Bob.", mode, f"swarm-{mode}")  # a swarm needs a thread for its checkpointer
    assert on_the_wire(llmock) == ["gpt-4o-mini", "gpt-4o"]
