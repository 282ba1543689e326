"""The demo, the quickstart example and the CLI, run for real (llmock on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steproute import _demo
from steproute.cli import main
from steproute.telemetry import usd

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_demo_routes_each_step_and_bills_it():
    tracker = _demo.run(tenant_plan="free")
    free = {c.step: c for c in tracker.calls}
    assert list(free) == list(_demo.STEPS)
    assert {s: c.tier for s, c in free.items()} == {
        "rewrite": "fast", "extract": "fast", "plan": "advanced", "use_tool": "standard", "answer": "standard"}
    enterprise = {c.step: c for c in _demo.run(tenant_plan="enterprise").calls}
    assert enterprise["answer"].tier == "advanced"
    assert enterprise["answer"].reason == "rule 'enterprise' matched (tenant.plan=='enterprise')"
    total = sum(c.cost_usd for c in free.values())
    baseline = sum(c.baseline_cost_usd for c in free.values())
    assert 0 < total < baseline and total == tracker.total_cost_usd
    assert all(c.latency_s > 0 and c.input_tokens > 0 for c in free.values())
    table = tracker.table(reasons=True)
    assert table.splitlines()[-1].startswith("TOTAL") and usd(total) in table


def test_demo_command_says_it_runs_on_llmock():
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-m", "steproute", "demo"], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout
    assert "llmock" in out and "TOTAL" in out and "tenant plan: enterprise" in out


def _script_quickstart(llmock):
    llmock.reply("notebooks pens price shipping")
    llmock.call_tool("Order", {"items": [{"product": "notebook", "quantity": 3}, {"product": "pen", "quantity": 2}]})
    llmock.reply("3 notebooks at 4.50, 2 pens at 1.20, shipping 3.90.\nEXPRESSION: 3*4.50 + 2*1.20 + 3.90")
    llmock.call_tool("calculator", {"expression": "3*4.50 + 2*1.20 + 3.90"})
    llmock.reply("That comes to 19.80 EUR including shipping.")


def test_quickstart_switches_to_openai_with_native_tool_calls(llmock, tmp_path):
    _script_quickstart(llmock)
    env = {**os.environ, **llmock.env(), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = tmp_path / "decisions.jsonl"
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--provider", "openai",
                          "--log", str(log)], capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    from steproute.decision_log import read_log

    logged = read_log(log)
    assert [d["step"] for d in logged.decisions] == ["rewrite", "extract", "plan", "calculate", "answer"]
    assert logged.problems == [] and f"steproute report {log}" in out
    assert "assistant: That comes to 19.80 EUR including shipping." in out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.split()[:1] and
            line.split()[0] in ("rewrite", "extract", "plan", "calculate", "answer")}
    assert rows == {"rewrite": ["fast", "openai/gpt-4o-mini"], "extract": ["fast", "openai/gpt-4o-mini"],
                    "plan": ["strong", "openai/gpt-4o"], "calculate": ["fast", "openai/gpt-4o-mini"],
                    "answer": ["strong", "openai/gpt-4o"]}
    assert "illustrative" not in out  # real list prices from LiteLLM's map
    calls = [r for r in llmock.requests]
    assert [r.model for r in calls] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o-mini", "gpt-4o"]


def test_quickstart_graph_on_anthropic_computes_with_the_tool(llmock, monkeypatch):
    import importlib.util

    _script_quickstart(llmock)
    for name, value in llmock.env().items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("quickstart_anthropic", ROOT / "examples" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "quickstart_anthropic", quickstart)
    spec.loader.exec_module(quickstart)
    state, tracker = quickstart.run(quickstart.load_router("anthropic"), logprobs=False)
    assert state["order"] == "3 x notebook, 2 x pen"
    assert state["result"] == "19.80"  # the calculator tool ran on the native tool call's arguments
    assert [c.model for c in tracker.calls] == ["anthropic/claude-haiku-4-5"] * 2 + ["anthropic/claude-sonnet-4-5"] + [
        "anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-5"]
    assert 0 < tracker.total_cost_usd < tracker.total_baseline_cost_usd


def test_check_command(capsys, monkeypatch):
    monkeypatch.setenv("STEPROUTE_LOCAL_FAST_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("STEPROUTE_LOCAL_STRONG_URL", "http://127.0.0.1:2/v1")
    assert main(["check", str(ROOT / "examples" / "steproute.yaml")]) == 0
    out = capsys.readouterr().out
    assert "strong (baseline)  openai/qwen2.5-coder-0.5b  $2.50 in, $10.00 out" in out
    assert "plan       plan       fixed    strong" in out
    assert "extract    extract    cascade  fast, strong" in out


def test_check_command_reports_problems(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]}\ndefault: gold\n")
    assert main(["check", str(bad)]) == 2
    assert "default.tier: unknown tier 'gold' (known: fast)" in capsys.readouterr().err


def test_demo_log_feeds_report_feedback_convert_and_train(tmp_path):
    """The path a new user walks: `demo --log`, `feedback`, `report`, `convert --from log`, `train`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def steproute(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "steproute", *args], capture_output=True, text=True, env=env,
                              timeout=300, cwd=tmp_path)

    demo = steproute("demo", "--log", "decisions.jsonl")
    assert demo.returncode == 0, demo.stderr
    assert "wrote 10 decisions to decisions.jsonl" in demo.stdout
    from steproute.decision_log import read_log

    decisions = read_log(tmp_path / "decisions.jsonl").decisions
    assert [d["step"] for d in decisions] == list(_demo.STEPS) * 2 and all(d.get("messages") for d in decisions)
    for i, d in enumerate(decisions):
        rated = steproute("feedback", d["id"], "good" if i % 3 else "bad", "--log", "decisions.jsonl")
        assert rated.returncode == 0, rated.stderr
    report = steproute("report", "decisions.jsonl")
    assert "feedback: 10 of 10 decisions rated" in report.stdout, report.stdout
    converted = steproute("convert", "--from", "log", "decisions.jsonl", "--out", "rows.jsonl")
    assert converted.returncode == 0 and "wrote 10 rows" in converted.stdout, converted.stderr
    trained = steproute("train", "--data", "rows.jsonl", "--out", "demo.steproute")
    assert trained.returncode == 0, trained.stderr
    assert "cross-validation skipped" in trained.stderr and (tmp_path / "demo.steproute").exists()
