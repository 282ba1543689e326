"""The replayable decision log: the ``decision_log:`` configuration section, what each entry
captures of its call (``has_tools``/``has_schema``, the hint, messages when asked for) and the PII
guard's redaction of captured text."""

from __future__ import annotations

import json

import pytest

from steproute import Hint, RouterConfig, StepRequest, StepRouter
from steproute.decision_log import JsonlDecisionLog, read_log
from steproute.errors import ConfigError
from steproute.testing import FunctionTransport

TIERS = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "ok from fast"}]},
         "strong": {"models": [{"model": "openai/gpt-4o", "mock_response": "ok from strong"}]}}
EMAIL, CARD = "ann.lee@example.org", "4111 1111 1111 1111"


# -- the configuration section and the captured entries ---------------------------------------------


def test_decision_log_section_validated_unknown_key_named_by_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        RouterConfig(tiers=TIERS, default="fast", decision_log={"path": "d.jsonl", "mesages": True})
    assert any(p.path == "decision_log.mesages" for p in err.value.problems)
    assert "messages" in str(err.value)  # did you mean
    with pytest.raises(ConfigError) as err:
        RouterConfig(tiers=TIERS, default="fast", decision_log={"messages": True})
    assert any(p.path == "decision_log.path" for p in err.value.problems)
    cfg = RouterConfig(tiers=TIERS, default="fast", decision_log="d.jsonl")
    assert cfg.decision_log is not None and cfg.decision_log.path == "d.jsonl" and cfg.decision_log.messages is False


def test_a_router_opens_the_configured_log_relative_to_the_config_and_keeps_messages_off_by_default(tmp_path):
    (tmp_path / "steproute.yaml").write_text(
        "tiers:\n  fast: {models: [{model: openai/gpt-4o-mini, mock_response: ok}]}\ndefault: fast\n"
        "decision_log: {path: logs/d.jsonl}\n")
    router = StepRouter.from_file(tmp_path / "steproute.yaml")
    router.complete(StepRequest("plan", [{"role": "user", "content": "hi"}]))
    router.decision_log.close()
    [entry] = read_log(tmp_path / "logs" / "d.jsonl").decisions
    assert "messages" not in entry and "response" not in entry
    assert entry["has_tools"] is False and entry["has_schema"] is False and entry["input_tokens"] > 0


def test_the_decision_log_argument_wins_and_keeps_include_prompts(tmp_path, caplog):
    given = JsonlDecisionLog(tmp_path / "mine.jsonl", include_prompts=True)
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", decision_log={"path": str(tmp_path / "cfg.jsonl")}),
                        decision_log=given)
    assert router.decision_log is given
    assert [r.getMessage() for r in caplog.records if r.name == "steproute"] == [
        "steproute: the decision log given to StepRouter(decision_log=...) is used, not the configuration's "
        "decision_log.path; its messages setting (True) wins over decision_log.messages"]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    router.complete(StepRequest("plan", [{"role": "user", "content": "hi"}], hint=Hint(tier="strong"), tools=tools))
    given.close()
    [entry] = read_log(tmp_path / "mine.jsonl").decisions
    assert entry["messages"] == [{"role": "user", "content": "hi"}] and entry["response"] == "ok from strong"
    assert entry["hint"] == {"tier": "strong"} and entry["has_tools"] is True
    assert not (tmp_path / "cfg.jsonl").exists()


@pytest.mark.parametrize("how", ["config", "argument"])
def test_captured_messages_are_redacted_by_the_pii_guard(tmp_path, how):
    log = tmp_path / "d.jsonl"
    config = RouterConfig(tiers=TIERS, default="fast", guards={"pii": {"tier": "strong"}},
                          decision_log={"path": str(log), "messages": True} if how == "config" else None)
    router = StepRouter(config, decision_log=JsonlDecisionLog(log, include_prompts=True) if how == "argument" else None,
                        transport=FunctionTransport(lambda call: f"sent to {EMAIL}"))
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": f"Charge {CARD} and mail {EMAIL}"}]},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "mail", "arguments": json.dumps({"to": EMAIL})}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "done"}]
    router.complete(StepRequest("answer", messages))
    router.decision_log.close()
    text = log.read_text(encoding="utf-8")
    assert EMAIL not in text and "4111" not in text
    [entry] = read_log(log).decisions
    assert entry["guard"] == "pii:email,card" and entry["tier"] == "strong"
    assert entry["messages"][0] == {"role": "system", "content": "Be brief."}  # clean text kept
    assert entry["messages"][1]["content"] == [{"type": "text", "text": "[redacted by the PII guard: email, card]"}]
    assert entry["messages"][2]["tool_calls"][0]["function"]["arguments"] == "[redacted by the PII guard: email]"
    assert entry["messages"][3]["content"] == "done" and entry["response"] == "[redacted by the PII guard: email]"


def test_without_a_pii_guard_captured_messages_are_kept_as_sent(tmp_path):
    log = tmp_path / "d.jsonl"
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", decision_log={"path": str(log), "messages": True}))
    router.complete(StepRequest("answer", [{"role": "user", "content": f"mail {EMAIL}"}]))
    router.decision_log.close()
    assert read_log(log).decisions[0]["messages"] == [{"role": "user", "content": f"mail {EMAIL}"}]
