"""A third-party-style LangGraph app that builds its own model with ``init_chat_model``.

It never takes a model from outside: the model is made at import time, configurable per run
(``configurable_fields`` with ``config_prefix="llm"``), and used by a two-node graph and by a
``create_agent`` agent. steproute's tests route it without editing this file.
"""

from __future__ import annotations

from typing import TypedDict

from langchain.agents import create_agent
from langchain.chat_models import init_chat_model
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph

model = init_chat_model(
    "openai:gpt-4o-mini",
    temperature=0.3,
    max_tokens=256,
    base_url="https://api.openai.com/v1",
    configurable_fields=("model", "model_provider", "temperature"),
    config_prefix="llm",
)


class State(TypedDict, total=False):
    question: str
    plan: str
    answer: str


def plan(state: State) -> State:
    return {"plan": model.invoke([("user", f"Make a plan for: {state['question']}")]).text}


def answer(state: State) -> State:
    return {"answer": model.invoke([("user", f"Answer following the plan: {state['plan']}")]).text}


_builder = StateGraph(State)
_builder.add_node("plan", plan)
_builder.add_node("answer", answer)
_builder.add_edge(START, "plan")
_builder.add_edge("plan", "answer")
_builder.add_edge("answer", END)
graph = _builder.compile()


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18°C and sunny in {city}"


researcher = create_agent(model, tools=[get_weather], name="researcher")
