"""Quickstart: a five-step agent whose steps are routed between two real local models.

    make demo                                    # same as: python examples/quickstart.py
    python examples/quickstart.py --provider openai      # the same graph on OpenAI (OPENAI_API_KEY)
    python examples/quickstart.py --provider anthropic   # ... or Anthropic (ANTHROPIC_API_KEY)
    python examples/quickstart.py --otlp http://127.0.0.1:6006   # spans to Phoenix (or any OTLP/HTTP backend)
    python examples/quickstart.py --log decisions.jsonl  # also a decision log: steproute report decisions.jsonl

The graph answers a shop customer: rewrite the message as a query → extract the order
(structured output) → plan the calculation → call a calculator tool → answer. The routing is
in ``steproute.yaml`` next to this file: rewrite and the tool call go to the fast tier
(SmolLM2-135M), plan and answer to the strong tier (Qwen2.5-Coder-0.5B), and extract is a
``cascade``: the fast tier's order is kept only when the model was sure of it, else the strong
tier reads the order again. Both are served by llama.cpp on 127.0.0.1, at temperature 0. The
plan's expression is checked against the order lines and the catalogue before the calculator
runs it, and the run's answer is checked against the order's known total. The first run builds
llama.cpp and fetches the weights (~560 MB) into ~/.cache/steproute; later runs start in seconds.
"""

from __future__ import annotations

import argparse
import ast
import math
import operator
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from steproute import RouterConfig, StepCostTracker, StepRouter
from steproute.cost_tracker import StepCall

CONFIG = Path(__file__).with_name("steproute.yaml")
QUESTION = "hi! i'd like 3 notebooks and 2 pens please, how much is that with shipping?"
STEPS = ("rewrite", "extract", "plan", "calculate", "answer")

# The shop: unit prices in EUR, and shipping once per order below FREE_SHIPPING_FROM.
PRICES = {"notebook": 4.50, "pen": 1.20, "stapler": 7.80}
SHIPPING, FREE_SHIPPING_FROM = 3.90, 50.0
# A few local documents the agent looks facts up in.
CATALOGUE = {
    "notebook": f"Notebook (A5, 96 pages): {PRICES['notebook']:.2f} EUR each.",
    "pen": f"Gel pen (black): {PRICES['pen']:.2f} EUR each.",
    "stapler": f"Stapler (metal): {PRICES['stapler']:.2f} EUR each.",
    "shipping": f"Shipping: {SHIPPING:.2f} EUR per order; free for orders of {FREE_SHIPPING_FROM:.0f} EUR or more.",
}
# The answer key: what the README's customer orders (read by a person, not by a model).
KNOWN_ORDERS: dict[str, list[tuple[int, str]]] = {QUESTION: [(3, "notebook"), (2, "pen")]}

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


def shop_total(lines: Sequence[tuple[int, str]]) -> float:
    """What the shop charges for these order lines: unit prices, plus shipping once below the free threshold.

    Example:
        >>> f"{shop_total([(3, 'notebook'), (2, 'pen')]):.2f}"
        '19.80'
    """
    subtotal = sum(quantity * PRICES[product] for quantity, product in lines)
    return subtotal + (SHIPPING if subtotal < FREE_SHIPPING_FROM else 0.0)


def lines_expression(lines: Sequence[tuple[int, str]]) -> str:
    """The order lines as one expression: ``3 * 4.50 + 2 * 1.20 + 3.90``."""
    terms = [f"{quantity} * {PRICES[product]:.2f}" for quantity, product in lines]
    subtotal = sum(quantity * PRICES[product] for quantity, product in lines)
    return " + ".join(terms + ([f"{SHIPPING:.2f}"] if subtotal < FREE_SHIPPING_FROM else []))


def check_expression(expression: str, lines: Sequence[tuple[int, str]]) -> str | None:
    """None when ``expression`` prices the order lines as the shop does; else what is wrong with it.

    Example:
        >>> check_expression("3 * 4.50 + 2 * 1.20 + 3 * 3.90", [(3, 'notebook'), (2, 'pen')])
        'it makes 27.60, the order lines make 19.80 (3 * 4.50 + 2 * 1.20 + 3.90)'
    """
    value = calculator.invoke({"expression": expression})
    expected = f"{shop_total(lines):.2f}"
    if value == expected:
        return None
    return f"it makes {value}, the order lines make {expected} ({lines_expression(lines)})"


def usd(amount: float) -> str:
    """A dollar amount, readable at any size: two significant digits, at least two decimals.

    Example:
        >>> usd(0.0000245), usd(0.00086), usd(0.0016146), usd(1.6146), usd(0)
        ('$0.000025', '$0.00086', '$0.0016', '$1.61', '$0.00')
    """
    if amount == 0 or not math.isfinite(amount):
        return "$0.00" if amount == 0 else f"${amount}"
    value = Decimal(repr(abs(amount)))
    digits = max(2, 1 - value.adjusted())
    rounded = value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    if digits > 2 and rounded.adjusted() > value.adjusted():  # 0.0995 → 0.10, not 0.100
        rounded = rounded.quantize(Decimal(1).scaleb(1 - digits))
    return f"{'-' if amount < 0 else ''}${rounded:f}"


