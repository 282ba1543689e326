"""Quickstart: a two-step LangGraph graph whose steps go to different tiers.

    OPENAI_API_KEY=... python examples/quickstart.py

(The tests run it against a local llmock server by setting OPENAI_BASE_URL.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from steproute import StepRouter, step


class State(TypedDict, total=False):
    question: str
    query: str
    answer: str


router = StepRouter.from_file(Path(__file__).with_name("steproute.yaml"))
llm = router.chat_model()


def rewrite(state: State) -> State:
    return {"query": llm.invoke(f"Rewrite as a search query: {state['question']}").text}


def answer(state: State) -> State:
    message = llm.invoke(f"Answer briefly: {state['query']}")
    routed = message.response_metadata["steproute"]
    print(f"answer: tier={routed['tier']} model={message.response_metadata['model_name']} "
          f"cost=${routed['cost_usd']:.6f} baseline=${routed['baseline_cost_usd']:.6f} ({routed['reason']})")
    return {"answer": message.text}


builder = StateGraph(State)
builder.add_node("rewrite", rewrite, metadata=step("rewrite", kind="rewrite", tier="fast"))
builder.add_node("answer", answer, metadata=step("answer", kind="synthesis"))
builder.add_edge(START, "rewrite")
builder.add_edge("rewrite", "answer")
builder.add_edge("answer", END)
graph = builder.compile()

if __name__ == "__main__":
    print(graph.invoke({"question": "Is it going to rain in Paris tomorrow?"})["answer"])
