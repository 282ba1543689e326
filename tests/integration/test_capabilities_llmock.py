"""The capability filter over real HTTP (LiteLLM → llmock on 127.0.0.1): a call goes only to a
tier that can serve it, and none reaches the wire when no tier can. Requests are counted on
the wire, per model, in llmock's journal."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from steproute import CapabilityError, ConfigError, RouterConfig, StepRequest, StepRouter, step

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KEY = "sk-llmock-capabilities-key"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf"}}


def deployment(llmock, model: str, **params: Any) -> dict[str, Any]:
    return {"model": model, "api_base": llmock.base_url(), "api_key": KEY, **params}


def on_the_wire(llmock) -> Counter[str]:
    return Counter(r.model for r in llmock.requests)


def test_an_image_goes_past_a_fast_tier_that_cannot_see_to_a_vision_tier(llmock):
    router = StepRouter(RouterConfig(tiers={
        "fast": {"models": [deployment(llmock, "openai/gpt-3.5-turbo")]},
        "vision": {"models": [deployment(llmock, "openai/gpt-4o")]},
    }, default="fast"))
    message = router.chat_model().invoke(
        [HumanMessage(content=[{"type": "text", "text": "What is in this picture?"}, IMAGE])],
        config={"metadata": step("describe")})
    routed = message.response_metadata["steproute"]
    assert routed["tier"] == "vision"
    assert "needs vision: no deployment of 'fast' has it; tier 'vision'" in routed["reason"]
    assert message.response_metadata["model_name"] == "openai/gpt-4o"
    assert on_the_wire(llmock) == Counter({"gpt-4o": 1})
    # a text call stays on the fast tier
    text = router.chat_model().invoke("hello", config={"metadata": step("describe")})
    assert text.response_metadata["steproute"]["tier"] == "fast"
    assert on_the_wire(llmock) == Counter({"gpt-4o": 1, "gpt-3.5-turbo": 1})


def test_a_long_conversation_moves_past_a_tier_with_a_small_window(llmock):
    router = StepRouter(RouterConfig(tiers={
        "small": {"models": [deployment(llmock, "openai/gpt-4o-mini", capabilities={"max_input_tokens": 1000})]},
        "large": {"models": [deployment(llmock, "openai/gpt-4o")]},
    }, default="small"))
    turns: list[dict[str, Any]] = []
    for i in range(30):
        turns.append({"role": "user", "content": f"Question {i}: tell me about the history of the city, in detail."})
        turns.append({"role": "assistant", "content": "The city was founded long ago by traders on the river. " * 3})
    turns.append({"role": "user", "content": "And today?"})
    result = router.complete(StepRequest("chat", turns, thread="t-1"))
    assert result.decision.tier == "large"
    assert "needs a context window of " in result.decision.reason
    assert "no deployment of 'small' has it; tier 'large'" in result.decision.reason
    assert on_the_wire(llmock) == Counter({"gpt-4o": 1})
    short = router.complete(StepRequest("chat", turns[-1:]))
    assert short.decision.tier == "small"
    assert on_the_wire(llmock) == Counter({"gpt-4o": 1, "gpt-4o-mini": 1})


def test_no_capable_tier_is_a_capability_error_and_nothing_reaches_the_wire(llmock):
    router = StepRouter(RouterConfig(tiers={
        "fast": {"models": [deployment(llmock, "openai/gpt-3.5-turbo")]},
        "strong": {"models": [deployment(llmock, "openai/gpt-4o", capabilities={"vision": False})]},
    }, default="fast"))
    with pytest.raises(CapabilityError) as caught:
        router.chat_model().invoke([HumanMessage(content=[{"type": "text", "text": "secret words"}, IMAGE])],
                                   config={"metadata": step("describe")})
    assert (caught.value.step, caught.value.capability, caught.value.tiers) == ("describe", "vision", ("fast", "strong"))
    assert "secret words" not in str(caught.value)
    assert len(llmock.requests) == 0


def test_an_unknown_key_under_capabilities_is_a_config_error_naming_its_path(llmock):
    with pytest.raises(ConfigError) as caught:
        RouterConfig(tiers={"fast": {"models": [deployment(llmock, "openai/gpt-4o", capabilities={"tool": True})]}},
                     default="fast")
    assert [p.path for p in caught.value.problems] == ["tiers.fast.models[0].capabilities.tool"]
    assert len(llmock.requests) == 0
