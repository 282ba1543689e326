"""Agent turns: which user message a call answers, as a fingerprint a ``turn`` pin compares.

A **turn** is one user message and everything the agent does until it answers it: the call that
reads the user's message, the calls after each tool result, the final answer. Every call of a
turn carries the same last ``user`` message (the tool calls and results come after it), so a
turn is named by that message: the number of user messages in the conversation and a hash of
the message's text. The next user message makes a new fingerprint; the same text sent again
("yes", "continue") does too, since the count has grown.

The fingerprint is a 16-hex-digit BLAKE2b digest: the message's text is never stored on a pin.
A conversation whose history is rewritten in the middle of a turn so that its last user message
changes (a summary replacing it, a window trimming user messages away) begins a new turn there:
the policy decides again, and the decision's reason says ``new turn``.

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


def _key(user_messages: int, text: str) -> str:
    data = f"{user_messages}\x00{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def turn_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """The fingerprint of the turn ``messages`` (OpenAI format) belong to: the count of user
    messages and a hash of the last one's text (no user message: the turn of the empty text)."""
    count, text = 0, ""
    for message in messages:
        if message.get("role") == "user":
            count += 1
            text = text_of(message.get("content"))
    return _key(count, text)


def request_turn(request: StepRequest) -> str:
    """:func:`turn_of` a request's messages, from the measures the request caches."""
    return _key(request.user_turns, request.latest_user_text)