def why(reason: str, width: int = 90) -> str:
    """A decision's reason for the bill's ``why`` column: a cascade's starting point left out, cut to ``width``.

    Example:
        >>> why("cascade: start at 'fast'; escalated fast → strong (fast: logprob=0.423; logprob below threshold)")
        'escalated fast → strong (fast: logprob=0.423; logprob below threshold)'
    """
    return short(re.sub(r"^cascade: start at '[^']*'; ", "", reason), width)


def short(text: str, width: int = 64) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class State(TypedDict, total=False):
    question: str
    query: str
    order: str
    lines: list[tuple[int, str]]
    facts: str
    plan: str
    expression: str
    checks: list[str]
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
        lines = [(i.quantity, i.product) for i in order.items] if isinstance(order, Order) else []
        text = ", ".join(f"{quantity} x {product}" for quantity, product in lines) or state["query"]
        return {"order": text, "lines": lines,
                "facts": "\n".join(lookup(f"{text} {state['query']} {state['question']}"))}

    def plan(state: State) -> State:
        reply = llm.bind(max_tokens=160).invoke([
            SystemMessage("You plan how to price a customer's order. Use only the facts given. Explain the "
                          "calculation in at most three short lines, then end with one line "
                          "'EXPRESSION: <arithmetic expression for the total in EUR>'."),
            HumanMessage(f"Order: {state['order']}\nFacts:\n{state['facts']}")])
        text = reply.text.strip()
        match = re.search(r"EXPRESSION:\s*([^=\n]+)", text)
        expression = match.group(1).strip().removesuffix("EUR").strip() if match else ""
        # The check: a plan's expression must price the order lines as the catalogue does. A wrong
        # one (a fee counted three times, a product left out) is replaced by the order lines' own.
        problem = check_expression(expression, state["lines"]) if state.get("lines") else None
        if not state.get("lines"):
            return {"plan": text, "expression": expression, "checks": ["plan: no order lines to check it against"]}
        if problem:
            return {"plan": text, "expression": lines_expression(state["lines"]),
                    "checks": [f"plan: expression rejected: {problem}; the order lines' expression is used"]}
        return {"plan": text, "expression": expression, "checks": ["plan: expression checked against the order lines ✓"]}

    def calculate(state: State) -> State:
        reply = llm.bind_tools([calculator], tool_choice="calculator").bind(max_tokens=64).invoke([
            SystemMessage("Call the calculator with the arithmetic expression given."),
            HumanMessage(f"EXPRESSION: {state['expression']}")])
        checks = state.get("checks", [])
        called = str(reply.tool_calls[0]["args"].get("expression", "")) if reply.tool_calls else None
        if called is not None and called.replace(" ", "") == state["expression"].replace(" ", ""):
            return {"result": str(calculator.invoke({"expression": called}))}
        note = "made no call" if called is None else f"called it with {called!r}"
        return {"result": str(calculator.invoke({"expression": state["expression"]})),
                "checks": [*checks, f"calculate: the model {note}; the checked expression is used"]}

    def answer(state: State) -> State:
        reply = llm.bind(max_tokens=80).invoke([
            SystemMessage("You are a friendly shop assistant. Reply to the customer in one or two sentences. "
                          "State the total exactly as calculated; do not recalculate it."),
            HumanMessage(f"Customer: {state['question']}\nFacts:\n{state['facts']}\n"
                         f"Calculation: {state['expression']} = {state['result']} EUR")])
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


OnStep = Callable[[str, "State", list[StepCall]], None]


def run(router: StepRouter, question: str = QUESTION, *, logprobs: bool = True,
        on_step: OnStep | None = None) -> tuple[State, StepCostTracker]:
    """Run the graph once; return its final state and its bill.

    ``on_step(step, state so far, the step's calls)`` is called as each step finishes, while the
    next one runs (the demo prints its line there)."""
    tracker = StepCostTracker()
    kwargs = {"model_kwargs": {"logprobs": True, "top_logprobs": 3}} if logprobs else {}
    state: State = {"question": question}
    reported = 0
    for update in build_graph(router, **kwargs).stream(state, {"callbacks": [tracker]}, stream_mode="updates"):
        for name, values in update.items():
            state.update(values or {})  # type: ignore[typeddict-item]
            calls, reported = tracker.calls[reported:], len(tracker.calls)
            if on_step is not None:
                on_step(name, state, calls)
    return state, tracker


