"""The GSM8K workload: rewrite → extract → plan → calculate (a calculator tool) → answer.

Each step is a LangGraph node making one steproute-routed call under the step's name, so a
configuration can route every step on its own. A task is a GSM8K question from
``../shared/data`` whose gold number is the final number of an answer the data marks correct.

Every step has a checkable output (the per-step data set grades it): ``rewrite`` and
``extract`` keep every number of the question, ``plan`` ends in an expression whose value is
the gold number, ``calculate``'s tool result is the gold number, ``answer`` states it.

Example:
    >>> final_number("so she makes 9 * $2 = $18 every day."), final_number("#### 1,250")
    (18.0, 1250.0)
    >>> calculate("(16 - 3 - 4) * 2")
    18.0
    >>> grade_step("plan", "1. subtract\\nExpression: (16 - 3 - 4) * 2", Task("t", "16 eggs", 18.0))
    1.0
"""

from __future__ import annotations

import ast
import json
import operator
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

STEPS = ("rewrite", "extract", "plan", "calculate", "answer")
KINDS = {"rewrite": "rewrite", "extract": "extract", "plan": "plan", "calculate": "tool_use", "answer": "synthesis"}
MAX_TOKENS = {"rewrite": 90, "extract": 70, "plan": 110, "calculate": 64, "answer": 12}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm" / "routellm" / "evals" / "gsm8k"
CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate one arithmetic expression (numbers, + - * / and parentheses).",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_EXPRESSION = re.compile(r"expression\s*[:=]\s*(.+)", re.I)


@dataclass(frozen=True)
class Task:
    """One GSM8K question and its gold number."""

    task_id: str
    question: str
    gold: float


def numbers(text: str) -> list[float]:
    """Every number written with digits in ``text`` (thousands separators dropped)."""
    out = []
    for match in _NUMBER.findall(text):
        try:
            out.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return out


def final_number(text: str) -> float | None:
    """The last number of ``text``, or ``None``."""
    found = numbers(text)
    return found[-1] if found else None


_OPS: Mapping[type, Callable[..., float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def calculate(expression: str) -> float:
    """The calculator tool: the value of an arithmetic expression (``ValueError`` otherwise)."""
    text = expression.replace("$", "").replace(",", "").replace("×", "*").replace("÷", "/").replace("^", "**").strip()
    text = text.split("=")[0].strip()

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](value(node.left), value(node.right)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            base, exponent = value(node.left), value(node.right)
            if abs(exponent) > 8:
                raise ValueError("exponent too large")
            return float(base ** exponent)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](value(node.operand)))
        raise ValueError(f"not arithmetic: {ast.dump(node)[:60]}")

    try:
        return value(ast.parse(text, mode="eval").body)
    except (SyntaxError, ZeroDivisionError, OverflowError, RecursionError) as exc:
        raise ValueError(f"cannot evaluate {expression!r}: {exc}") from None


