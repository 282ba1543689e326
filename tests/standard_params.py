"""What both of LangChain's standard test suites need to know about RoutedChatModel."""

from __future__ import annotations

from typing import Any

from steproute import RoutedChatModel


class RoutedModelCapabilities:
    """Mixed into langchain-tests' ChatModelUnitTests / ChatModelIntegrationTests."""

    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # Credentials belong to each deployment in the router's config, not to the chat model,
        # which refuses unknown fields; every other standard parameter is accepted.
        params = super().standard_chat_model_params  # type: ignore[misc]
        params.pop("api_key", None)
        return params

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True
