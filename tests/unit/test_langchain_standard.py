"""LangChain's standard unit tests for chat models (langchain-tests)."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from steproute import RouterConfig, StepRouter
from tests.conftest import mock_tiers
from tests.standard_params import RoutedModelCapabilities

ROUTER = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"))


class TestRoutedChatModelUnit(RoutedModelCapabilities, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": ROUTER}
