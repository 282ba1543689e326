"""Replay over the real path: a LangGraph graph routed over HTTP to llmock by a router built from
a configuration file that opens its own decision log with messages, then ``steproute replay``
(in-process and as a subprocess) under a candidate that moves one step to another tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from steproute import StepRouter
from steproute._demo import STEPS, build_graph
from steproute.cli import main
from steproute.config import DeploymentConfig
from steproute.decision_log import read_log
from steproute.pricing import call_cost, price_of
from steproute.types import Usage

pytestmark = pytest.mark.integration
MODELS = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini", "advanced": "openai/gpt-4o"}
LIVE_STEPS = {"rewrite": "fast", "extract": "fast", "plan": "advanced", "use_tool": "standard", "answer": "standard"}


def _config(llmock, steps, log=None):
    lines = ["tiers:"]
    for tier, model in MODELS.items():
        lines.append(f"  {tier}: {{models: [{{model: {model}, api_base: '{llmock.base_url()}', api_key: k}}]}}")
    lines += ["default: fast", "baseline: advanced", "steps:"]
    lines += [f"  {s}: {t}" for s, t in steps.items()]
    if log:
        lines.append(f"decision_log: {{path: {log}, messages: true}}")
    return "\n".join(lines) + "\n"


def _record(llmock, tmp_path, runs=3):
    live = tmp_path / "live.yaml"
    live.write_text(_config(llmock, LIVE_STEPS, log="logs/decisions.jsonl"))
    router = StepRouter.from_file(live)
    graph = build_graph(router)
    for i in range(runs):
        graph.invoke({"question": f"Umbrella in Paris on day {i}?"}, {"configurable": {"thread_id": f"t{i}"}})
    router.decision_log.close()
    return tmp_path / "logs" / "decisions.jsonl"  # relative to the configuration file's folder


def test_a_config_file_opens_its_decision_log_with_messages_and_the_request_shape(llmock, tmp_path):
    log = _record(llmock, tmp_path, runs=1)
    decisions = read_log(log).decisions
    assert [d["step"] for d in decisions] == list(STEPS)
    for d in decisions:
        assert d["messages"] and d["messages"][-1]["role"] == "user"
        assert d["has_tools"] is (d["step"] == "use_tool") and d["has_schema"] is False
        assert d["input_tokens"] > 0 and d["output_tokens"] > 0 and d["cost_usd"] > 0
        assert d["tier"] == LIVE_STEPS[d["step"]] and d["model"] == MODELS[d["tier"]]


def test_replay_of_a_candidate_moving_one_step_changes_that_step_only(llmock, tmp_path, capsys):
    log = _record(llmock, tmp_path)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(_config(llmock, {**LIVE_STEPS, "extract": "advanced"}, log="replayed.jsonl"))
    served = len(llmock.requests)
    writers = {t for t in threading.enumerate() if t.name == "steproute-decision-log"}
    assert main(["replay", str(log), "--config", str(candidate), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(llmock.requests) == served  # no model was called
    # nor the candidate's decision log opened: no file, and no log writer started for it
    assert not (tmp_path / "replayed.jsonl").exists()
    assert {t for t in threading.enumerate() if t.name == "steproute-decision-log"} <= writers
    steps = {s["step"]: s for s in out["steps"]}
    assert list(steps) == list(STEPS) and out["calls"] == 15
    decisions = read_log(log).decisions
    for name, s in steps.items():
        assert s["calls"] == 3 and s["replayable"] is True and s["why_not"] is None
        assert s["changed"] == (1.0 if name == "extract" else 0.0)
        mine = [d for d in decisions if d["step"] == name]
        tier = "advanced" if name == "extract" else LIVE_STEPS[name]
        price = price_of(DeploymentConfig(model=MODELS[tier]))
        expected = sum(call_cost(price, Usage(d["input_tokens"], d["output_tokens"])) for d in mine)
        assert s["candidate_cost_usd"] == pytest.approx(expected, rel=1e-9)
        assert s["cost_usd"] == pytest.approx(sum(d["cost_usd"] for d in mine), rel=1e-9)
        low, high = s["candidate_cost_ci"]
        assert low <= s["candidate_cost_usd"] <= high
        assert s["candidate_tiers"] == {tier: 3}
    assert steps["extract"]["candidate_cost_usd"] > steps["extract"]["cost_usd"]  # gpt-4o costs more than 4o-mini
    assert steps["extract"]["changed_ci"] == [1.0, 1.0]


def test_replay_command_prints_a_table_and_writes_a_page(llmock, tmp_path):
    log = _record(llmock, tmp_path, runs=2)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(_config(llmock, {**LIVE_STEPS, "extract": "advanced"}))
    page = tmp_path / "replay.html"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "steproute", "replay", str(log), "--config", str(candidate), "--html",
                           str(page)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["step", "calls", "changed", "95%"]
    rows = {line.split()[0]: line.split() for line in lines[2:2 + len(STEPS)]}
    assert rows["extract"][2] == "100%" and all(rows[s][2] == "0%" for s in STEPS if s != "extract")
    assert "10 calls in 5 step(s); 5 replayed: 20% of their decisions change" in done.stdout
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "<script" not in text and "http" not in text.split("<main>")[1]
    assert "<td>extract</td><td>2</td><td>100%</td>" in text
