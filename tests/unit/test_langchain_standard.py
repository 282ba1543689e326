"""LangChain's standard unit tests for chat models (langchain-tests)."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from steproute import RoutedChatModel, RouterConfig, StepRouter
from tests.conftest import mock_tiers

ROUTER = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"))


class TestRoutedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": ROUTER}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # Credentials belong to each deployment in the router's config, not to the chat model,
        # which refuses unknown fields; every other standard parameter is accepted.
        params = super().standard_chat_model_params
        params.pop("api_key", None)
        return params

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True
