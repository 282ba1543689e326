"""One trace per graph run: every routed call of one graph invocation lands in one trace.

LangChain and LangGraph make no OpenTelemetry spans, so steproute opens a root span per
top-level run (lazily: by its first routed call) unless the application has a span open, or an
OpenTelemetry-based LangChain instrumentation (OpenInference) has one for the run.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from typing import TypedDict

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from steproute import RouterConfig, StepRouter, step
from steproute._run_trace import RunTracker, tracker
from tests.conftest import mock_tiers


class State(TypedDict, total=False):
    a: str
    b: str


@pytest.fixture
def otel():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    class Otel:
        tracer_provider = provider
        tracer = provider.get_tracer("test")
        router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"), tracer_provider=provider)

        @staticmethod
        def spans(prefix: str = ""):
            return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]

    yield Otel
    provider.shutdown()


def pair_graph(router: StepRouter, name: str = "pair"):
    """first → second, each node one routed call, sync and async."""
    llm = router.chat_model()

    def node(key: str):
        def sync(state: State) -> State:
            return {key: llm.invoke([HumanMessage(key)]).text}

        async def run_async(state: State) -> State:
            return {key: (await llm.ainvoke([HumanMessage(key)])).text}

        return RunnableLambda(sync, afunc=run_async, name=key)

    builder = StateGraph(State)
    builder.add_node("first", node("a"), metadata=step("first"))
    builder.add_node("second", node("b"), metadata=step("second"))
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    return builder.compile(name=name)


def _stream_messages(graph, config):
    chunks = [c for c, _ in graph.stream({}, config, stream_mode="messages")]
    assert any(isinstance(c, AIMessageChunk) and c.content for c in chunks)  # it did stream


async def _astream_messages(graph, config):
    chunks = [c async for c, _ in graph.astream({}, config, stream_mode="messages")]
    assert any(isinstance(c, AIMessageChunk) and c.content for c in chunks)


RUNS = {
    "invoke": lambda graph, config: graph.invoke({}, config),
    "ainvoke": lambda graph, config: asyncio.run(graph.ainvoke({}, config)),
    "stream messages": _stream_messages,
    "astream messages": lambda graph, config: asyncio.run(_astream_messages(graph, config)),
    "stream updates": lambda graph, config: list(graph.stream({}, config, stream_mode="updates")),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_one_graph_run_is_one_trace_under_one_root(otel, run):
    before = tracker.size  # (other tests' abandoned runs may still be there)
    RUNS[run](pair_graph(otel.router), {"configurable": {"thread_id": "t-7"}})
    routes = otel.spans("route ")
    (root,) = otel.spans("invoke_agent ")
    assert sorted(s.name for s in routes) == ["route first", "route second"]
    assert root.parent is None and root.name == "invoke_agent pair" and root.kind == SpanKind.INTERNAL
    for route in routes:
        assert route.context.trace_id == root.context.trace_id
        assert route.parent.span_id == root.context.span_id
        assert root.start_time <= route.start_time and route.end_time <= root.end_time
    assert dict(root.attributes) == {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "pair",
                                     "openinference.span.kind": "AGENT", "gen_ai.conversation.id": "t-7"}
    assert root.status.status_code == StatusCode.UNSET
    assert len(otel.spans()) == 5  # the root, two route spans, two chat spans: nothing else
    assert tracker.size <= before  # every run ended: nothing left behind


def test_two_invocations_are_two_traces(otel):
    graph = pair_graph(otel.router)
    graph.invoke({})
    graph.invoke({})
    roots = otel.spans("invoke_agent ")
    assert len(roots) == 2 and roots[0].context.trace_id != roots[1].context.trace_id
    for root in roots:
        assert sum(1 for s in otel.spans("route ") if s.context.trace_id == root.context.trace_id) == 2
    assert "gen_ai.conversation.id" not in roots[0].attributes  # no thread given


def test_under_an_application_span_no_root_is_made(otel):
    graph = pair_graph(otel.router)
    with otel.tracer.start_as_current_span("app") as app:
        graph.invoke({})
    assert otel.spans("invoke_agent ") == []
    routes = otel.spans("route ")
    assert len(routes) == 2 and all(r.parent.span_id == app.get_span_context().span_id for r in routes)


def test_runs_that_route_nothing_make_no_trace(otel):
    before = tracker.size
    builder = StateGraph(State)
    builder.add_node("plain", lambda s: {"a": "no model here"})
    builder.add_edge(START, "plain")
    builder.add_edge("plain", END)
    builder.compile().invoke({})
    (RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x)).invoke(1)
    assert otel.spans() == []
    assert tracker.size <= before


def test_a_call_outside_any_graph_is_still_a_trace_of_its_own(otel):
    otel.router.chat_model(step="alone").invoke("x")
    (route,) = otel.spans("route ")
    assert route.parent is None and otel.spans("invoke_agent ") == []


def test_a_failed_run_ends_its_root_with_the_error(otel):
    llm = otel.router.chat_model()

    def boom(state: State) -> State:
        llm.invoke("x")
        raise KeyError("no such thing")

    builder = StateGraph(State)
    builder.add_node("boom", boom)
    builder.add_edge(START, "boom")
    builder.add_edge("boom", END)
    with pytest.raises(KeyError):
        builder.compile().invoke({})
    (root,) = otel.spans("invoke_agent ")
    assert root.status.status_code == StatusCode.ERROR and root.attributes["error.type"] == "KeyError"
    (route,) = otel.spans("route ")
    assert route.parent.span_id == root.context.span_id


def test_a_stream_closed_early_ends_the_run_without_an_error(otel):
    stream = pair_graph(otel.router).stream({}, stream_mode="updates")
    assert next(stream) == {"first": {"a": "answer from fast"}}
    stream.close()  # LangGraph ends the run with GeneratorExit: not a failure
    (root,) = otel.spans("invoke_agent ")
    (route,) = otel.spans("route ")
    assert route.name == "route first" and route.parent.span_id == root.context.span_id
    assert root.status.status_code == StatusCode.UNSET and "error.type" not in root.attributes


def test_an_interrupt_ends_the_run_and_the_resume_is_a_new_trace_on_the_same_thread(otel):
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command, interrupt

    llm = otel.router.chat_model()

    def ask(state: State) -> State:
        llm.invoke("draft")
        approved = interrupt("approve?")
        return {"a": llm.invoke(f"final, {approved}").text}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t-9"}}
    assert "__interrupt__" in graph.invoke({}, config)
    (first,) = otel.spans("invoke_agent ")
    assert first.status.status_code == StatusCode.UNSET  # an interrupt is not a failure
    graph.invoke(Command(resume="yes"), config)
    roots = otel.spans("invoke_agent ")
    assert len(roots) == 2 and roots[0].context.trace_id != roots[1].context.trace_id
    assert {r.attributes["gen_ai.conversation.id"] for r in roots} == {"t-9"}
    in_resume = [s for s in otel.spans("route ") if s.context.trace_id == roots[1].context.trace_id]
    assert len(in_resume) == 2  # the node runs again from its start


@pytest.mark.parametrize("asynchronous", [False, True], ids=["invoke", "ainvoke"])
def test_a_prebuilt_agent_as_a_subgraph_lands_in_the_same_trace(otel, asynchronous):
    with warnings.catch_warnings():  # create_react_agent's move to langchain.agents
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    @tool
    def lookup(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    llm = otel.router.chat_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = create_react_agent(llm, tools=[lookup], name="helper")
    before = tracker.size

    def ask(state: MessagesState) -> dict:
        return {"messages": [llm.invoke(state["messages"])]}

    async def delegate(state: MessagesState) -> dict:
        return {"messages": (await agent.ainvoke({"messages": state["messages"]}))["messages"][-1:]}

    builder = StateGraph(MessagesState)
    builder.add_node("ask", ask, metadata=step("ask"))
    builder.add_node("helper", agent)  # the agent as a subgraph node...
    builder.add_node("delegate", RunnableLambda(lambda s: asyncio.run(delegate(s)), afunc=delegate))  # ...and called in one
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "helper")
    builder.add_edge("helper", "delegate")
    builder.add_edge("delegate", END)
    outer = builder.compile(name="outer")
    state = {"messages": [HumanMessage("weather in Paris?")]}
    asyncio.run(outer.ainvoke(state)) if asynchronous else outer.invoke(state)

    (root,) = otel.spans("invoke_agent ")
    assert root.name == "invoke_agent outer"
    routes = otel.spans("route ")
    assert len(routes) == 3 and {r.context.trace_id for r in routes} == {root.context.trace_id}
    assert all(r.parent.span_id == root.context.span_id for r in routes)
    assert tracker.size <= before


@pytest.fixture
def openinference(otel):
    from openinference.instrumentation.langchain import LangChainInstrumentor

    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    yield otel
    instrumentor.uninstrument()


@pytest.mark.parametrize("run", ["invoke", "ainvoke", "stream messages"])
def test_under_openinference_route_spans_nest_under_its_spans(openinference, run):
    otel = openinference
    RUNS[run](pair_graph(otel.router), {})
    assert otel.spans("invoke_agent ") == []
    by_id = {s.context.span_id: s for s in otel.spans()}
    (graph_span,) = [s for s in otel.spans() if s.parent is None]
    assert graph_span.name == "pair"  # OpenInference's span of the graph run
    routes = otel.spans("route ")
    assert len(routes) == 2
    for route in routes:
        assert route.context.trace_id == graph_span.context.trace_id
        parent = by_id[route.parent.span_id]
        # the chat model's run (or, when LangChain streams without a run manager, the node's)
        assert parent.name in ("RoutedChatModel", "a", "b"), parent.name
        assert parent.attributes["openinference.span.kind"] in ("LLM", "CHAIN")
    if run != "stream messages":
        assert {by_id[r.parent.span_id].name for r in routes} == {"RoutedChatModel"}


def test_runs_that_never_end_are_forgotten_past_the_limit(otel, caplog):
    runs = RunTracker(limit=100)
    first = uuid.uuid4()
    runs.on_chain_start({}, {}, run_id=first, name="never-ends")
    root = runs.root(first)
    root.context(otel.tracer)  # a routed call opened its span
    for _ in range(1000):  # top-level runs that never end, each with a child
        top = uuid.uuid4()
        runs.on_chain_start({}, {}, run_id=top)
        runs.on_chain_start({}, {}, run_id=uuid.uuid4(), parent_run_id=top)
        assert runs.size <= 100
    assert runs.root(first) is None and root.ended
    (span,) = otel.spans("invoke_agent ")
    assert span.attributes["steproute.run.unfinished"] is True
    assert "never ended" in caplog.text
