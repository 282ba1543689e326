"""``steproute replay``: which steps cannot be replayed and why, re-deciding from captured
messages, quality from feedback and shadow results, the intervals, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steproute import RouterConfig
from steproute.cli import main
from steproute.config import load_config
from steproute.replay import bootstrap_mean, replay

TIERS = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "ok from fast"}]},
         "strong": {"models": [{"model": "openai/gpt-4o", "mock_response": "ok from strong"}]}}


def _entry(i: int, step: str, tier: str = "fast", **extra: object) -> dict[str, object]:
    return {"type": "decision", "id": f"d-{step}-{i}", "step": step, "kind": None, "tier": tier,
            "model": "openai/gpt-4o-mini" if tier == "fast" else "openai/gpt-4o", "policy": "fixed",
            "input_tokens": 100 + i, "output_tokens": 10, "cost_usd": 0.0001, **extra}


def _log(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return path


# -- replay: what cannot be replayed, and why ---------------------------------------------------------


def test_an_older_log_without_messages_says_which_steps_cannot_be_replayed_and_why(tmp_path):
    log = _log(tmp_path / "old.jsonl", [_entry(i, s) for i in range(4) for s in ("rewrite", "answer", "tool")])
    candidate = RouterConfig(tiers=TIERS, default="fast", steps={
        "rewrite": "strong",
        "answer": {"policy": "rules", "rules": [{"when": {"keywords": ["refund"]}, "tier": "strong"}], "fallback": "fast"},
        "tool": {"policy": "rules", "rules": [{"when": {"has_tools": True}, "tier": "strong"}], "fallback": "fast"}})
    steps = {s.step: s for s in replay(log, candidate).steps}
    assert steps["rewrite"].replayable and steps["rewrite"].changed == 1.0
    answer, tool = steps["answer"], steps["tool"]
    assert not answer.replayable and answer.changed is None and answer.candidate_cost_usd is None
    assert answer.why_not == ("4 of 4 call(s) were logged without their messages and the candidate's policy reads "
                              "the text (log them with decision_log: {messages: true})")
    assert not tool.replayable and tool.why_not is not None and "tools or a schema" in tool.why_not
    assert answer.calls == 4 and answer.cost_usd == pytest.approx(0.0004)  # what was spent is still reported


@pytest.mark.parametrize(("policy", "words"), [
    ({"policy": "llm", "router_tier": "fast", "fallback": "fast"}, "'llm' policy calls a model"),
    ({"policy": "cascade", "tiers": ["fast", "strong"]}, "'cascade' decides after the call"),
    ({"policy": "rules", "rules": [{"when": {"metadata": {"plan": "pro"}}, "tier": "strong"}], "fallback": "fast"},
     "run metadata"),
])
def test_steps_the_candidate_cannot_decide_offline_say_why(tmp_path, policy, words):
    log = _log(tmp_path / "d.jsonl", [_entry(i, "plan", messages=[{"role": "user", "content": "hi"}],
                                             has_tools=False, has_schema=False) for i in range(3)])
    [step] = replay(log, RouterConfig(tiers=TIERS, default="fast", steps={"plan": policy})).steps
    assert not step.replayable and words in (step.why_not or "") and step.candidate_cost_usd is None


def test_the_pii_guard_needs_the_text_and_a_logged_pii_finding_stands_when_the_text_was_redacted(tmp_path):
    pii = {"pii": {"tier": "strong"}}
    bare = _log(tmp_path / "bare.jsonl", [_entry(0, "plan")])
    [step] = replay(bare, RouterConfig(tiers=TIERS, default="fast", guards=pii)).steps
    assert not step.replayable and "PII guard reads the text" in (step.why_not or "")
    redacted = [{"role": "user", "content": "[redacted by the PII guard: email]"}]
    log = _log(tmp_path / "d.jsonl", [
        _entry(0, "plan", tier="strong", guard="pii:email", policy="guard", messages=redacted),
        _entry(1, "plan", messages=[{"role": "user", "content": "hello"}])])
    [step] = replay(log, RouterConfig(tiers=TIERS, default="fast", guards=pii)).steps
    assert step.replayable and step.changed == 0.0 and step.candidate_tiers == {"strong": 1, "fast": 1}


def test_rules_on_the_text_replay_from_captured_messages(tmp_path):
    ask = [{"role": "user", "content": "I want a refund now"}], [{"role": "user", "content": "hello"}]
    log = _log(tmp_path / "d.jsonl", [_entry(i, "answer", messages=ask[i % 2], has_tools=False, has_schema=False)
                                      for i in range(4)])
    candidate = RouterConfig(tiers=TIERS, default="fast", steps={"answer": {
        "policy": "rules", "rules": [{"when": {"keywords": ["refund"]}, "tier": "strong"}], "fallback": "fast"}})
    [step] = replay(log, candidate).steps
    assert step.replayable and step.changed == 0.5 and step.candidate_tiers == {"strong": 2, "fast": 2}


def test_quality_from_feedback_and_shadow_results(tmp_path):
    entries: list[dict[str, object]] = [_entry(i, "plan", messages=[], has_tools=False, has_schema=False)
                                        for i in range(4)]
    entries += [{"type": "feedback", "id": f"d-plan-{i}", "quality": q} for i, q in enumerate([1.0, 0.0, 1.0, 1.0])]
    entries += [{"type": "shadow", "id": f"d-plan-{i}", "tier": "strong", "quality": 1.0} for i in range(2)]
    log = _log(tmp_path / "d.jsonl", entries)
    [kept] = replay(log, RouterConfig(tiers=TIERS, default="fast")).steps
    assert kept.quality == 0.75 and kept.quality_n == 4 and kept.candidate_quality == 0.75
    [moved] = replay(log, RouterConfig(tiers=TIERS, default="strong")).steps
    assert moved.changed == 1.0 and moved.candidate_quality == 1.0 and moved.candidate_quality_n == 2
    assert moved.quality_ci is not None and moved.quality_ci.low <= 0.75 <= moved.quality_ci.high


# -- intervals --------------------------------------------------------------------------------------


def test_bootstrap_intervals_hold_the_point_estimate_and_are_seeded():
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    a, b = bootstrap_mean(values, seed=7), bootstrap_mean(values, seed=7)
    assert a == b and a.low <= 0.7 <= a.high and 0.0 < a.low < 0.7 < a.high <= 1.0
    spread = [0.13, 0.92, 0.41, 0.77, 0.05, 0.66, 0.38, 0.99, 0.21, 0.54]
    assert bootstrap_mean(spread, seed=8) == bootstrap_mean(spread, seed=8) != bootstrap_mean(spread, seed=9)
    skewed = [0.0] * 200 + [1000.0]
    i = bootstrap_mean(skewed, seed=1)
    assert i.low <= 1000.0 / 201 <= i.high
    assert bootstrap_mean([3.0]).low == bootstrap_mean([3.0]).high == 3.0
    total = bootstrap_mean([1.0, 2.0, 3.0], seed=0, scale=3)
    assert total.low <= 6.0 <= total.high


def test_replay_is_deterministic_for_a_seed(tmp_path):
    log = _log(tmp_path / "d.jsonl", [_entry(i, "plan", tier="strong" if i % 3 else "fast") for i in range(30)])
    candidate = RouterConfig(tiers=TIERS, default="fast")
    assert replay(log, candidate, seed=5) == replay(log, candidate, seed=5)
    [step] = replay(log, candidate, seed=5).steps
    assert step.changed_ci is not None and step.changed_ci.low <= step.changed == 20 / 30 <= step.changed_ci.high


# -- the command's bad input ---------------------------------------------------------------------------


def test_replay_command_bad_input_is_one_line_naming_the_file_and_field(tmp_path, capsys):
    good = tmp_path / "c.yaml"
    good.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]}\ndefault: fast\n")
    assert main(["replay", str(tmp_path / "missing.jsonl"), "--config", str(good)]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl: no such decision log" in err and err.count("\n") == 1
    log = _log(tmp_path / "d.jsonl", [_entry(0, "plan")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  fast: {models: [{model: openai/gpt-4o-mini, api_key: sk-SECRET-123}]}\ndefault: fast\n"
                   "decision_log: {path: d.jsonl, mesages: sk-SECRET-456}\n")
    assert main(["replay", str(log), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "decision_log.mesages" in err and "SECRET" not in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]\ndefault: fast\n")
    assert main(["replay", str(log), "--config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "line" in err


def test_replay_command_json_and_the_lines_it_could_not_use(tmp_path, capsys):
    log = tmp_path / "d.jsonl"
    log.write_text(json.dumps(_entry(0, "plan")) + "\n{not json\n", encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]}\n  strong: {models: [openai/gpt-4o]}\n"
                   "default: strong\n")
    assert main(["replay", str(log), "--config", str(cfg), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    [step] = out["steps"]
    assert {"step", "calls", "changed", "cost_usd", "candidate_cost_usd", "replayable", "why_not"} <= set(step)
    assert step["changed"] == 1.0 and step["candidate_cost_usd"] == pytest.approx(100 * 2.5e-6 + 10 * 1e-5)
    assert out["problems"] == [f"{log}:2: not JSON (Expecting property name enclosed in double quotes)"]
    assert "d.jsonl:2: not JSON" in captured.err
    assert load_config(cfg).decision_log is None
