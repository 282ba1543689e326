"""`steproute report LOG --config FILE`: configured steps the log never called, and logged steps
no `steps:` entry governs (routed by `default`), in the table output and on the HTML page."""

from __future__ import annotations

import json

import pytest

from steproute.cli import main

CONFIG = """\
tiers:
  fast: {models: [openai/gpt-4o-mini]}
  strong: {models: [openai/gpt-4o]}
default: fast
steps:
  plan: strong
  extract: fast
  tool_use: strong
  summarise: strong
"""


@pytest.fixture
def files(tmp_path):
    config = tmp_path / "steproute.yaml"
    config.write_text(CONFIG)
    log = tmp_path / "d.jsonl"
    decisions = [  # plan by name; lookup by its kind (tool_use); chit_chat and rewrite by no entry
        {"step": "plan", "kind": "plan", "tier": "strong"},
        {"step": "lookup", "kind": "tool_use", "tier": "strong"},
        {"step": "chit_chat", "kind": None, "tier": "fast"},
        {"step": "rewrite", "kind": "rewrite", "tier": "fast"},
        {"step": "chit_chat", "kind": None, "tier": "fast", "error": "DispatchError"},
    ]
    log.write_text("".join(json.dumps({"type": "decision", "id": str(i), "cost_usd": 0.001, "baseline_cost_usd": 0.002,
                                       **d}) + "\n" for i, d in enumerate(decisions)))
    return config, log


def test_report_lists_configured_steps_without_calls_and_calls_without_configuration(files, tmp_path, capsys):
    config, log = files
    assert main(["report", str(log), "--config", str(config), "--html", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "configured steps with no calls in the log: extract, summarise" in out
    assert "steps in the log with no configuration (routed by `default`): chit_chat, rewrite" in out
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Configuration and log</h2>" in page
    assert "<li>configured steps with no calls in the log: extract, summarise</li>" in page
    assert "<li>steps in the log with no configuration (routed by `default`): chit_chat, rewrite</li>" in page


def test_report_says_when_configuration_and_log_agree(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]}\ndefault: fast\nsteps:\n  plan: fast\n")
    log = tmp_path / "d.jsonl"
    log.write_text(json.dumps({"type": "decision", "id": "1", "step": "plan", "tier": "fast"}) + "\n")
    assert main(["report", str(log), "--config", str(config)]) == 0
    assert "configuration and log agree" in capsys.readouterr().out


def test_without_config_the_report_is_unchanged(files, tmp_path, capsys):
    _, log = files
    assert main(["report", str(log), "--html", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "configured steps" not in out and "no configuration" not in out
    assert "Configuration and log" not in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("text", [
    "tiers:\n  fast: {models: [openai/gpt-4o-mini]}\ndefault: gold\nsteps:\n  plan: silver\n",  # two problems
    "tiers: [unclosed\n",                                                                      # not YAML
])
def test_a_config_with_problems_is_a_one_line_error(files, tmp_path, capsys, text):
    _, log = files
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["report", str(log), "--config", str(config)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"steproute report: --config {config}: invalid steproute configuration")
    assert captured.out == ""


def test_a_missing_config_file_is_a_one_line_error(files, tmp_path, capsys):
    _, log = files
    assert main(["report", str(log), "--config", str(tmp_path / "nope.yaml")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "cannot read file" in line
