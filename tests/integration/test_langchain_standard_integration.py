"""LangChain's standard integration tests for chat models, over real HTTP to llmock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from steproute import RouterConfig, StepRouter
from tests.standard_params import RoutedModelCapabilities

pytestmark = pytest.mark.integration

_router: dict[str, StepRouter] = {}


# llmock plays the model: where a standard test checks what a real model would answer (the
# arguments it computes), the fixture scripts that answer, so the test still exercises the
# whole wire path: tools out over HTTP, tool calls back through LiteLLM into LangChain.
SCRIPTED_TOOL_CALLS = {
    "test_tool_calling": ("magic_function", {"input": 3}),
    "test_tool_calling_async": ("magic_function", {"input": 3}),
    "test_unicode_tool_call_integration": ("unicode_customer", {
        "customer_name": "你好啊集团 こんにちは株式会社", "description": "テクノロジー企業 technology"}),
}


@pytest.fixture(autouse=True)
def _routed_to_llmock(llmock, request) -> Iterator[None]:
    scripted = SCRIPTED_TOOL_CALLS.get(request.node.originalname)
    if scripted is not None:
        llmock.call_tool(scripted[0], scripted[1], times=None)
    models = {"fast": "openai/gpt-4o-mini", "advanced": "openai/gpt-4o"}
    _router["r"] = StepRouter(RouterConfig(
        tiers={t: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "k"}]} for t, m in models.items()},
        default={"policy": "rules", "rules": [{"name": "tools", "when": {"has_tools": True}, "tier": "advanced"}],
                 "fallback": "fast"}))
    yield


class TestRoutedChatModelIntegration(RoutedModelCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": _router["r"]}
