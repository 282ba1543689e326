"""The BFCL workload of benchmarks/agent.py: function-calling tasks run through LangChain's ``create_agent``.

Tasks come from the Berkeley Function Calling Leaderboard as the ``bfcl-eval`` package ships them
(Apache-2.0; questions, possible answers and executable multi-turn environments are in the wheel;
see :mod:`_agent_bfcl_eval` for how it is installed and imported). Categories, all with answers
bfcl-eval's own checkers grade:

- ``simple_python``, ``multiple``, ``parallel``, ``parallel_multiple`` (and the ``live_`` variants
  of each, user-contributed prompts): one user question and one to a few function docs. The tools
  record the call and return a stub result (``{"status": "success"}``); every tool call the agent
  makes in its loop is graded together by BFCL's AST checker (``ast_checker``) against the
  possible answers: right functions, right count, each argument one of the accepted values.
- ``multi_turn_base``: several user turns against BFCL's executable environments (a file system,
  messaging, posting, tickets, trading, travel, a vehicle, maths). Each tool call runs in the
  environment (``execute_multi_turn_func_call``) and its real result goes back to the model;
  BFCL's ``multi_turn_checker`` then replays the calls and compares the environments' state and
  the results with the ground truth's, turn by turn.

The model is any LangChain chat model (in the benchmark a steproute-routed one) and runs in one
``create_agent`` loop per turn, capped at :data:`MAX_MODEL_CALLS` model calls per turn (BFCL's own
loop allows 20 and fails the task when a turn needs more; here a turn that hits the cap fails a
multi-turn task too, and a single-turn task is graded on the calls made).

Measured on 2026-12-01 (seed 0's sample, temperature 0, a tier per model with steproute's
JSON-emulated tool calls, llama.cpp with 2 threads on a 2-core machine shared with other jobs;
15-230 s per task): Qwen2.5-Coder-1.5B 4/8, Qwen2.5-Coder-0.5B 3/12, SmolLM2-135M 0/3 (it calls
the tool again after every result until the cap). Parallel entries pass only when the model
makes its calls one reply after another (1.5B did once); mostly it answers after the first.
Qwen2.5-Coder-0.5B with native tool calling (``tool_calling: native``): 0/8, no tool call parsed.

Example:
    >>> tasks = load_bfcl_tasks(4)                                        # doctest: +SKIP
    >>> [t.category for t in tasks]                                       # doctest: +SKIP
    ['simple_python', 'multiple', 'parallel', 'parallel_multiple']
    >>> outcome = run_bfcl_task(tasks[0], router.chat_model())            # doctest: +SKIP
    >>> outcome.success, outcome.model_calls, outcome.tool_calls          # doctest: +SKIP
    (True, 2, (("calculate_triangle_area(base=10,height=5)",), ()))
"""

from __future__ import annotations

import copy
import json
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from _agent_bfcl_eval import CHECKER_MODEL_NAME, BfclApi, bfcl
from _agent_bfcl_tools import CallRecorder, ModelCall, call_string, make_tools
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelCallLimitMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_messages

__all__ = ["AST_CATEGORIES", "CATEGORIES", "MAX_MODEL_CALLS", "MULTI_TURN_CATEGORIES", "BfclOutcome", "BfclTask",
           "bfcl_task", "load_bfcl_tasks", "run_bfcl_task"]

AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple",
                  "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
MULTI_TURN_CATEGORIES = ("multi_turn_base",)
CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")
"""The default sample: the four non-live AST categories, in turn. ``multi_turn_base`` is supported
(``categories=``) but left out: its 20-30 function docs make every call long (about 1,700 prompt
tokens, and llama.cpp's grammar for the JSON-emulated tool call over 30 tools ran at 0.4 tokens/s
on this shared 2-core machine), so one task took tens of minutes."""
MAX_MODEL_CALLS = {"single_turn": 6, "multi_turn": 8}
"""Model calls allowed per user turn. A model that calls tools through steproute's JSON emulation
(``tool_calling: json``) makes one call per reply, so a turn needs one model call per expected call
plus the answer: 2 to 5 calls for 397 of BFCL's 400 parallel entries, up to 7 in a multi-turn turn."""
STUB_RESULT = json.dumps({"status": "success"})


