"""Lazy access to LiteLLM.

LiteLLM is heavy to import (about a second) and, unless told otherwise, fetches its model
price map from the network at import. steproute imports it on first use only, after setting
``LITELLM_LOCAL_MODEL_COST_MAP=True`` unless the application chose a value itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

_module: ModuleType | None = None


def litellm() -> ModuleType:
    global _module
    if _module is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm as module

        module.suppress_debug_info = True
        _module = module
    return _module


def supports_response_format(model: str, provider: str, method: str) -> bool:
    """Whether LiteLLM knows ``model`` to take a ``json_schema`` response format (``method``
    ``json_schema``), or at least a JSON-object one (``json_mode``)."""
    module = litellm()
    if module.supports_response_schema(model=model, custom_llm_provider=provider):
        return True
    if method == "json_mode":
        try:
            supported = module.get_supported_openai_params(model=model, custom_llm_provider=provider) or ()
        except Exception:
            return False
        return "response_format" in supported
    return False


def provider_stream(stream: object) -> object:
    """The stream LiteLLM opened with the provider, under a ``litellm.Router``'s fallback wrapper.

    The Router hands back a new stream object that replays the provider's stream; only the
    provider's own stream knows whether the provider sent a finish reason
    (``received_finish_reason``). Any other stream is returned as it is.
    """
    generator = getattr(stream, "_sync_generator", None) or getattr(stream, "_async_generator", None)
    frame = getattr(generator, "gi_frame", None) or getattr(generator, "ag_frame", None)
    inner = frame.f_locals.get("model_response") if frame is not None else None
    return inner if inner is not None and hasattr(inner, "received_finish_reason") else stream


def deadlines(params: Mapping[str, Any], timeout: float, stream_timeout: float | None) -> tuple[float, float]:
    """A deployment's deadlines in seconds, (answer, stream): its own ``timeout`` (and
    ``stream_timeout``) first, then the dispatch settings'. Without one, LiteLLM would wait up
    to 6,000 s (``litellm.request_timeout``) on a ``Router``.

    Example:
        >>> deadlines({}, 600.0, None), deadlines({"timeout": 7}, 600.0, 5.0)
        ((600.0, 600.0), (7, 7))
    """
    own = params.get("timeout")
    stream = params.get("stream_timeout", own)
    return (own if own is not None else timeout,
            stream if stream is not None else stream_timeout or timeout)