def step_line(name: str, state: State, calls: Sequence[StepCall]) -> str:
    """One step's line, printed as the step finishes: its tier(s), time and what it produced."""
    output = {"rewrite": state.get("query", ""), "extract": state.get("order", ""),
              "plan": f"EXPRESSION: {state.get('expression', '')}", "calculate": state.get("result", ""),
              "answer": state.get("answer", "")}.get(name, "")
    tiers = ",".join(dict.fromkeys(c.tier for c in calls)) or "-"
    latency = sum(c.latency_s for c in calls)
    line = f"{name:>9}  {tiers:<6} {latency:5.1f}s  {short(output, 72)}"
    notes = [c.split(": ", 1)[1] for c in state.get("checks", []) if c.startswith(f"{name}: ")]
    return line + "".join(f"\n{'':>9}  ↳ {note}" for note in notes)


def bill(tracker: StepCostTracker) -> str:
    """The run's bill: one row per routed call with the decision's reason (``why``), then the total."""
    def share(saved: float, baseline: float) -> str:
        return f"{saved / baseline:.0%}" if baseline else "-"

    header = ["step", "tier", "model", "tokens in/out", "latency", "cost", "baseline", "saving", "why"]
    rows = [[c.step, c.tier, c.model, f"{c.input_tokens}/{c.output_tokens}", f"{c.latency_s:.2f}s", usd(c.cost_usd),
             usd(c.baseline_cost_usd), share(c.savings_usd, c.baseline_cost_usd), why(c.reason)]
            for c in tracker.calls]
    total, baseline = tracker.total_cost_usd, tracker.total_baseline_cost_usd
    rows.append(["TOTAL", "", "", f"{sum(c.input_tokens for c in tracker.calls)}/"
                 f"{sum(c.output_tokens for c in tracker.calls)}", f"{sum(c.latency_s for c in tracker.calls):.2f}s",
                 usd(total), usd(baseline), share(baseline - total, baseline), ""])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {4, 5, 6, 7}

    def line(cells: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def verdict(state: State, expected: float | None) -> tuple[bool | None, str]:
    """Whether the run's answer is right: the calculator's total and the reply, against the known total."""
    result = state.get("result", "?")
    if expected is None:
        return None, f"answer: {result} EUR (no known total for this question: --expect EUR checks one)"
    want = f"{expected:.2f}"
    if result != want:
        return False, f"answer: {result} EUR ✗ WRONG: the order's known total is {want} EUR"
    if want not in state.get("answer", ""):
        return False, f"answer: {result} EUR ✗ the assistant's reply does not state it"
    return True, f"answer: {result} EUR ✓ matches the order's known total"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=["local", *PROVIDER_TIERS], default="local",
                        help="local llama.cpp models (default, no API key) or a hosted provider")
    parser.add_argument("--question", default=QUESTION, help="the customer's message (default: an order of notebooks)")
    parser.add_argument("--expect", type=float, metavar="EUR",
                        help="the right total for --question, to check the answer against (known for the default)")
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


def _run(args: argparse.Namespace) -> tuple[State, StepCostTracker]:
    def on_step(name: str, state: State, calls: list[StepCall]) -> None:
        print(step_line(name, state, calls), flush=True)

    started = time.perf_counter()
    if args.provider == "local":
        from steproute.local import LocalServers

        print("starting the local models (the first run builds llama.cpp and fetches ~560 MB of weights)...",
              flush=True)
        with LocalServers() as local:
            os.environ.update(local.env())
            print(f"models ready in {time.perf_counter() - started:.1f}s; running the {len(STEPS)} steps "
                  "(each line prints as its step finishes):\n", flush=True)
            return run(_router(args), args.question, on_step=on_step)
    print(f"running the {len(STEPS)} steps on {args.provider} (each line prints as its step finishes):\n", flush=True)
    return run(_router(args), args.question, logprobs=False, on_step=on_step)


def _main(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    print(f"customer: {args.question}", flush=True)
    state, tracker = _run(args)
    expected = args.expect if args.expect is not None else (
        shop_total(KNOWN_ORDERS[args.question]) if args.question in KNOWN_ORDERS else None)
    right, line = verdict(state, expected)
    print(f"\nassistant: {state.get('answer', '')}\n{line}\n")
    print(bill(tracker))
    total, baseline = tracker.total_cost_usd, tracker.total_baseline_cost_usd
    saved = 1 - total / baseline if baseline else 0.0
    print(f"\nrouted: {usd(total)}  all on the baseline tier: {usd(baseline)}  saving: {saved:.0%}")
    if args.provider == "local":
        print("(local models have no list price: the prices in steproute.yaml are illustrative)")
    if args.log:
        print(f"decisions appended to {args.log}: steproute report {args.log}; "
              f"rate one with steproute feedback DECISION_ID good --log {args.log}")
    return 1 if right is False else 0


if __name__ == "__main__":
    sys.exit(main())
