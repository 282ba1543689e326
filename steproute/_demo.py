"""``steproute demo``: a five-step LangGraph agent routed across three tiers, with its bill.

Until the local-model issue lands, the tiers are served by llmock, a mock OpenAI-compatible
server that the demo starts on 127.0.0.1 and stops on exit: real HTTP, real LiteLLM, real
LangGraph, canned answers.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any, TypedDict

from steproute.router import StepRouter

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


def _collector() -> Any:
    """A LangChain callback handler that keeps each routed call's response metadata."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Collector(BaseCallbackHandler):
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            for generations in response.generations:
                for generation in generations:
                    message = getattr(generation, "message", None)
                    if message is not None and "steproute" in message.response_metadata:
                        self.calls.append({**message.response_metadata["steproute"],
                                           "usage": message.usage_metadata or {}})

    return Collector()


def format_table(calls: list[dict[str, Any]]) -> str:
    """The per-step bill as a plain-text table."""
    header = ("step", "kind", "tier", "model", "tokens in/out", "cost $", "baseline $", "saved", "why")
    rows = []
    total = baseline = 0.0
    for c in calls:
        usage = c["usage"]
        total += c["cost_usd"]
        baseline += c["baseline_cost_usd"]
        saved = 1 - c["cost_usd"] / c["baseline_cost_usd"] if c["baseline_cost_usd"] else 0.0
        rows.append((c["step"], c["kind"] or "-", c["tier"], c["model"],
                     f"{usage.get('input_tokens', 0)}/{usage.get('output_tokens', 0)}",
                     f"{c['cost_usd']:.7f}", f"{c['baseline_cost_usd']:.7f}", f"{saved:.0%}", c["reason"]))
    saved_all = 1 - total / baseline if baseline else 0.0
    rows.append(("TOTAL", "", "", "", "", f"{total:.7f}", f"{baseline:.7f}", f"{saved_all:.0%}", ""))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[Any, ...]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def run(question: str = "Will I need an umbrella in Paris tomorrow?", tenant_plan: str = "free") -> list[dict[str, Any]]:
    """Start llmock, run the graph once, stop llmock; return the routed calls."""
    from llmock.testing import LLMockServer

    from steproute.config import load_config

    with LLMockServer(host="127.0.0.1") as server:
        os.environ["STEPROUTE_DEMO_BASE"] = server.base_url("openai")
        with resources.as_file(resources.files("steproute") / "demo.yaml") as path:
            router = StepRouter(load_config(path))
        collector = _collector()
        build_graph(router).invoke(
            {"question": question},
            {"callbacks": [collector], "metadata": {"tenant": {"plan": tenant_plan}}},
        )
    return collector.calls


def main() -> int:
    print("steproute demo: a 5-step LangGraph agent routed across 3 tiers (fast, standard, advanced).")
    print("Models are served by llmock, a mock OpenAI-compatible server started on 127.0.0.1 for this")
    print("demo (canned answers; prices from LiteLLM's price map for the models each tier names).")
    print("Real local models replace it once the embedded-default issue lands.\n")
    for plan in ("free", "enterprise"):
        calls = run(tenant_plan=plan)
        print(f"tenant plan: {plan}")
        print(format_table(calls))
        print()
    return 0
