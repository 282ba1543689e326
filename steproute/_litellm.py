"""Lazy access to LiteLLM.

LiteLLM is heavy to import (about a second) and, unless told otherwise, fetches its model
price map from the network at import. steproute imports it on first use only, after setting
``LITELLM_LOCAL_MODEL_COST_MAP=True`` unless the application chose a value itself.

Also here: the failed attempts LiteLLM makes inside one call (:func:`collecting`), which
deployments of a ``litellm.Router`` are cooling down (:func:`cooling_down`), and deadlines.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
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


@functools.lru_cache(maxsize=256)
def supports_logprobs(model: str, provider: str) -> bool:
    """Whether LiteLLM passes ``logprobs`` on to ``model`` (OpenAI-compatible servers do; Anthropic
    rejects the parameter with an error)."""
    try:
        return "logprobs" in (litellm().get_supported_openai_params(model=model, custom_llm_provider=provider) or ())
    except Exception:
        return False


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


# -- failed attempts inside LiteLLM --------------------------------------------------------
#
# LiteLLM retries and falls back inside one call. Its failure hook runs synchronously in the
# caller's context for every failed attempt (sync and async), so a context variable set around
# the call collects them: (deployment id or None, exception, start, end).

Failure = tuple[Any, Any, Any, Any]
_FAILURES: ContextVar[list[Failure] | None] = ContextVar("steproute_failures", default=None)
_recorder_installed = False


def install_failure_recorder() -> None:
    """Register (once) the failure hook that feeds :func:`collecting`; healthy calls pay nothing."""
    global _recorder_installed
    if _recorder_installed:
        return
    module = litellm()  # first: sets LITELLM_LOCAL_MODEL_COST_MAP before LiteLLM's import
    from litellm.integrations.custom_logger import CustomLogger

    class _FailureRecorder(CustomLogger):  # type: ignore[misc]
        def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            failures = _FAILURES.get()
            if failures is not None:
                info = (kwargs.get("litellm_params") or {}).get("model_info") or {}
                failures.append((info.get("id"), kwargs.get("exception"), start_time, end_time))

        async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self.log_failure_event(kwargs, response_obj, start_time, end_time)

    recorder = _FailureRecorder()
    module.failure_callback.append(recorder)
    module._async_failure_callback.append(recorder)
    _recorder_installed = True


@contextlib.contextmanager
def collecting(into: list[Failure] | None = None) -> Iterator[list[Failure]]:
    """Collect the failed attempts LiteLLM reports inside the block (into ``into``, or a new list).

    Example:
        >>> with collecting() as failures:
        ...     pass
        >>> failures
        []
    """
    failures: list[Failure] = [] if into is None else into
    token = _FAILURES.set(failures)
    try:
        yield failures
    finally:
        _FAILURES.reset(token)


def ns(moment: Any) -> int | None:
    """A LiteLLM start or end time (a ``datetime``) in ns since the epoch; ``None`` if it is not one."""
    try:
        return int(moment.timestamp() * 1e9)
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None


def cooling_down(router: Any, ids: Iterable[str]) -> set[str]:
    """The deployment ids of a ``litellm.Router`` that it is cooling down now (none when the
    Router's cooldown cache cannot be read).

    Example:
        >>> cooling_down(None, ["fast/0"])
        set()
    """
    try:
        active = router.cooldown_cache.get_active_cooldowns(model_ids=list(ids), parent_otel_span=None)
        return {str(entry[0]) for entry in active or ()}
    except Exception:
        return set()
