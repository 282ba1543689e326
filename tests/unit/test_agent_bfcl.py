"""The BFCL workload (benchmarks/_agent_bfcl.py) on hand-picked real BFCL entries, graded by bfcl-eval.

A scripted chat model plays the agent: LangChain's real ``create_agent`` loop runs it with the
task's functions as tools, and bfcl-eval's own checkers grade what it called: the right call
grades True, one wrong argument (or a missing or extra call) False. The multi-turn task runs in
BFCL's executable file system, whose real outputs go back to the model.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _agent_bfcl import (
    CATEGORIES,
    BfclTask,
    bfcl_task,
    load_bfcl_tasks,
    run_bfcl_task,
)
from _agent_bfcl_eval import bfcl
from _agent_bfcl_tools import openapi_schema


class ScriptedModel(GenericFakeChatModel):
    """Answers each call with the next scripted message; records what it was sent."""

    seen: list[list[Any]] = []  # noqa: RUF012 (a pydantic field; each model gets its own list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self

    def _generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def scripted(*replies: AIMessage | str) -> ScriptedModel:
    messages: Iterator[AIMessage] = iter(r if isinstance(r, AIMessage) else AIMessage(r) for r in replies)
    return ScriptedModel(messages=messages, seen=[])


def calls(*pairs: tuple[str, dict[str, Any]]) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": n, "args": a, "id": f"call_{i}"} for i, (n, a) in enumerate(pairs)])


# -- loading ------------------------------------------------------------------------------------


def test_the_sample_takes_each_category_in_turn_deterministically():
    tasks = load_bfcl_tasks(8)
    assert CATEGORIES == ("simple_python", "multiple", "parallel", "parallel_multiple")
    assert [t.category for t in tasks] == list(CATEGORIES) * 2
    assert [t.task_id for t in tasks] == [t.task_id for t in load_bfcl_tasks(8)]
    assert [t.task_id for t in load_bfcl_tasks(3)] == [t.task_id for t in tasks[:3]]
    assert [t.task_id for t in load_bfcl_tasks(8, seed=1)] != [t.task_id for t in tasks]
    assert len({t.task_id for t in load_bfcl_tasks(60)}) == 60
    for task in tasks:
        assert task.functions and task.ground_truth and task.prompt
        assert task.task_id.startswith(task.category)
    mixed = load_bfcl_tasks(4, categories=("simple_python", "multi_turn_base"))
    assert [t.multi_turn for t in mixed] == [False, True, False, True]
    assert all(len(t.turns) >= 1 and t.entry["initial_config"] is not None for t in mixed[1::2])


def test_a_category_without_checkable_answers_is_refused():
    with pytest.raises(ValueError, match="irrelevance"):
        load_bfcl_tasks(2, categories=("simple_python", "irrelevance"))


def test_a_task_is_bfcl_s_entry_with_its_possible_answer():
    task = bfcl_task("simple_python_0")
    assert task.prompt == "Find the area of a triangle with a base of 10 units and height of 5 units."
    assert task.functions[0]["name"] == "calculate_triangle_area"
    assert task.ground_truth == [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]
    multi = bfcl_task("multi_turn_base_1")
    assert multi.multi_turn and len(multi.turns) == 4
    assert {f["name"] for f in multi.functions} >= {"ls", "cd", "mv", "grep", "tail"}
    assert multi.entry["involved_classes"] == ["GorillaFileSystem"]


def test_gorilla_types_become_json_schema_types_at_every_depth():
    mapping = bfcl().gorilla_to_openapi
    schema = openapi_schema({"type": "dict", "properties": {
        "rate": {"type": "float", "description": "Rate."},
        "points": {"type": "array", "items": {"type": "tuple", "items": {"type": "float"}}},
        "options": {"type": "dict", "properties": {"deep": {"type": "any"}}},
        "plain": {"description": "no type"}}}, mapping)
    props = schema["properties"]
    assert schema["type"] == "object"
    assert props["rate"] == {"type": "number", "format": "float", "description": "Rate. This is a float type value."}
    assert props["points"]["items"]["type"] == "array" and props["points"]["items"]["items"]["type"] == "number"
    assert props["options"]["properties"]["deep"]["type"] == "string"
    assert props["plain"]["type"] == "string"


# -- single-turn AST grading --------------------------------------------------------------------


def test_the_right_call_grades_true_and_the_model_sees_the_tools_result():
    model = scripted(calls(("calculate_triangle_area", {"base": 10, "height": 5})), "The area is 25 square units.")
    outcome = run_bfcl_task(bfcl_task("simple_python_0"), model)
    assert outcome.success, outcome.detail
    assert outcome.detail == "AST match"
    assert outcome.model_calls == 2
    assert outcome.tool_calls == (("calculate_triangle_area(base=10,height=5)",), ())
    assert outcome.turn_of_call == (0, 0)
    tool_message = model.seen[1][-1]
    assert isinstance(tool_message, ToolMessage) and '"success"' in str(tool_message.content)


def test_one_wrong_argument_grades_false_with_bfcl_s_reason():
    model = scripted(calls(("calculate_triangle_area", {"base": 12, "height": 5})), "25.")
    outcome = run_bfcl_task(bfcl_task("simple_python_0"), model)
    assert not outcome.success
    assert "value_error" in outcome.detail and "base" in outcome.detail


def test_a_dotted_bfcl_name_is_called_by_its_tool_name():
    right = run_bfcl_task(bfcl_task("multiple_2"), scripted(calls(("country_info_capital", {"country": "Brazil"})), "Brasília."))
    assert right.success, right.detail
    wrong = run_bfcl_task(bfcl_task("multiple_2"), scripted(calls(("country_info_largest_city", {"country": "Brazil"})), "."))
    assert not wrong.success and "country_info" in wrong.detail


def test_parallel_calls_must_all_be_made():
    both = calls(("calculate_em_force", {"b_field": 5, "area": 2, "d_time": 4}),
                 ("calculate_em_force", {"b_field": 5, "area": 2, "d_time": 10}))
    outcome = run_bfcl_task(bfcl_task("parallel_1"), scripted(both, "Done."))
    assert outcome.success, outcome.detail
    one = calls(("calculate_em_force", {"b_field": 5, "area": 2, "d_time": 4}))
    assert not run_bfcl_task(bfcl_task("parallel_1"), scripted(one, "Done.")).success


def test_an_extra_call_after_the_results_fails_and_the_loop_is_capped():
    call = calls(("calculate_triangle_area", {"base": 10, "height": 5}))
    again = calls(("calculate_triangle_area", {"base": 10, "height": 5}))
    outcome = run_bfcl_task(bfcl_task("simple_python_0"), scripted(call, again, "25."))
    assert not outcome.success and "wrong_count" in outcome.detail
    looping = run_bfcl_task(bfcl_task("simple_python_0"), scripted(*[calls(("calculate_triangle_area", {"base": 10}))] * 9),
                            max_model_calls=2)
    assert looping.model_calls == 2 and looping.hit_call_limit and not looping.success


def test_each_call_carries_what_steproute_put_on_its_message():
    routed = {"step": "plan", "kind": "plan", "tier": "strong", "model": "openai/x", "cost_usd": 1e-6}
    call = calls(("calculate_triangle_area", {"base": 10, "height": 5}))
    call.response_metadata = {"steproute": routed}
    outcome = run_bfcl_task(bfcl_task("simple_python_0"), scripted(call, "25."))
    assert outcome.routing == (routed, {})


def test_no_call_at_all_fails():
    outcome = run_bfcl_task(bfcl_task("simple_python_0"), scripted("The area is 25."))
    assert not outcome.success and outcome.detail == "no tool call" and outcome.model_calls == 1


# -- multi-turn in BFCL's executable environment ------------------------------------------------

RIGHT_TURNS = [
    [calls(("ls", {"a": True})), "Here are the contents."],
    [calls(("cd", {"folder": "workspace"})), calls(("mv", {"source": "log.txt", "destination": "archive"})), "Moved."],
    [calls(("cd", {"folder": "archive"}), ("grep", {"file_name": "log.txt", "pattern": "Error"})), "Found it."],
    [calls(("tail", {"file_name": "log.txt", "lines": 20})), "Those are the last lines."],
]


def test_a_multi_turn_task_done_right_grades_true_on_the_environment_s_state():
    task = bfcl_task("multi_turn_base_1")
    model = scripted(*[reply for turn in RIGHT_TURNS for reply in turn])
    outcome = run_bfcl_task(task, model)
    assert outcome.success, outcome.detail
    assert outcome.model_calls == 9
    assert outcome.turn_of_call == (0, 0, 1, 1, 1, 2, 2, 3, 3)
    assert outcome.tool_calls[5] == ("cd(folder='archive')", "grep(file_name='log.txt',pattern='Error')")
    # the environment's real outputs went back to the model, in the order the calls were made
    ls_result = model.seen[1][-1]
    assert isinstance(ls_result, ToolMessage) and str(ls_result.content) == '{"current_directory_content": ["workspace"]}'
    grep_results = [m for m in model.seen[6] if isinstance(m, ToolMessage)][-2:]
    assert "Error: Something went wrong" in str(grep_results[1].content)
    # each turn's user message was added to the conversation
    assert "Finally, show the last 20 lines" in str(model.seen[7][-1].content)
    # the run's environments are not left in bfcl-eval's globals
    assert not [k for k in bfcl().executed_instances if k.startswith("steproute_")]


def test_a_multi_turn_task_with_one_wrong_argument_grades_false():
    turns = [list(t) for t in RIGHT_TURNS]
    turns[1][1] = calls(("mv", {"source": "log.txt", "destination": "archives"}))
    outcome = run_bfcl_task(bfcl_task("multi_turn_base_1"), scripted(*[r for t in turns for r in t]))
    assert not outcome.success
    assert outcome.detail.startswith("multi_turn:instance_state_mismatch"), outcome.detail


def test_a_turn_that_never_stops_calling_fails_the_multi_turn_task():
    outcome = run_bfcl_task(bfcl_task("multi_turn_base_1"), scripted(*[calls(("ls", {"a": True}))] * 9), max_model_calls=3)
    assert not outcome.success and outcome.hit_call_limit and outcome.model_calls == 3
    assert "still calling tools" in outcome.detail


def test_the_same_task_twice_starts_from_the_same_initial_state():
    task: BfclTask = bfcl_task("multi_turn_base_1")
    first = run_bfcl_task(task, scripted(*[r for t in RIGHT_TURNS for r in t]))
    second = run_bfcl_task(task, scripted(*[r for t in RIGHT_TURNS for r in t]))
    assert first.success and second.success


class BrokenModel(ScriptedModel):
    def _generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        if self.seen:
            raise RuntimeError("the request exceeds the available context size")
        return super()._generate(messages, *args, **kwargs)


def test_a_failing_model_call_fails_the_task_and_says_why():
    model = BrokenModel(messages=iter([calls(("ls", {"a": True}))]), seen=[])
    outcome = run_bfcl_task(bfcl_task("multi_turn_base_1"), model)
    assert not outcome.success
    assert outcome.error == "RuntimeError: the request exceeds the available context size"
    assert outcome.detail == f"turn 0: the agent loop failed: {outcome.error}"
    assert outcome.model_calls == 1 and outcome.tool_calls == (("ls(a=True)",),)
    assert not [k for k in bfcl().executed_instances if k.startswith("steproute_")]


# -- the workload as the benchmark runs it: each call of the loop a step --------------------------


def test_the_bfcl_workload_routes_the_loop_s_calls_as_plan_then_synthesis_steps():
    import _agent_configs as configs
    from _agent_workloads import BFCL_STATIC_STEPS, load_workload

    from steproute import RouterConfig, StepRouter
    from steproute.completions import ToolCall
    from steproute.testing import FunctionTransport, Reply, TierCall

    def answer(call: TierCall) -> Reply | str:
        if any(m.get("role") == "tool" for m in call.messages):
            return "The area is 25."
        return Reply(tool_calls=[ToolCall("call_0", "calculate_triangle_area", '{"base": 10, "height": 5}')])

    workload = load_workload("bfcl", 1)
    assert workload.steps == ("plan", "synthesis") and workload.kinds == {"plan": "plan", "synthesis": "synthesis"}
    static = next(c for c in configs.configurations(workload.static_steps) if c.kind == "static")
    assert static.steps == BFCL_STATIC_STEPS == {"plan": "medium", "synthesis": "small"}
    urls = {t: f"http://127.0.0.1:1/{t}/v1" for t in configs.TIERS}
    transport = FunctionTransport(answer)
    router = StepRouter(RouterConfig.model_validate(configs.router_config(
        urls, default="tiny", steps={s: {"policy": "fixed", "tier": t} for s, t in static.steps.items()})), transport=transport)
    run = workload.run(bfcl_task("simple_python_0"), router)
    assert run.success, run.detail
    assert run.state["kinds"] == ["plan", "synthesis"]
    assert [(c.step, c.tier) for c in transport.calls] == [("plan", "medium"), ("synthesis", "small")]
    # the cascade's plan step accepts only a valid tool call
    cascade = configs.cascade_steps(workload.steps, workload.cascade_signals)
    assert cascade["plan"]["signals"][0] == {"signal": "tools"}
    assert cascade["synthesis"]["signals"] == [{"signal": "logprob", "threshold": 0.6}]
