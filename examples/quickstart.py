"""Quickstart: a five-step agent whose steps are routed between two real local models.

    make demo                                    # same as: python examples/quickstart.py
    python examples/quickstart.py --provider openai      # the same graph on OpenAI (OPENAI_API_KEY)
    python examples/quickstart.py --provider anthropic   # ... or Anthropic (ANTHROPIC_API_KEY)
    python examples/quickstart.py --otlp http://127.0.0.1:6006   # spans to Phoenix (or any OTLP/HTTP backend)
    python examples/quickstart.py --log decisions.jsonl  # also a decision log: steproute report decisions.jsonl

The graph answers a shop customer: rewrite the message as a query → extract the order
(structured output) → plan the calculation → call a calculator tool → answer. The routing is
in ``steproute.yaml`` next to this file: rewrite, extract and the tool call go to the fast tier
(SmolLM2-135M), plan and answer to the strong tier (Qwen2.5-Coder-0.5B), both served by
llama.cpp on 127.0.0.1. The first run builds llama.cpp and fetches the weights (~560 MB) into
~/.cache/steproute; later runs start in seconds.
"""

from __future__ import annotations

import argparse
import ast
import operator
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from steproute import RouterConfig, StepCostTracker, StepRouter

CONFIG = Path(__file__).with_name("steproute.yaml")
QUESTION = "hi! i'd like 3 notebooks and 2 pens please, how much is that with shipping?"

# A few local documents the agent looks facts up in.
CATALOGUE = {
    "notebook": "Notebook (A5, 96 pages): 4.50 EUR each.",
    "pen": "Gel pen (black): 1.20 EUR each.",
    "stapler": "Stapler (metal): 7.80 EUR each.",
    "shipping": "Shipping: 3.90 EUR per order; free for orders of 50 EUR or more.",
}

# One switch runs the same graph on hosted models: the steps and policies stay as configured.
PROVIDER_TIERS = {
    "openai": {"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}},
    "anthropic": {"fast": {"models": ["anthropic/claude-haiku-4-5"]},
                  "strong": {"models": ["anthropic/claude-sonnet-4-5"]}},
}


class Item(BaseModel):
    """One product line of an order."""

    quantity: int = Field(description="how many the customer wants")
    product: Literal["notebook", "pen", "stapler"]  # the catalogue's products: the model can name no other


class Order(BaseModel):
    """The products a customer asks for."""

    items: list[Item]


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.USub: operator.neg, ast.UAdd: operator.pos}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.operand)))
    raise ValueError("only numbers and + - * / ( ) are allowed")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '3 * 4.50 + 2 * 1.20 + 3.90'."""
    try:
        return f"{_evaluate(ast.parse(expression.strip(), mode='eval')):.2f}"
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}"


def lookup(text: str) -> list[str]:
    """The catalogue entries whose product is named in ``text`` (shipping always)."""
    found = [doc for name, doc in CATALOGUE.items() if name != "shipping" and name in text.lower()]
    return [*found, CATALOGUE["shipping"]]


class State(TypedDict, total=False):
    question: str
    query: str
    order: str
    facts: str
    plan: str
    result: str
    answer: str


def build_graph(router: StepRouter, **model_kwargs: Any) -> Any:
    """rewrite → extract → plan → calculate → answer; each node's model call is routed by step."""
    llm = router.chat_model(temperature=0, **model_kwargs)

    def rewrite(state: State) -> State:
        # Small models follow an instruction best in the user turn.
        reply = llm.bind(max_tokens=32).invoke([HumanMessage(f"Rewrite as a search query: {state['question']}")])
        return {"query": reply.text.strip()}

    def extract(state: State) -> State:
        order = llm.with_structured_output(Order).invoke([HumanMessage(
            f"Extract every product the customer orders and its quantity.\n\nCustomer: {state['question']}")])
        items = order.items if isinstance(order, Order) else []
        text = ", ".join(f"{i.quantity} x {i.product}" for i in items) or state["query"]
        return {"order": text, "facts": "\n".join(lookup(f"{text} {state['query']} {state['question']}"))}

    def plan(state: State) -> State:
        reply = llm.bind(max_tokens=160).invoke([
            SystemMessage("You plan how to price a customer's order. Use only the facts given. Explain the "
                          "calculation in at most three short lines, then end with one line "
                          "'EXPRESSION: <arithmetic expression for the total in EUR>'."),
            HumanMessage(f"Order: {state['order']}\nFacts:\n{state['facts']}")])
        return {"plan": reply.text.strip()}

    def calculate(state: State) -> State:
        reply = llm.bind_tools([calculator], tool_choice="calculator").bind(max_tokens=64).invoke([
            SystemMessage("Call the calculator with the arithmetic expression given in the plan."),
            HumanMessage(state["plan"])])
        if reply.tool_calls:
            return {"result": str(calculator.invoke(reply.tool_calls[0]["args"]))}
        match = re.search(r"EXPRESSION:\s*(.+)", state["plan"])  # the model made no call: use the plan's own
        return {"result": str(calculator.invoke({"expression": match.group(1)})) if match else "unknown"}

    def answer(state: State) -> State:
        reply = llm.bind(max_tokens=80).invoke([
            SystemMessage("You are a friendly shop assistant. Reply to the customer in one or two sentences. "
                          "State the total exactly as calculated; do not recalculate it."),
            HumanMessage(f"Customer: {state['question']}\nFacts:\n{state['facts']}\n"
                         f"Calculation: {state['plan'].splitlines()[-1]} = {state['result']} EUR")])
        return {"answer": reply.text.strip()}

    # Each node's name is its step name: the router reads it from LangGraph's run metadata.
    builder = StateGraph(State)
    builder.add_sequence([rewrite, extract, plan, calculate, answer])
    builder.add_edge(START, "rewrite")
    builder.add_edge("answer", END)
    return builder.compile()