@dataclass(frozen=True)
class BfclTask:
    """One BFCL test entry with its possible answer, as bfcl-eval loads it.

    ``turns`` holds each user turn's messages (``{"role", "content"}``); ``functions`` the function
    docs the model may call (with BFCL's language hint appended); ``ground_truth`` the possible
    answer (AST categories: ``[{function: {param: [accepted values]}}]``; multi-turn: each turn's
    executable calls); ``entry`` what the multi-turn checker reads (``initial_config``,
    ``involved_classes``).
    """

    task_id: str
    category: str
    turns: tuple[tuple[Mapping[str, str], ...], ...]
    functions: tuple[Mapping[str, Any], ...]
    ground_truth: Any
    entry: Mapping[str, Any]

    @property
    def multi_turn(self) -> bool:
        return self.category in MULTI_TURN_CATEGORIES

    @property
    def prompt(self) -> str:
        """The user's words of every turn, one turn a line (what a per-request router sees)."""
        return "\n".join(" ".join(str(m.get("content", "")) for m in turn if m.get("role") == "user")
                         for turn in self.turns)


@dataclass(frozen=True)
class BfclOutcome:
    """How one task went: graded by bfcl-eval's checker.

    ``tool_calls`` has one tuple per model call, its tool calls as BFCL call strings (empty for a
    call that answered in words); ``turn_of_call`` the user turn each model call answered;
    ``routing`` what steproute put on each call's message (``response_metadata["steproute"]``:
    step, kind, tier, model, cost_usd, reason), ``{}`` for a model steproute did not route.
    """

    task_id: str
    category: str
    success: bool
    detail: str
    model_calls: int
    tool_calls: tuple[tuple[str, ...], ...]
    turn_of_call: tuple[int, ...]
    routing: tuple[Mapping[str, Any], ...] = ()
    hit_call_limit: bool = False
    error: str | None = None
    """The exception that stopped the agent loop (a model call failed, a context overflowed), if any;
    the task then failed without grading."""


@cache
def _category(category: str) -> tuple[BfclTask, ...]:
    api = bfcl()
    answers = {row["id"]: row["ground_truth"] for row in api.load_ground_truth_entry(category)}
    tasks = []
    for entry in api.load_dataset_entry(category):
        if entry["id"] not in answers:
            continue
        turns = tuple(tuple(dict(m) for m in turn) for turn in entry["question"])
        extra: dict[str, Any] = {k: entry[k] for k in ("initial_config", "involved_classes", "id") if k in entry}
        tasks.append(BfclTask(entry["id"], category, turns, tuple(entry["function"]), answers[entry["id"]], extra))
    return tuple(tasks)


def load_bfcl_tasks(n: int, seed: int = 0, *, categories: Sequence[str] = CATEGORIES) -> list[BfclTask]:
    """``n`` tasks, one category after another in turn, each category's entries in a seeded random order.

    Deterministic for a given ``seed``; ``load_bfcl_tasks(n)`` is the first ``n`` of
    ``load_bfcl_tasks(n + 1)``. A category that runs out leaves the rotation.

    Example:
        >>> [t.task_id for t in load_bfcl_tasks(3, categories=("simple_python", "parallel"))]  # doctest: +SKIP
        ['simple_python_355', 'parallel_79', 'simple_python_24']
    """
    unknown = [c for c in categories if c not in AST_CATEGORIES + MULTI_TURN_CATEGORIES]
    if unknown:
        raise ValueError(f"unsupported BFCL categories {unknown}; supported: {AST_CATEGORIES + MULTI_TURN_CATEGORIES}")
    queues = []
    for category in categories:
        order = list(_category(category))
        random.Random(f"{seed}:{category}").shuffle(order)
        queues.append(order)
    picked: list[BfclTask] = []
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def bfcl_task(task_id: str) -> BfclTask:
    """One task by its BFCL id (``simple_python_0``, ``multi_turn_base_1``).

    Example:
        >>> bfcl_task("multiple_2").prompt                                    # doctest: +SKIP
        'What is the capital of Brazil?'
    """
    category = task_id.rsplit("_", 1)[0]
    if category not in AST_CATEGORIES + MULTI_TURN_CATEGORIES:
        raise ValueError(f"{task_id}: unsupported BFCL category {category!r}")
    for task in _category(category):
        if task.task_id == task_id:
            return task
    raise KeyError(task_id)


