"""Text that no request can carry, refused before any model call.

Every provider takes JSON in UTF-8, and a Python string can hold what UTF-8 cannot encode: a
lone surrogate such as ``"\\ud800"`` (left by a bad decode or a cut emoji pair). LiteLLM fails
such a call locally, and calls it an ``InternalServerError``: a transient error, so the call
would fall back to every stronger tier, each failing the same way. steproute looks first and
raises :class:`RequestEncodingError`, naming the field (``messages[2].content``) and the
character's position, never the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from steproute.errors import StepRouteError

__all__ = ["RequestEncodingError", "check_sendable", "first_unencodable"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")
_MAX_DEPTH = 64


class RequestEncodingError(StepRouteError, ValueError):
    """A request holds text that cannot be encoded as UTF-8 (a lone surrogate), so no provider
    can be sent it. Raised before any model call; never moves the call to another tier (every
    tier would fail the same way). Names the field and the position, never the text.

    Example:
        >>> err = RequestEncodingError("extract", "messages[1].content", 4)
        >>> err.field, err.position
        ('messages[1].content', 4)
        >>> print(err)  # doctest: +ELLIPSIS
        step 'extract': messages[1].content holds a lone surrogate at character 4, which no request can carry...
    """

    def __init__(self, step: str, field: str, position: int) -> None:
        self.step = step
        self.field = field
        """Where the text is: ``messages[i].content``, ``tools[0].function.description``, ..."""
        self.position = position
        """The index of the first character that cannot be encoded."""
        super().__init__(f"step {step[:80]!r}: {field} holds a lone surrogate at character {position}, which no "
                         "request can carry (UTF-8 cannot encode it); no model was called and no other tier is "
                         "tried: fix the text where it was decoded")


def _bad_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def first_unencodable(value: Any, path: str, depth: int = 0) -> tuple[str, int] | None:
    """The path and character position of the first string under ``value`` that UTF-8 cannot
    encode, or ``None``. Keys are shown when they look like field names, else as ``[key]``.

    Example:
        >>> first_unencodable([{"role": "user", "content": "ok"}, {"content": "a\\ud800"}], "messages")
        ('messages[1].content', 1)
    """
    if isinstance(value, str):
        at = _bad_at(value)
        return None if at is None else (path, at)
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{path}.{key}" if isinstance(key, str) and _NAME.fullmatch(key) else f"{path}[key]"
            if isinstance(key, str) and (at := _bad_at(key)) is not None:
                return f"{name} (a key)", at
            found = first_unencodable(item, name, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for i, item in enumerate(value):
            found = first_unencodable(item, f"{path}[{i}]", depth + 1)
            if found is not None:
                return found
    return None


def check_sendable(step: str, messages: Sequence[Any], params: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`RequestEncodingError` when the messages (or the call's parameters: tools,
    a response schema, ...) hold text that cannot be sent."""
    found = first_unencodable(messages, "messages")
    if found is None and params:
        for key, value in params.items():
            found = first_unencodable(value, str(key) if _NAME.fullmatch(str(key)) else "[key]")
            if found is not None:
                break
    if found is not None:
        raise RequestEncodingError(step, *found)