def load_router(provider: str = "local", log: str | None = None, *, record_content: bool = False) -> StepRouter:
    """The router of ``steproute.yaml``; for a provider, its tiers swapped for hosted models.

    With ``log``, every decision is appended to that decision log (prompts not included);
    ``record_content`` puts prompts and answers on the ``chat`` spans."""
    raw = yaml.safe_load(CONFIG.read_text())
    if provider != "local":
        raw["tiers"] = PROVIDER_TIERS[provider]
    return StepRouter(RouterConfig.from_dict(raw, source=str(CONFIG)), decision_log=log, record_content=record_content)


def run(router: StepRouter, question: str = QUESTION, *, logprobs: bool = True) -> tuple[State, StepCostTracker]:
    """Run the graph once; return its final state and its bill."""
    tracker = StepCostTracker()
    kwargs = {"model_kwargs": {"logprobs": True, "top_logprobs": 3}} if logprobs else {}
    state = build_graph(router, **kwargs).invoke({"question": question}, {"callbacks": [tracker]})
    return state, tracker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=["local", *PROVIDER_TIERS], default="local",
                        help="local llama.cpp models (default, no API key) or a hosted provider")
    parser.add_argument("--question", default=QUESTION, help="the customer's message (default: an order of notebooks)")
    parser.add_argument("--log", metavar="PATH",
                        help="append every decision to this decision log, for steproute report and steproute feedback")
    parser.add_argument("--otlp", metavar="URL", help="export spans over OTLP/HTTP to this base URL (e.g. Phoenix)")
    parser.add_argument("--record-content", action="store_true",
                        help="with --otlp: put each call's prompt and answer on its chat span")
    args = parser.parse_args(argv)
    if args.otlp:
        from steproute.telemetry import configure

        # service and Phoenix project "steproute-quickstart"
        tracer_provider, _ = configure(service_name="steproute-quickstart", endpoint=args.otlp, export_metrics=False)
        try:
            with tracer_provider.get_tracer("quickstart").start_as_current_span("quickstart run") as span:
                code = _main(args)
                print(f"trace: {args.otlp.rstrip('/')}/redirects/traces/{span.get_span_context().trace_id:032x}")
                return code
        finally:
            tracer_provider.shutdown()  # flush the spans before exit
    return _main(args)


def _router(args: argparse.Namespace) -> StepRouter:
    router = load_router(args.provider, args.log, record_content=args.record_content)
    if args.otlp:  # Phoenix prices the spans itself: give it the prices steproute uses
        from steproute.phoenix import register_prices

        try:
            register_prices(args.otlp, router.config)
        except RuntimeError as exc:  # not Phoenix (an OpenTelemetry Collector): no prices to give
            print(f"(no prices registered at {args.otlp}: {exc})")
    return router


def _main(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    print(f"customer: {args.question}")
    if args.provider == "local":
        from steproute.local import LocalServers

        print("starting the local models (the first run builds llama.cpp and fetches ~560 MB of weights)...",
              flush=True)
        with LocalServers() as local:
            os.environ.update(local.env())
            state, tracker = run(_router(args), args.question)
    else:
        state, tracker = run(_router(args), args.question, logprobs=False)
    print()
    for label, key in (("rewrite", "query"), ("extract", "order"), ("plan", "plan"), ("calculate", "result")):
        print(f"{label:>9} | " + "\n          | ".join(state[key].splitlines()))  # type: ignore[literal-required]
    print(f"\nassistant: {state['answer']}\n")
    print(tracker.table())
    total, baseline = tracker.total_cost_usd, tracker.total_baseline_cost_usd
    saved = 1 - total / baseline if baseline else 0.0
    print(f"\nrouted: ${total:.7f}  all on the baseline tier: ${baseline:.7f}  saving: {saved:.0%}")
    if args.provider == "local":
        print("(local models have no list price: the prices in steproute.yaml are illustrative)")
    if args.log:
        print(f"decisions appended to {args.log}: steproute report {args.log}; "
              f"rate one with steproute feedback DECISION_ID good --log {args.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
