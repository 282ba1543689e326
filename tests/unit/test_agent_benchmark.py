"""benchmarks/agent.py's pure parts: the configurations, the cache key and the caching proxy, the
Wilson interval, the JSON shape, the per-step data rows, the GSM8K pipeline's checks, and the
workload interface (bfcl plugs in through _agent_bfcl; a missing module is a clear error)."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _agent_configs as configs  # noqa: E402
import _agent_gsm8k as gsm8k  # noqa: E402
import _agent_workloads as workloads  # noqa: E402
from _agent_cache import CachingProxy, CallEvent, cache_key  # noqa: E402
from _agent_docs import step_table, table  # noqa: E402
from _agent_learned import call_rows, fold_of, request_rows, step_row, step_tiers  # noqa: E402
from _agent_results import ConfigResult, StepCall, TaskRun, summary_json, wilson  # noqa: E402
from _agent_run import attribute  # noqa: E402

from steproute.evaluation import EvalRow, Outcome, read_rows, write_rows  # noqa: E402


def test_every_configuration_the_issue_names_is_measured_and_the_fixed_tiers_run_first():
    names = [c.name for c in configs.configurations(workloads.GSM8K_STATIC_STEPS)]
    assert names[:3] == ["always-tiny", "always-small", "always-medium"]
    assert set(names[3:]) == {"per-request-classifier", "per-request-litellm-complexity", "per-step-static",
                              "per-step-measured", "per-step-learned", "per-step-cascade"}
    families = {c.name: c.family for c in configs.configurations(workloads.GSM8K_STATIC_STEPS)}
    assert families["per-step-cascade"] == "per-step" and families["per-request-classifier"] == "per-request"
    # without LiteLLM's complexity router it is left out, not faked; with no named steps, no static per-step tiers
    without = configs.configurations(workloads.GSM8K_STATIC_STEPS, complexity=False)
    assert "per-request-litellm-complexity" not in [c.name for c in without]
    assert "per-step-static" not in [c.name for c in configs.configurations(None)]
    static = next(c for c in configs.configurations(workloads.GSM8K_STATIC_STEPS) if c.kind == "static")
    assert set(static.steps) == set(gsm8k.STEPS) and set(static.steps.values()) <= set(configs.TIERS)


def test_prices_are_proportional_to_parameter_count_and_the_router_config_loads():
    from steproute import RouterConfig, StepRouter

    p = configs.PRICE_PER_TOKEN
    assert p["small"] / p["tiny"] == pytest.approx(0.5 / 0.135) and p["medium"] / p["small"] == pytest.approx(3.0)
    urls = {t: f"http://127.0.0.1:1/{t}/v1" for t in configs.TIERS}
    steps = configs.cascade_steps(gsm8k.STEPS, workloads.GSM8K_CASCADE_SIGNALS)
    cascade = configs.router_config(urls, default="tiny", steps=steps)
    router = StepRouter(RouterConfig.model_validate(cascade))
    assert router.tiers == configs.TIERS
    assert router.policy_of("plan").name == "cascade"
    assert configs.litellm_complexity_available()  # the pinned litellm has it
    tier, label = configs.tier_of_complexity("What is 2 + 2?")
    assert tier in configs.TIERS and label.split()[0] in {"SIMPLE", "MEDIUM", "COMPLEX", "REASONING"}


def test_the_cache_key_is_tier_and_request_and_ignores_what_does_not_change_the_answer():
    body = {"model": "m", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0, "max_tokens": 5}
    assert cache_key("small", body) == cache_key("small", {**body, "stream": True, "logprobs": True, "model": "other"})
    assert cache_key("small", body) != cache_key("tiny", body)
    assert cache_key("small", body) != cache_key("small", {**body, "max_tokens": 6})
    assert cache_key("small", body) != cache_key("small", {**body, "messages": [{"role": "user", "content": "2+3?"}]})


class _Upstream(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Upstream.calls.append(body)
        data = json.dumps({"choices": [{"message": {"content": f"answer {len(_Upstream.calls)}"}}],
                           "usage": {"prompt_tokens": 7, "completion_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_the_proxy_answers_an_identical_call_from_the_cache_with_the_first_latency():
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    _Upstream.calls = []
    try:
        with CachingProxy({"tiny": f"http://127.0.0.1:{upstream.server_address[1]}/v1"}) as proxy:
            def post(content: str) -> dict:
                req = urllib.request.Request(proxy.base_url("tiny") + "/chat/completions", method="POST",
                                             data=json.dumps({"messages": [{"role": "user", "content": content}]}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    return json.loads(r.read())

            first, again, other = post("a"), post("a"), post("b")
        assert first == again and other["choices"][0]["message"]["content"] == "answer 2"
        assert len(_Upstream.calls) == 2 and all(c["logprobs"] is True for c in _Upstream.calls)
        e = proxy.events
        assert [x.cached for x in e] == [False, True, False] and e[1].latency_s == e[0].latency_s > 0
        assert (e[0].prompt_tokens, e[0].completion_tokens) == (7, 2) and proxy.hits == 1
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_a_stored_cache_serves_the_next_run_and_only_within_its_namespace(tmp_path: Path):
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    _Upstream.calls = []
    store = tmp_path / "cache" / "answers.jsonl"
    url = {"tiny": f"http://127.0.0.1:{upstream.server_address[1]}/v1"}

    def post(proxy: CachingProxy, content: str) -> str:
        req = urllib.request.Request(proxy.base_url("tiny") + "/chat/completions", method="POST",
                                     data=json.dumps({"messages": [{"role": "user", "content": content}]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["choices"][0]["message"]["content"]

    try:
        with CachingProxy(url, store=store, namespace="models v1") as first:
            assert (post(first, "a"), post(first, "b")) == ("answer 1", "answer 2")
        assert first.loaded == 0 and len(store.read_text().splitlines()) == 2
        with store.open("a") as f:
            f.write('{"key": "cut off mid-wri')  # a run killed while writing
        with CachingProxy(url, store=store, namespace="models v1") as again:
            assert (post(again, "a"), post(again, "c")) == ("answer 1", "answer 3")  # a: from the file
        assert (again.loaded, again.unreadable) == (2, 1) and [e.cached for e in again.events] == [True, False]
        assert again.from_earlier_runs == 1 and first.from_earlier_runs == 0
        assert again.events[0].latency_s == first.events[0].latency_s
        with CachingProxy(url, store=store, namespace="models v1") as third:  # c was written on a line of its own
            assert post(third, "c") == "answer 3" and (third.loaded, third.unreadable) == (3, 1)
        with CachingProxy(url, store=store, namespace="models v2") as other:
            assert post(other, "a") == "answer 4"  # other models: never served another namespace's answer
        assert len(_Upstream.calls) == 4
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_measured_tiers_take_the_cheapest_tier_within_95_percent_of_the_best_per_step():
    def row(i: int, step: str, **quality: float) -> EvalRow:
        return EvalRow(f"{step}{i}", (), {t: Outcome(q, 1.0) for t, q in quality.items()}, step=step)

    rows = [row(0, "rewrite", tiny=0, small=1, medium=1), row(1, "rewrite", tiny=1, small=1, medium=0),
            row(0, "plan", tiny=0, small=0, medium=1), row(1, "plan", tiny=0, small=1, medium=1),
            row(0, "answer", tiny=1), row(1, "answer", medium=1), row(2, "answer", medium=1)]  # call rows: one tier each
    assert configs.TIERS == ("tiny", "small", "medium")
    assert step_tiers(rows, configs.TIERS) == {"rewrite": "small", "plan": "medium", "answer": "tiny"}
    assert step_tiers(rows, configs.TIERS, ratio=0.5)["plan"] == "small"
    assert step_tiers([row(0, "x", small=0, medium=0)], configs.TIERS) == {"x": "small"}  # all fail: the cheapest


def test_wilson_interval():
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 10)[0] == 0.0


def test_calls_line_up_with_decisions_and_a_mismatch_is_said():
    entries = [{"step": "plan", "tier": "small", "cost_usd": 0.01, "cascade": [{"tier": "tiny"}, {"tier": "small"}]}]
    events = [CallEvent("tiny", 1.0, True, 1, 1), CallEvent("small", 2.0, True, 1, 1)]
    calls, note = attribute(entries, events)
    assert calls == [StepCall("plan", "small", ("tiny", "small"), 0.01, 3.0, True)] and note == ""
    _, note = attribute(entries, [*events, CallEvent("small", 1.0, False, 1, 1)])
    assert "approximate" in note


def test_the_json_object_has_configs_with_success_interval_cost_latency_and_steps():
    def run(tid: str, ok: bool, tier: str, cost: float) -> TaskRun:
        return TaskRun(tid, ok, "d", (StepCall("plan", tier, (tier,), cost, 2.0, False),
                                      StepCall("answer", "tiny", ("tiny",), cost / 10, 0.5, True)))

    strong = ConfigResult("always-medium", "m", "always", [run("a", True, "medium", 0.01), run("b", True, "medium", 0.01)])
    mixed = ConfigResult("per-step-static", "s", "per-step", [run("a", True, "small", 0.002), run("b", False, "small", 0.002)])
    summary = summary_json("gsm8k", [strong, mixed], "always-medium", tasks=2)
    assert json.loads(json.dumps(summary)) == summary
    c = summary["configs"][1]
    assert {"name", "success", "cost_usd", "latency_s", "success_ci95", "steps"} <= set(c)
    assert c["success"] == 0.5 and c["success_ci95"] == [round(x, 4) for x in wilson(1, 2)]
    assert c["cost_usd"] == pytest.approx(0.0044) and c["latency_s"] == 2.5
    assert c["success_vs_strongest"] == 0.5 and c["cost_vs_strongest"] == pytest.approx(0.2)
    assert c["steps"]["plan"]["tiers"] == {"small": 2} and c["cached_calls"] == 2
    assert c["steps"]["plan"]["cost_share"] == pytest.approx(0.004 / 0.0044, abs=1e-3)
    assert "| per-step-static | per-step | 50% (" in table(summary)
    assert "small 2" in step_table(summary)


def test_write_docs_replaces_only_its_workload_s_block_and_readme_line(tmp_path: Path):
    from _agent_docs import write_docs

    def run(tid: str, ok: bool, tier: str, cost: float) -> TaskRun:
        return TaskRun(tid, ok, "d", (StepCall("plan", tier, (tier,), cost, 2.0, False),))

    results = [ConfigResult("always-medium", "m", "always", [run("a", True, "medium", 0.01), run("b", True, "medium", 0.01)]),
               ConfigResult("per-request-classifier", "r", "per-request", [run("a", True, "medium", 0.01),
                                                                            run("b", False, "tiny", 0.001)]),
               ConfigResult("per-step-static", "s", "per-step", [run("a", True, "small", 0.002),
                                                                  run("b", False, "small", 0.002)]),
               ConfigResult("per-step-learned", "l", "per-step", [run("a", True, "small", 0.003),
                                                                   run("b", False, "tiny", 0.003)])]
    summary = summary_json("gsm8k", results, "always-medium", tasks=2, seed=0, threads=2, models=configs.MODELS,
                           price_per_million_tokens={"tiny": 0.135}, seconds=12.0, model_calls=8, cache_hits=3,
                           folds=2, litellm_complexity_router="available", answers_from_earlier_runs=2)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "agent-benchmark.md").write_text(
        "intro\n<!-- agent-gsm8k:start -->\nstale figures\n<!-- agent-gsm8k:end -->\n"
        "<!-- agent-bfcl:start -->\nbfcl figures\n<!-- agent-bfcl:end -->\n")
    (tmp_path / "README.md").write_text("# x\n<!-- agent-headline-gsm8k -->\n- old headline\n<!-- agent-headline-bfcl -->\n- b\n")
    write_docs(summary, [], tmp_path)
    page = (tmp_path / "docs" / "agent-benchmark.md").read_text()
    assert "stale figures" not in page and "bfcl figures" in page and page.startswith("intro\n")
    assert "2 tasks: a success rate's 95% interval spans up to ±" in page and "2 of them kept from earlier runs" in page
    assert (tmp_path / "docs" / "images" / "agent-gsm8k.png").stat().st_size > 0
    readme = (tmp_path / "README.md").read_text().splitlines()
    assert readme[2] == ("- **GSM8K word problems (a five-step LangGraph pipeline), 2 tasks**: the strongest tier alone solves "
                         "100%; the best per-step routing `per-step-static` 50% at 20% of its cost; the best per-request "
                         "routing `per-request-classifier` 50% at 55% of its cost.")
    assert readme[4] == "- b"


def test_per_step_rows_are_evaluation_rows_with_step_and_kind(tmp_path: Path):
    row = step_row("gsm8k", "gsm8k-7", "plan", "plan", [{"role": "user", "content": "Problem: 2 apples"}],
                   {t: Outcome(float(t != "tiny"), 0.001) for t in configs.TIERS}, {"check": "x"})
    logged = call_rows("bfcl", "t1", "small", [{"step": "model", "kind": None, "cost_usd": 0.1,
                                                "messages": [{"role": "user", "content": "hi"}]}, {"step": "x"}], True)
    requests = request_rows("gsm8k", {"t1": "q"}, {"tiny": {"t1": (False, 0.1)}, "medium": {"t1": (True, 1.0)}})
    path = tmp_path / "rows.jsonl"
    write_rows([row, *logged, *requests], path)
    back, problems = read_rows(path)
    assert not problems and [r.step for r in back] == ["plan", "model", "request"]
    assert back[0].kind == "plan" and back[0].meta["task"] == "gsm8k-7" and set(back[0].outcomes) == set(configs.TIERS)
    assert back[1].outcomes["small"].quality == 1.0 and len(logged) == 1  # a call with no messages is no row
    assert back[2].outcomes["tiny"].quality == 0.0 and back[2].meta["task"] == "t1"  # cross-fitting finds its fold
    assert fold_of(["a", "b", "c"], 5) == {"a": 0, "b": 1, "c": 2}


def test_gsm8k_tasks_have_the_gold_of_a_correct_answer_and_the_steps_are_checkable():
    tasks = gsm8k.load_tasks(5, seed=0)
    assert len(tasks) == 5 and len({t.task_id for t in tasks}) == 5
    assert tasks == gsm8k.load_tasks(5, seed=0) and tasks != gsm8k.load_tasks(5, seed=1)
    task = gsm8k.Task("t", "Janet has 16 eggs, eats 3 and bakes with 4; sells the rest at $2.", 18.0)
    assert gsm8k.grade_step("rewrite", "16 eggs. Eats 3. Bakes 4. $2 each.", task) == 1.0
    assert gsm8k.grade_step("extract", "eggs: 16\neaten: 3", task) == 0.0
    assert gsm8k.grade_step("plan", "1. 16-3-4\nExpression: (16 - 3 - 4) * 2", task) == 1.0
    assert gsm8k.grade_step("calculate", "", task, expression="(16-3-4)*2") == 1.0
    assert gsm8k.grade_step("answer", "$18", task) == 1.0 and gsm8k.grade_step("answer", "19", task) == 0.0
    assert gsm8k.run_tool("__import__('os')").startswith("error") and gsm8k.run_tool("2**100").startswith("error")
    assert gsm8k.run_tool("1250 * 1000") == "1250000" and gsm8k.run_tool("10 / 4") == "2.5"
    assert gsm8k.calculate("$1,200 / 3 = 400") == 400.0
    assert set(gsm8k.CHECKS) == set(gsm8k.STEPS) == set(gsm8k.KINDS)


def test_the_gsm8k_graph_routes_each_named_step_once_in_order():
    seen = []

    class Reply:
        def __init__(self, content: str, tool_calls=()) -> None:
            self.content, self.tool_calls = content, tool_calls

    class Call:
        name, arguments = "calculator", json.dumps({"expression": "(16 - 3 - 4) * 2"})

    def call(step, messages, params):
        seen.append((step, params["temperature"], "tools" in params))
        return Reply("", (Call(),)) if step == "calculate" else Reply("18" if step == "answer" else f"{step} text")

    state = gsm8k.build_graph(call).invoke({"question": "16 eggs, 3 eaten, 4 baked, $2 each?"})
    assert [s for s, _, _ in seen] == list(gsm8k.STEPS) and all(t == 0 for _, t, _ in seen)
    assert [s for s, _, tools in seen if tools] == ["calculate"]
    assert state["result"] == "18" and gsm8k.outcome_of(gsm8k.Task("t", "q", 18.0), state)[0]
    assert gsm8k.step_inputs(state)["answer"][0]["content"].startswith("Problem: 16 eggs")


def test_bfcl_plugs_in_through_its_module_and_is_a_clear_error_without_it(monkeypatch: pytest.MonkeyPatch):
    # the workload itself: tests/unit/test_agent_bfcl.py
    monkeypatch.setitem(sys.modules, "_agent_bfcl", None)  # import fails as for a missing module
    with pytest.raises(workloads.WorkloadError, match="bfcl"):
        workloads.load_workload("bfcl", 2)
    with pytest.raises(workloads.WorkloadError, match="unknown workload"):
        workloads.load_workload("nope", 2)


def test_a_fold_with_too_few_rows_gets_no_router_and_says_so(tmp_path: Path):
    from _agent_learned import train_fold_artefacts

    rows = request_rows("gsm8k", {"a": "q1", "b": "q2"}, {t: {"a": (True, 1.0), "b": (False, 1.0)} for t in configs.TIERS})
    said: list[str] = []
    out = train_fold_artefacts(rows, fold_of(["a", "b"], 2), configs.TIERS, tmp_path, "request", 0.05, said.append)
    assert out == {0: (None, 0.05), 1: (None, 0.05)} and all("strongest tier" in s for s in said) and len(said) == 2


@pytest.mark.parametrize("module", sorted(p.stem for p in (ROOT / "benchmarks").glob("_agent_*.py")))
def test_the_agent_benchmark_modules_examples_hold(module: str):
    # benchmarks/ is not a pytest test path (its modules import each other from their directory)
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{module}: {result.failed} of {result.attempted} examples failed"
