"""A third-party-style graph that imports its model factory by name and calls it in each node."""

from __future__ import annotations

from typing import TypedDict

from factory_models import get_model
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    plan: str
    answer: str


def plan(state: State) -> State:
    return {"plan": get_model("planner").invoke(state["question"]).text}


def answer(state: State) -> State:
    return {"answer": get_model("writer", temperature=0.0, api_key="sk-app-own-key").invoke(state["plan"]).text}


_builder = StateGraph(State)
_builder.add_node("plan", plan)
_builder.add_node("answer", answer)
_builder.add_edge(START, "plan")
_builder.add_edge("plan", "answer")
_builder.add_edge("answer", END)
graph = _builder.compile()
