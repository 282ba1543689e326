"""The agent benchmark's workloads behind one interface: load tasks, run one task on a router.

``gsm8k`` is the five-step pipeline of :mod:`_agent_gsm8k`. ``bfcl`` plugs in through
``_agent_bfcl`` (imported only when asked for): ``load_bfcl_tasks(n, seed)`` and
``run_bfcl_task(task, model, middleware=...)``: LangChain's ``create_agent`` loop on the router's
chat model, with ``StepRouterMiddleware`` naming each call by its step kind (``plan``: the call
that picks the tool; ``synthesis``: every call after a tool's result), so the loop's calls are
steps a configuration can route one by one.

Example:
    >>> sorted(WORKLOADS)
    ['bfcl', 'gsm8k']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["WORKLOADS", "Workload", "WorkloadError", "WorkloadRun", "load_workload"]


class WorkloadError(RuntimeError):
    """A workload cannot be run here (its module is missing)."""


@dataclass(frozen=True)
class WorkloadRun:
    """What one task gave under one router."""

    success: bool
    detail: str
    state: Mapping[str, Any]
    """The workload's own record of the run (the pipeline's state), for the per-step data set."""


@dataclass(frozen=True)
class Workload:
    """A workload: its tasks, its named steps (empty: one shared model whose calls are its steps),
    how to run a task, and (optionally) how to grade each step's output for the per-step data set."""

    name: str
    steps: tuple[str, ...]
    tasks: Sequence[Any]
    task_id: Callable[[Any], str]
    request_text: Callable[[Any], str]
    """The whole request as a per-request router sees it."""
    run: Callable[[Any, Any], WorkloadRun]
    """``run(task, router)``."""
    step_inputs: Callable[[Mapping[str, Any]], Mapping[str, list[dict[str, str]]]] | None = None
    """Each step's messages along a finished run (the data set asks every tier on them)."""
    step_params: Callable[[str], Mapping[str, Any]] | None = None
    grade: Callable[[str, Any, Any], float] | None = None
    """``grade(step, task, completion)`` in [0, 1]."""
    checks: Mapping[str, str] | None = None
    kinds: Mapping[str, str] | None = None
    static_steps: Mapping[str, str] | None = None
    """The per-step static configuration: a tier per step, as a user would write it by hand."""
    cascade_signals: Mapping[str, list[dict[str, Any]]] | None = None
    """The per-step cascade's acceptance signals per step (unnamed steps: the token probability)."""


GSM8K_STATIC_STEPS = {"rewrite": "small", "extract": "tiny", "plan": "medium", "calculate": "small", "answer": "tiny"}
"""Written by hand before measuring anything: the reading steps cheap, the plan strong, copying the
expression into the tool call mid-range."""
GSM8K_CASCADE_SIGNALS: dict[str, list[dict[str, Any]]] = {
    "plan": [{"signal": "arithmetic"}, {"signal": "logprob", "threshold": 0.6}],
    "calculate": [{"signal": "tools"}, {"signal": "logprob", "threshold": 0.6}],
}
BFCL_STEPS = ("plan", "synthesis")
"""The kinds ``StepRouterMiddleware`` gives the loop's calls (a tool result reporting an error
would make a ``tool_use`` call: the stub tools never report one)."""
BFCL_STATIC_STEPS = {"plan": "medium", "synthesis": "small"}
"""Written by hand: choosing the function and its arguments strong, the reply after the result
mid-range."""
BFCL_CASCADE_SIGNALS: dict[str, list[dict[str, Any]]] = {
    "plan": [{"signal": "tools"}, {"signal": "logprob", "threshold": 0.6}],
}


def _gsm8k(n: int, seed: int) -> Workload:
    import _agent_gsm8k as g

    from steproute import StepRequest

    def run(task: g.Task, router: Any) -> WorkloadRun:
        def call(step: str, messages: list[dict[str, str]], params: Mapping[str, Any]) -> Any:
            return router.complete(StepRequest(step, messages, kind=g.KINDS[step]), **params).completion

        state = g.build_graph(call).invoke({"question": task.question})
        success, detail = g.outcome_of(task, state)
        return WorkloadRun(success, detail, dict(state))

    def params(step: str) -> Mapping[str, Any]:
        out: dict[str, Any] = {"temperature": 0, "max_tokens": g.MAX_TOKENS[step]}
        if step == "calculate":
            out.update(tools=[g.CALCULATOR], tool_choice="required")
        return out

    def grade(step: str, task: g.Task, completion: Any) -> float:
        text = str(completion.content or "")
        if step == "calculate":
            return g.grade_step(step, text, task, expression=g.tool_expression(completion))
        return g.grade_step(step, text, task)

    return Workload("gsm8k", g.STEPS, g.load_tasks(n, seed), lambda t: t.task_id, lambda t: t.question, run,
                    step_inputs=g.step_inputs, step_params=params, grade=grade, checks=g.CHECKS, kinds=g.KINDS,
                    static_steps=GSM8K_STATIC_STEPS, cascade_signals=GSM8K_CASCADE_SIGNALS)


def _text_of(task: Any) -> str:
    for name in ("question", "prompt", "request", "query"):
        value = getattr(task, name, None)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value:  # a list of messages or of turns
            return "\n".join(str(m.get("content", m) if isinstance(m, dict) else m) for m in value)
    return repr(task)


def _bfcl(n: int, seed: int) -> Workload:
    try:
        module = importlib.import_module("_agent_bfcl")
    except ModuleNotFoundError as exc:
        if exc.name != "_agent_bfcl":
            raise WorkloadError(f"the bfcl workload needs {exc.name!r}: install bfcl-eval (see docs/agent-benchmark.md)") from exc
        raise WorkloadError("the bfcl workload is not in this tree (benchmarks/_agent_bfcl.py is missing)") from None

    from steproute import StepRouterMiddleware

    def run(task: Any, router: Any) -> WorkloadRun:
        outcome = module.run_bfcl_task(task, router.chat_model(temperature=0), middleware=[StepRouterMiddleware(router)])
        return WorkloadRun(bool(outcome.success), str(outcome.detail),
                           {"task_id": outcome.task_id, "kinds": [r.get("kind") for r in outcome.routing]})

    def task_id(task: Any) -> str:
        return str(getattr(task, "task_id", None) or getattr(task, "id", None) or repr(task)[:60])

    return Workload("bfcl", BFCL_STEPS, module.load_bfcl_tasks(n, seed=seed), task_id, _text_of, run,
                    kinds={s: s for s in BFCL_STEPS}, static_steps=BFCL_STATIC_STEPS, cascade_signals=BFCL_CASCADE_SIGNALS)


WORKLOADS: dict[str, Callable[[int, int], Workload]] = {"gsm8k": _gsm8k, "bfcl": _bfcl}


def load_workload(name: str, n: int, seed: int = 0) -> Workload:
    """The workload called ``name`` with its first ``n`` tasks (``WorkloadError`` when it cannot run here)."""
    try:
        factory = WORKLOADS[name]
    except KeyError:
        raise WorkloadError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
    return factory(n, seed)
