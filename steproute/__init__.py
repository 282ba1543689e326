"""steproute: route each step of a LangGraph workflow to the cheapest model tier that can do it.

Example:
    >>> from steproute import StepRouter, step
    >>> router = StepRouter.from_file("steproute.yaml")          # doctest: +SKIP
    >>> llm = router.chat_model()                                  # doctest: +SKIP
    >>> builder.add_node("plan", plan, metadata=step("plan", min_tier="standard"))  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from steproute._encoding import RequestEncodingError
from steproute.capabilities import CapabilityError
from steproute.config import RouterConfig, load_config
from steproute.errors import (
    BudgetExceeded,
    ConfigError,
    ContextWindowExceeded,
    DispatchError,
    LocalModelError,
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RoutingError,
    StepRouteError,
)
from steproute.model_output import MalformedResponse
from steproute.pin_locks import StoreLockError
from steproute.router import RoutedCompletion, StepRouter, StreamSummary
from steproute.types import CascadeAttempt, Decision, Hint, StepKind, StepRequest, Usage

if TYPE_CHECKING:
    from steproute.cost_tracker import StepCostTracker
    from steproute.factories import ModelPatch, route_factory, route_init_chat_model
    from steproute.langgraph import RoutedChatModel, step
    from steproute.middleware import StepRouterMiddleware

try:
    __version__ = _metadata.version("steproute")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BudgetExceeded",
    "CapabilityError",
    "CascadeAttempt",
    "ConfigError",
    "ContextWindowExceeded",
    "Decision",
    "DispatchError",
    "Hint",
    "LocalModelError",
    "MalformedResponse",
    "ModelPatch",
    "ProviderAuthError",
    "ProviderError",
    "ProviderRequestError",
    "RequestEncodingError",
    "RoutedChatModel",
    "RoutedCompletion",
    "RouterConfig",
    "RoutingError",
    "StepCostTracker",
    "StepKind",
    "StepRequest",
    "StepRouteError",
    "StepRouter",
    "StepRouterMiddleware",
    "StoreLockError",
    "StreamSummary",
    "Usage",
    "__version__",
    "load_config",
    "route_factory",
    "route_init_chat_model",
    "step",
]

_LAZY = {
    "RoutedChatModel": "steproute.langgraph",
    "step": "steproute.langgraph",
    "StepCostTracker": "steproute.cost_tracker",
    "StepRouterMiddleware": "steproute.middleware",
    "ModelPatch": "steproute.factories",
    "route_factory": "steproute.factories",
    "route_init_chat_model": "steproute.factories",
}


def __getattr__(name: str) -> Any:
    # The LangChain layer is imported on first use, so `import steproute` stays light.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'steproute' has no attribute {name!r}")
