"""What a decision-log entry captures of a call, and the log a configuration opens.

A router opens the log its configuration names (``decision_log: {path: ..., messages: true}``)
unless it is given one (``StepRouter(decision_log=...)``, which wins). Every entry says whether
the call carried tools or a response schema (``has_tools``/``has_schema``) and the step's hint
(``hint``, when the code gave one); with ``messages: true`` (``include_prompts`` of
:class:`~steproute.decision_log.JsonlDecisionLog`) it also holds the call's messages and answer,
which is what ``steproute replay`` re-decides from. When the configuration has a PII guard, the
captured text goes through its detectors first: a message part (or a tool call's arguments, or
the answer) on which a detector fires is replaced by the detectors' names, never kept.

Example:
    >>> from steproute.guards import PiiGuard
    >>> redacted_messages([{"role": "user", "content": "mail ann@example.org"}], PiiGuard("onprem").redact)
    [{'role': 'user', 'content': '[redacted by the PII guard: email]'}]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from steproute.config import RouterConfig
from steproute.decision_log import DecisionLog, JsonlDecisionLog
from steproute.types import StepRequest

__all__ = ["open_decision_log", "redacted_messages", "request_shape"]

logger = logging.getLogger("steproute")

Redact = Callable[[str], str]


def open_decision_log(config: RouterConfig, given: DecisionLog | str | os.PathLike[str] | None) -> DecisionLog | None:
    """The log a router writes: ``given`` (a log, or a path opened with the configuration's
    ``messages`` setting), else the one the configuration's ``decision_log:`` names (a relative
    path from the configuration file's folder), else none.

    Example:
        >>> cfg = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}}, default="fast")
        >>> open_decision_log(cfg, None) is None
        True
    """
    section = config.decision_log
    if given is not None and section is not None:
        logger.warning("steproute: the decision log given to StepRouter(decision_log=...) is used, not the "
                       "configuration's decision_log.path%s", "" if not isinstance(given, DecisionLog) or
                       given.include_prompts == section.messages else
                       f"; its messages setting ({given.include_prompts}) wins over decision_log.messages")
    if isinstance(given, DecisionLog):
        return given
    messages = section.messages if section is not None else False
    if given is not None:
        return JsonlDecisionLog(given, include_prompts=messages)
    if section is None:
        return None
    path = Path(section.path)
    source = config._source
    if not path.is_absolute() and source:
        path = Path(source).parent / path
    return JsonlDecisionLog(path, include_prompts=messages)


def request_shape(request: StepRequest) -> dict[str, Any]:
    """The keys every entry gets of its request: ``has_tools``, ``has_schema`` and, when the code
    gave one, ``hint`` (its set fields).

    Example:
        >>> from steproute.types import Hint
        >>> request_shape(StepRequest("s", [], hint=Hint(tier="fast")))
        {'has_tools': False, 'has_schema': False, 'hint': {'tier': 'fast'}}
    """
    shape: dict[str, Any] = {"has_tools": bool(request.tools), "has_schema": request.response_schema is not None}
    hint = request.hint
    if not hint.is_empty:
        shape["hint"] = {k: v for k, v in vars(hint).items() if v is not None}
    return shape


def redacted_messages(messages: Sequence[Mapping[str, Any]], redact: Redact | None) -> list[Any]:
    """The messages as an entry holds them: copies whose text (string content, text parts, tool
    calls' arguments) went through ``redact`` (``None``: kept as they are)."""
    if redact is None:
        return list(messages)
    return [_message(m, redact) for m in messages]


def redacted_text(text: str | None, redact: Redact | None) -> str | None:
    """``text`` through ``redact`` (an answer in an entry)."""
    return redact(text) if redact is not None and isinstance(text, str) else text


def _message(message: Mapping[str, Any], redact: Redact) -> Any:
    if not isinstance(message, Mapping):
        return message
    out = dict(message)
    content = out.get("content")
    if isinstance(content, str):
        out["content"] = redact(content)
    elif isinstance(content, (list, tuple)):
        out["content"] = [_part(p, redact) for p in content]
    calls = out.get("tool_calls")
    if isinstance(calls, (list, tuple)):
        out["tool_calls"] = [_tool_call(c, redact) for c in calls]
    return out


def _part(part: Any, redact: Redact) -> Any:
    if isinstance(part, str):
        return redact(part)
    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
        return {**part, "text": redact(part["text"])}
    return part


def _tool_call(call: Any, redact: Redact) -> Any:
    function = call.get("function") if isinstance(call, Mapping) else None
    if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
        return {**call, "function": {**function, "arguments": redact(function["arguments"])}}
    return call
