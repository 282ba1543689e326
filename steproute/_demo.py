"""``steproute demo``: a five-step LangGraph agent routed across three tiers, with its bill.

The tiers are served by llmock, a mock OpenAI-compatible server that the demo starts on
127.0.0.1 and stops on exit: real HTTP, real LiteLLM, real LangGraph, canned answers, no
download. ``make demo`` (``examples/quickstart.py``) runs real local models instead.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from typing import TYPE_CHECKING, Any, TypedDict

from steproute.router import StepRouter

if TYPE_CHECKING:
    from steproute.cost_tracker import StepCostTracker
    from steproute.decision_log import DecisionLog

STEPS = ("rewrite", "extract", "plan", "use_tool", "answer")


class AgentState(TypedDict, total=False):
    question: str
    query: str
    fields: str
    plan: str
    observation: str
    answer: str


def build_graph(router: StepRouter) -> Any:
    """rewrite → extract → plan → use_tool → answer, each node a routed step."""
    from langchain_core.messages import HumanMessage
    from langgraph.graph import END, START, StateGraph

    from steproute.langgraph import step

    llm = router.chat_model()

    def lookup_weather(city: str) -> str:
        """Current weather of a city."""
        return f"18°C and clear in {city}"

    def use_tool(state: AgentState) -> AgentState:
        message = llm.bind_tools([lookup_weather]).invoke([HumanMessage(state["plan"])])
        calls = message.tool_calls
        observation = lookup_weather(**calls[0]["args"]) if calls else message.text
        return {"observation": str(observation)}

    builder = StateGraph(AgentState)
    builder.add_node("rewrite", router.node("rewrite", "Rewrite as a search query: {question}",
                                            output_key="query", kind="rewrite"))
    builder.add_node("extract", router.node("extract", "List the city and date in: {query}",
                                            output_key="fields", kind="extract"))
    builder.add_node("plan", router.node("plan", "Plan the steps to answer {question} given {fields}",
                                         output_key="plan"))
    builder.add_node("use_tool", use_tool, metadata=step("use_tool", kind="tool_use"))
    builder.add_node("answer", router.node("answer", "Answer {question} using: {observation}",
                                           output_key="answer", kind="synthesis"))
    previous = START
    for name in STEPS:
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile()


def run(question: str = "Will I need an umbrella in Paris tomorrow?", tenant_plan: str = "free",
        decision_log: DecisionLog | None = None) -> StepCostTracker:
    """Start llmock, run the graph once, stop llmock; return the run's bill.

    With ``decision_log``, every routed call is also written to it (one decision entry each).
    """
    from llmock.testing import LLMockServer

    from steproute.config import load_config
    from steproute.cost_tracker import StepCostTracker

    with LLMockServer(host="127.0.0.1") as server:
        os.environ["STEPROUTE_DEMO_BASE"] = server.base_url("openai")
        with resources.as_file(resources.files("steproute") / "demo.yaml") as path:
            router = StepRouter(load_config(path), decision_log=decision_log)
        tracker = StepCostTracker()
        build_graph(router).invoke(
            {"question": question},
            {"callbacks": [tracker], "metadata": {"tenant": {"plan": tenant_plan}}},
        )
    return tracker


def main(log: str | None = None) -> int:
    """Run the demo for a free and an enterprise tenant; with ``log``, append every decision
    (prompts included: they are the demo's own) to that decision log.

    Example:
        >>> main(log="decisions.jsonl")  # doctest: +SKIP
        0
    """
    from steproute.decision_log import JsonlDecisionLog, read_log

    print("steproute demo: a 5-step LangGraph agent routed across 3 tiers (fast, standard, advanced).")
    print("Models are served by llmock, a mock OpenAI-compatible server started on 127.0.0.1 for this")
    print("demo (canned answers; prices from LiteLLM's price map for the models each tier names).")
    print("For real local models (llama.cpp, no API key), run `make demo` or examples/quickstart.py.\n")
    decision_log = JsonlDecisionLog(log, include_prompts=True) if log else None
    calls = 0
    try:
        for plan in ("free", "enterprise"):
            tracker = run(tenant_plan=plan, decision_log=decision_log)
            calls += len(tracker.calls)
            print(f"tenant plan: {plan}")
            print(tracker.table(reasons=True))
            print()
    finally:
        if decision_log is not None:
            decision_log.close(timeout=10)
    if decision_log is None or log is None:
        return 0
    if decision_log.dropped:
        print(f"steproute demo: {decision_log.dropped} decision(s) could not be written to {log} "
              "(the warning above says why)", file=sys.stderr)
        return 1
    decisions = read_log(log).decisions
    print(f"wrote {calls} decisions to {log} (with their prompts). Next:")
    print(f"  steproute report {log}")
    if decisions:
        print(f"  steproute feedback {decisions[-1]['id']} good --log {log}   # rate the last answer")
    print(f"  steproute convert --from log {log} --out rows.jsonl        # the rated decisions as rows")
    return 0
