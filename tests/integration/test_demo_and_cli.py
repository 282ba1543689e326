"""The demo, the quickstart example and the CLI, run for real (llmock on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steproute import _demo
from steproute.cli import main

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
    assert table.splitlines()[-1].startswith("TOTAL") and f"{total:.7f}" in table


def test_demo_command_says_it_runs_on_llmock():
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-m", "steproute", "demo"], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout
    assert "llmock" in out and "TOTAL" in out and "tenant plan: enterprise" in out


def test_quickstart_example_runs_against_llmock(llmock):
    env = {**os.environ, **llmock.env(), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout
    assert "answer: tier=standard model=openai/gpt-4.1-mini" in out
    assert [r.model for r in llmock.requests] == ["gpt-4o-mini", "gpt-4.1-mini"]


def test_check_command(capsys):
    assert main(["check", str(ROOT / "examples" / "steproute.yaml")]) == 0
    out = capsys.readouterr().out
    assert "tier advanced  (baseline)" in out and "openai/gpt-4o  $2.50/M in, $10.00/M out" in out


def test_check_command_reports_problems(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]}\ndefault: gold\n")
    assert main(["check", str(bad)]) == 2
    assert "default.tier: unknown tier 'gold' (known: fast)" in capsys.readouterr().err
