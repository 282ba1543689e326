"""The BFCL workload (benchmarks/_agent_bfcl.py) on real local models: a BFCL task from the
bfcl-eval package, LangChain's ``create_agent`` loop, a steproute-routed model on llama.cpp, and
bfcl-eval's AST checker grading what the agent called. ``StepRouterMiddleware`` names each call of
the loop by its step kind (``plan``: the call that picks the tool; ``synthesis``: the answer after
the tool's result), both on Qwen2.5-Coder-0.5B here. (SmolLM2-135M as the synthesis tier calls the
tool again instead of answering, up to the call cap, and the task fails: BFCL counts every call.)"""

from __future__ import annotations

import sys
from pathlib import Path

from steproute import RouterConfig, StepRouter, StepRouterMiddleware

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _agent_bfcl import MAX_MODEL_CALLS, bfcl_task, run_bfcl_task


def test_a_bfcl_task_runs_in_create_agent_on_routed_local_models_and_bfcl_grades_it(local_servers):
    router = StepRouter(RouterConfig(tiers=local_servers.tiers_config(), default="strong",
                                     steps={"plan": "strong", "synthesis": "strong"}))
    task = bfcl_task("simple_python_0")  # the area of a triangle with base 10 and height 5
    outcome = run_bfcl_task(task, router.chat_model(temperature=0), middleware=[StepRouterMiddleware(router)])

    assert outcome.error is None
    first = outcome.tool_calls[0]
    assert len(first) == 1 and first[0].startswith("calculate_triangle_area(base=10,height=5"), first
    # the first call is the plan step (it picks the tool); every later one comes after a tool
    # result and is routed as synthesis, all on the configured tier
    assert [r["kind"] for r in outcome.routing] == ["plan"] + ["synthesis"] * (outcome.model_calls - 1)
    assert {(r["tier"], r["model"]) for r in outcome.routing} == {("strong", "openai/qwen2.5-coder-0.5b")}
    # bfcl-eval grades every call the agent made: the task passes exactly when the answer after
    # the tool's result calls no tool again (the 0.5B model at temperature 0 does on one CPU and
    # calls the tool again to the cap on another: floating-point sums differ by vector width)
    again = [c for c in outcome.tool_calls[1:] if c]
    if again:
        assert not outcome.success and outcome.detail.startswith("simple_function_checker:wrong_count"), outcome.detail
        assert outcome.hit_call_limit == (outcome.model_calls == MAX_MODEL_CALLS["single_turn"])
    else:
        assert outcome.success and outcome.detail == "AST match", outcome.detail
        assert outcome.model_calls == 2 and outcome.turn_of_call == (0, 0)