def run_bfcl_task(task: BfclTask, model: BaseChatModel, *, middleware: Sequence[AgentMiddleware] = (),
                  max_model_calls: int | None = None) -> BfclOutcome:
    """Run ``task`` through ``create_agent(model, tools)`` and grade it with bfcl-eval's checker.

    ``middleware`` goes into ``create_agent`` after the call recorder and before the call limit
    (e.g. ``StepRouterMiddleware(router)`` to route by the agent loop's step kinds).
    """
    api = bfcl()
    kind = "multi_turn" if task.multi_turn else "single_turn"
    limit = max_model_calls or MAX_MODEL_CALLS[kind]
    tag = f"steproute_{uuid.uuid4().hex}"  # names this run's environments in bfcl-eval's globals
    recorder = CallRecorder(execute=_executor(api, task, tag) if task.multi_turn else None)
    tools = make_tools(task.functions, api.gorilla_to_openapi,
                       _environment_responder(api, task, tag, recorder) if task.multi_turn else _stub)
    stack: list[Any] = [recorder, *middleware, ModelCallLimitMiddleware(run_limit=limit, exit_behavior="end")]
    agent: Any = create_agent(model, tools=tools, middleware=stack)
    history: list[BaseMessage] = []
    hit_limit, error = False, None
    try:
        for index, turn in enumerate(task.turns):
            recorder.turn = index
            history.extend(convert_to_messages([dict(m) for m in turn]))
            try:
                state = agent.invoke({"messages": history})
            except Exception as exc:  # the run's outcome, reported on it: the benchmark goes on
                error = f"{type(exc).__name__}: {exc}"
                break
            history = list(state["messages"])
            made = [c for c in recorder.calls if c.turn == index]
            if len(made) >= limit and made[-1].tool_calls:
                hit_limit = True
                break
        success, detail = (False, f"turn {recorder.turn}: the agent loop failed: {error}") if error else (
            _grade(api, task, recorder.calls, tag, hit_limit))
    finally:
        _forget(api, tag)
    return BfclOutcome(task.task_id, task.category, success, detail, len(recorder.calls),
                       tuple(tuple(call_string(n, a) for n, a in c.tool_calls) for c in recorder.calls),
                       tuple(c.turn for c in recorder.calls), tuple(c.routing for c in recorder.calls), hit_limit, error)


def _stub(name: str, args: dict[str, Any]) -> str:
    return STUB_RESULT


def _executor(api: BfclApi, task: BfclTask, tag: str) -> Any:
    def execute(calls: list[str]) -> list[str]:
        results, _ = api.execute_multi_turn_func_call(
            func_call_list=calls, initial_config=copy.deepcopy(dict(task.entry["initial_config"])),
            involved_classes=list(task.entry["involved_classes"]), model_name=tag, test_entry_id=task.task_id,
            long_context=False, is_evaL_run=False)
        return [str(r) for r in results]

    return execute


def _environment_responder(api: BfclApi, task: BfclTask, tag: str, recorder: CallRecorder) -> Any:
    execute = _executor(api, task, tag)

    def respond(name: str, args: dict[str, Any]) -> str:
        result = recorder.result_for(name, args)
        return result if result is not None else execute([call_string(name, args)])[0]

    return respond


def _grade(api: BfclApi, task: BfclTask, calls: Sequence[ModelCall], tag: str, hit_limit: bool) -> tuple[bool, str]:
    invalid = [i for c in calls for i in c.invalid_tool_calls]
    if task.multi_turn:
        if hit_limit:
            last = calls[-1].turn
            return False, f"turn {last}: still calling tools after {sum(c.turn == last for c in calls)} model calls"
        decoded = [[[call_string(n, a) for n, a in c.tool_calls] for c in calls if c.turn == t and c.tool_calls]
                   for t in range(len(task.turns))]
        entry = {**copy.deepcopy(dict(task.entry)), "id": task.task_id}
        result = api.multi_turn_checker(decoded, copy.deepcopy(task.ground_truth), entry, task.category, tag)
        return bool(result["valid"]), "state and results match the ground truth each turn" if result["valid"] else (
            f"{result.get('error_type', '')}: {result.get('error_message', '')}".strip(": "))
    if invalid:
        return False, f"unparseable tool call: {invalid[0]}"
    output = [{name: args} for c in calls for name, args in c.tool_calls]
    if not output:
        return False, "no tool call"
    if not api.is_function_calling_format_output(output):
        return False, "tool calls not in BFCL's format"
    result = api.ast_checker(copy.deepcopy(list(task.functions)), output, copy.deepcopy(task.ground_truth),
                             api.python, task.category, CHECKER_MODEL_NAME)
    note = f" (stopped at the {len(calls)}-call limit)" if hit_limit else ""
    if result["valid"]:
        return True, "AST match" + note
    return False, f"{result.get('error_type', '')}: {'; '.join(map(str, result.get('error', [])))}{note}"


def _forget(api: BfclApi, tag: str) -> None:
    """Drop this run's environments from bfcl-eval's module globals (it keeps them for later turns)."""
    prefix = re.sub(r"[-./:]", "_", tag)
    for key in [k for k in api.executed_instances if k.startswith(prefix)]:
        del api.executed_instances[key]
