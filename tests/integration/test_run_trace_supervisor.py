"""Issue 15, observation 8: one langgraph-supervisor run is one trace, over real HTTP (llmock).

Without an application span, each routed call of a supervisor run used to be a trace of its
own. Now the run's calls (the supervisor's and its agents', inside their subgraphs) share one
trace under an ``invoke_agent supervisor`` root span, sync and async.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import RouterConfig, StepRouter


def supervisor_graph(llmock: Any, tracer_provider: Any) -> Any:
    """A supervisor over two prebuilt ReAct agents, every model call routed to llmock."""
    import warnings

    from langgraph_supervisor import create_supervisor

    with warnings.catch_warnings():  # create_react_agent's move to langchain.agents
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

        tiers = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_base": llmock.base_url(), "api_key": "k"}]}}
        router = StepRouter(RouterConfig(tiers=tiers, default="fast"), tracer_provider=tracer_provider)

        @tool
        def get_weather(city: str) -> str:
            """The weather in a city."""
            return f"18°C and sunny in {city}"

        @tool
        def add(a: int, b: int) -> int:
            """Add two numbers."""
            return a + b

        llm = router.chat_model()
        weather = create_react_agent(llm, tools=[get_weather], name="weather_expert")
        maths = create_react_agent(llm, tools=[add], name="math_expert")
        return create_supervisor([weather, maths], model=llm, prompt="Route to the right expert.",
                                 output_mode="full_history").compile(
            name="supervisor")


def script(llmock: Any) -> None:
    """supervisor → weather_expert (calls its tool, answers) → back → supervisor answers."""
    llmock.call_tool("transfer_to_weather_expert", {})
    llmock.call_tool("get_weather", {"city": "Paris"})
    llmock.reply("It is 18°C and sunny in Paris.")
    llmock.reply("The weather expert says: 18°C and sunny.")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["invoke", "ainvoke"])
def test_a_supervisor_run_is_one_trace(llmock, asynchronous):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    graph = supervisor_graph(llmock, provider)
    script(llmock)
    state = {"messages": [HumanMessage("What is the weather in Paris?")]}
    config = {"configurable": {"thread_id": "chat-8"}}
    out = asyncio.run(graph.ainvoke(state, config)) if asynchronous else graph.invoke(state, config)
    assert any(m.type == "tool" and "18°C" in m.text for m in out["messages"])  # the agent ran its tool

    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name.startswith("invoke_agent ")]
    routes = [s for s in spans if s.name.startswith("route ")]
    assert root.name == "invoke_agent supervisor" and root.parent is None
    assert root.attributes["gen_ai.conversation.id"] == "chat-8"
    assert [r.name for r in sorted(routes, key=lambda s: s.start_time)] == [
        "route supervisor", "route weather_expert", "route weather_expert", "route supervisor"]
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}  # one trace: nothing outside it
    assert all(r.parent.span_id == root.context.span_id for r in routes)
    provider.shutdown()
