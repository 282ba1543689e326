"""Lazy access to LiteLLM.

LiteLLM is heavy to import (about a second) and, unless told otherwise, fetches its model
price map from the network at import. steproute imports it on first use only, after setting
``LITELLM_LOCAL_MODEL_COST_MAP=True`` unless the application chose a value itself.
"""

from __future__ import annotations

import os
from types import ModuleType

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