def same(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-6 * max(1.0, abs(b))


def load_tasks(n: int, seed: int = 0, data: Path = DATA) -> list[Task]:
    """``n`` GSM8K questions (shuffled with ``seed``) whose gold comes from an answer marked correct
    (GPT-4's, else Mixtral's); rows with no correct answer, or none with a final number, are skipped."""
    from steproute.evaluation import load_gsm8k

    rows = load_gsm8k(data).rows
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    tasks = []
    for i in order:
        row = rows[i]
        gold = None
        for model in ("gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"):
            outcome = row.outcomes.get(model)
            if outcome is not None and outcome.quality >= 1.0 and outcome.response:
                gold = final_number(outcome.response)
                if gold is not None:
                    break
        if gold is None:
            continue
        tasks.append(Task(row.id, str(row.messages[-1]["content"]), gold))
        if len(tasks) == n:
            break
    return tasks


def prompts(step: str, state: Mapping[str, Any]) -> list[dict[str, str]]:
    """The step's messages, from the graph's state so far."""
    q = state["question"]
    text = {
        "rewrite": f"Rewrite this word problem in short, plain sentences. Keep every number.\n\nProblem: {q}",
        "extract": ("List every quantity given in this problem, one per line as `name: number`.\n\n"
                    f"Problem: {state.get('rewritten', q)}"),
        "plan": (f"Problem: {q}\nQuantities:\n{state.get('quantities', '')}\n\nWrite a short numbered plan of the "
                 "arithmetic that answers the question, then a last line `Expression: <one arithmetic expression "
                 "with numbers only>` that computes the answer."),
        "calculate": (f"Problem: {q}\nPlan:\n{state.get('plan', '')}\n\nCall the calculator with the one arithmetic "
                      "expression that computes the final answer."),
        "answer": (f"Problem: {q}\nThe calculator computed: {state.get('result', '')}\n\n"
                   "Reply with the final answer as a number only."),
    }[step]
    return [{"role": "user", "content": text}]


class State(TypedDict, total=False):
    question: str
    rewritten: str
    quantities: str
    plan: str
    expression: str
    result: str
    answer: str


def tool_expression(completion: Any) -> str:
    """The expression the calculate step asked the tool for (its tool call, else its text)."""
    for call in getattr(completion, "tool_calls", ()) or ():
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError:
            continue
        if isinstance(args, dict) and isinstance(args.get("expression"), (str, int, float)):
            return str(args["expression"])
    text = str(getattr(completion, "content", "") or "")
    match = _EXPRESSION.search(text)
    return (match.group(1) if match else text).strip()


def run_tool(expression: str) -> str:
    try:
        value = calculate(expression)
    except ValueError as exc:
        return f"error: {exc}"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def build_graph(call: Callable[[str, list[dict[str, str]], Mapping[str, Any]], Any]) -> Any:
    """The five-node LangGraph graph; ``call(step, messages, params)`` makes the step's routed call
    (``router.complete(StepRequest(step, messages, kind=...), **params)`` in the benchmark)."""
    from langgraph.graph import END, START, StateGraph

    def node(step: str) -> Callable[[State], State]:
        def run(state: State) -> State:
            params: dict[str, Any] = {"temperature": 0, "max_tokens": MAX_TOKENS[step]}
            if step == "calculate":
                params.update(tools=[CALCULATOR], tool_choice="required")
            completion = call(step, prompts(step, state), params)
            text = str(completion.content or "")
            if step == "rewrite":
                return {"rewritten": text}
            if step == "extract":
                return {"quantities": text}
            if step == "plan":
                return {"plan": text}
            if step == "calculate":
                expression = tool_expression(completion)
                return {"expression": expression, "result": run_tool(expression)}
            return {"answer": text}

        return run

    builder = StateGraph(State)
    previous = START
    for step in STEPS:
        builder.add_node(step, node(step))
        builder.add_edge(previous, step)
        previous = step
    builder.add_edge(previous, END)
    return builder.compile()


def outcome_of(task: Task, state: Mapping[str, Any]) -> tuple[bool, str]:
    """Success (the answer's final number is the gold one) and a short detail."""
    got = final_number(str(state.get("answer", "")))
    tool = f"tool {state.get('expression', '')!r} = {state.get('result', '')}"
    return same(got, task.gold), f"answer {got} vs gold {task.gold:g}; {tool}"


def grade_step(step: str, output: str, task: Task, expression: str | None = None) -> float:
    """1.0 when the step's output passes its check (see the module docstring), else 0.0."""
    if step in ("rewrite", "extract"):
        wanted = set(numbers(task.question))
        return float(wanted <= set(numbers(output)))
    if step == "plan":
        found = _EXPRESSION.findall(output)
        if not found:
            return 0.0
        try:
            return float(same(calculate(found[-1]), task.gold))
        except ValueError:
            return 0.0
    if step == "calculate":
        try:
            return float(same(calculate(expression if expression is not None else output), task.gold))
        except ValueError:
            return 0.0
    return float(same(final_number(output), task.gold))


def step_inputs(state: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Each step's messages along one finished run (its state holds every step's output)."""
    return {step: prompts(step, state) for step in STEPS}


CHECKS = {"rewrite": "keeps every number of the question", "extract": "lists every number of the question",
          "plan": "its last `Expression:` evaluates to the gold number",
          "calculate": "the calculator's result on its tool call is the gold number",
          "answer": "its final number is the gold number"}
"""How each step's output is graded, for the data set's documentation."""
