"""Agent turns: which user message a call answers, as a fingerprint a ``turn`` pin compares.

A **turn** is one user message and everything the agent does until it answers it: the call that
reads the user's message, the calls after each tool result, the final answer. Within a turn
only messages *after* the last ``user`` message are added (tool calls, tool results, the
answer), so everything at or before it stays the same. A turn is named by three things that do:
the number of user messages in the conversation, the last one's text, and the message just
before it (its role, text, id and tool-call ids; nothing when the user message opens the list).
The next user message makes a new fingerprint; the same text sent again ("yes", "continue")
does too, since the count has grown, and so does an application that keeps only a window of
the last messages (the count stays the same, but the message before the new user message is
the assistant's latest answer, not the one before the old turn).

The fingerprint is a 16-hex-digit BLAKE2b digest: no message's text is ever stored on a pin.
A conversation whose history is rewritten in the middle of a turn so that its last user message
or the message just before it changes (a summary replacing them, a window trimming them away)
begins a new turn there: the policy decides again, and the decision's reason says ``new turn``.

Example:
    >>> opening = [{"role": "user", "content": "Weather in Paris?"}]
    >>> loop = opening + [{"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
    ...        "function": {"name": "weather", "arguments": "{}"}}]},
    ...        {"role": "tool", "tool_call_id": "c1", "content": "18 C"}]
    >>> turn_of(opening) == turn_of(loop)
    True
    >>> turn_of(loop + [{"role": "assistant", "content": "18 C"}, {"role": "user", "content": "Weather in Paris?"}]) \\
    ...     == turn_of(opening)
    False
    >>> len(turn_of(opening))
    16
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from steproute.types import StepRequest, text_of

__all__ = ["request_turn", "turn_of"]


def _part(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _before(message: Mapping[str, Any] | None) -> str:
    """What names the message just before a turn's user message (``""``: none)."""
    if message is None:
        return ""
    calls = message.get("tool_calls")
    call_ids = [_part(c.get("id")) for c in calls if isinstance(c, Mapping)] if isinstance(calls, Sequence) else []
    fields = [_part(message.get("role")), _part(message.get("id")), _part(message.get("tool_call_id")),
              ",".join(call_ids), text_of(message.get("content"))]
    return "\x1f".join(fields)


def _key(user_messages: int, text: str, before: str) -> str:
    data = f"{user_messages}\x00{text}\x00{before}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def turn_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """The fingerprint of the turn ``messages`` (OpenAI format) belong to: the count of user
    messages, the last one's text and the message just before it, hashed (no user message:
    the turn of the empty text)."""
    count, last = 0, -1
    for i, message in enumerate(messages):
        if message.get("role") == "user":
            count += 1
            last = i
    if last < 0:
        return _key(0, "", "")
    return _key(count, text_of(messages[last].get("content")), _before(messages[last - 1] if last > 0 else None))


def request_turn(request: StepRequest) -> str:
    """:func:`turn_of` a request's messages."""
    return turn_of(request.messages)
