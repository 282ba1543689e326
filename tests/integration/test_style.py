"""Per-tier and per-step style: the system-prompt addition and output settings on the wire."""

from __future__ import annotations

import pytest

from steproute import ConfigError, RouterConfig, StepRequest, StepRouter

pytestmark = pytest.mark.integration


def router_for(llmock):
    return StepRouter(RouterConfig(
        tiers={
            "fast": {"models": [{"model": "openai/gpt-4o-mini", "api_base": llmock.base_url(), "api_key": "k"}],
                     "style": {"system_prompt": "Answer in plain sentences.", "max_tokens": 120, "temperature": 0.2}},
            "strong": {"models": [{"model": "openai/gpt-4o", "api_base": llmock.base_url(), "api_key": "k"}],
                       "style": {"system_prompt": "Answer in plain sentences. Never use markdown.", "max_tokens": 120}},
        },
        default="fast",
        steps={"answer": {"policy": "fixed", "tier": "strong",
                          "style": {"system_prompt": "At most two sentences.", "max_tokens": 60}}},
    ))


def test_the_tier_and_step_style_reach_the_model(llmock):
    router = router_for(llmock)
    router.complete(StepRequest("answer", [{"role": "system", "content": "You are a shop assistant."},
                                           {"role": "user", "content": "hi"}]))
    body = llmock.last_request.body
    assert body["messages"][0] == {"role": "system", "content": (
        "You are a shop assistant.\n\nAnswer in plain sentences. Never use markdown.\n\nAt most two sentences.")}
    assert body["max_tokens"] == 60  # the step's wins over the tier's
    router.complete(StepRequest("rewrite", [{"role": "user", "content": "hi"}]), max_tokens=5)
    body = llmock.last_request.body
    assert body["messages"][0] == {"role": "system", "content": "Answer in plain sentences."}  # added: there was none
    assert body["max_tokens"] == 5 and body["temperature"] == 0.2  # the call's own setting wins


def test_streams_are_styled_too(llmock):
    list(router_for(llmock).stream(StepRequest("answer", [{"role": "user", "content": "hi"}])))
    assert llmock.last_request.body["messages"][0]["content"].endswith("At most two sentences.")


def test_style_is_validated():
    with pytest.raises(ConfigError, match=r"tiers\.fast\.style\.max_tokens"):
        RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"], "style": {"max_tokens": 0}}}, default="fast")
