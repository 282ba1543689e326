"""Tool calls for models that have no native tool calling (``tool_calling: json`` on a tier).

Small local models answer a tool request with free text or nothing. For their tiers, dispatch
rewrites the request: the tools become a JSON schema sent as ``response_format`` (llama.cpp
turns it into a grammar, so the reply is valid JSON of that shape), the tool-call history
becomes plain messages, and the reply ``{"tool": ..., "arguments": {...}}`` is turned back into
a tool call (``{"answer": ...}`` into text). Everything above dispatch sees ordinary tool calls.
"""

from __future__ import annotations

import json
import re
import uuid
from array import array
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from steproute.model_output import usable_name

__all__ = ["MAX_DEPTH", "MalformedReply", "emulated_request", "parse_reply", "too_deep"]

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a reply may have (as for configuration files)."""


class MalformedReply(ValueError):
    """A reply that looks like a tool call but cannot be one: a tool call without a usable
    name, or JSON nested deeper than :data:`MAX_DEPTH`. The message never shows the reply."""

_TOOL_KEYS = ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call")


def _choice(params: Mapping[str, Any]) -> tuple[str, str | None]:
    """(mode, forced tool name): mode is 'auto', 'required' or 'none'."""
    choice = params.get("tool_choice")
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return str(choice), None
    if isinstance(choice, Mapping):
        return "required", (choice.get("function") or {}).get("name")
    return "auto", None


def _schema(tools: Sequence[Mapping[str, Any]], allow_answer: bool) -> dict[str, Any]:
    options: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function") or {}
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        options.append({
            "type": "object",
            "properties": {"tool": {"const": function.get("name", "")}, "arguments": parameters},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        })
    if allow_answer:
        options.append({"type": "object", "properties": {"answer": {"type": "string"}},
                        "required": ["answer"], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


def _instruction(tools: Sequence[Mapping[str, Any]], allow_answer: bool) -> str:
    lines = ["You can call these tools:"]
    for tool in tools:
        function = tool.get("function") or {}
        args = ", ".join(f"{name}: {spec.get('type', 'any')}"
                         for name, spec in ((function.get("parameters") or {}).get("properties") or {}).items())
        lines.append(f"- {function.get('name')}({args}): {function.get('description', '').strip()}")
    reply = 'Reply with one JSON object only: {"tool": "<tool name>", "arguments": {...}} to call a tool'
    lines.append(reply + (', or {"answer": "<text>"} to answer without a tool.' if allow_answer else "."))
    return "\n".join(lines)


def _plain_history(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls and tool results as ordinary assistant and user turns."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                names[call.get("id", "")] = function.get("name", "")
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = function.get("arguments")
                calls.append(json.dumps({"tool": function.get("name"), "arguments": arguments}))
            text = message.get("content") or ""
            out.append({"role": "assistant", "content": "\n".join([text, *calls]).strip()})
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), "the tool")
            out.append({"role": "user", "content": f"Result of {name}: {_text(message.get('content'))}"})
        else:
            out.append(dict(message))
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in content)
    return "" if content is None else str(content)


def emulated_request(
    messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """Rewrite a tool request for a model without native tool calling.

    Returns the new messages, the new parameters, and whether replies must go through
    :func:`parse_reply`. Requests without tools come back unchanged (history aside).

    Example:
        >>> tools = [{"type": "function", "function": {"name": "add", "description": "Add.",
        ...           "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}]
        >>> msgs, params, emulated = emulated_request([{"role": "user", "content": "1+1?"}],
        ...                                           {"tools": tools, "tool_choice": "required"})
        >>> emulated, "tools" in params, params["response_format"]["type"]
        (True, False, 'json_schema')
        >>> msgs[0]["role"], msgs[0]["content"].splitlines()[1]
        ('system', '- add(a: number): Add.')
    """
    history = _plain_history(messages)
    tools = [t for t in params.get("tools") or () if isinstance(t, Mapping)]
    rest = {k: v for k, v in params.items() if k not in _TOOL_KEYS}
    mode, forced = _choice(params)
    if not tools or mode == "none":
        return history, rest, False
    if forced is not None:
        tools = [t for t in tools if (t.get("function") or {}).get("name") == forced] or tools
    allow_answer = mode == "auto"
    instruction = _instruction(tools, allow_answer)
    if history and history[0].get("role") == "system":
        history[0] = {**history[0], "content": f"{_text(history[0].get('content'))}\n\n{instruction}"}
    else:
        history.insert(0, {"role": "system", "content": instruction})
    rest["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_call", "schema": _schema(tools, allow_answer), "strict": True},
    }
    return history, rest, True


def too_deep(text: str) -> bool:
    """Whether ``text``, read as JSON, nests arrays and objects deeper than :data:`MAX_DEPTH`
    (brackets inside strings do not count). Linear in the text; no parse.

    Example:
        >>> too_deep("[" * 65), too_deep('["[[[[", 1]'), too_deep("[1] " * 1000)
        (True, False, False)
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # the usual case: too few to be too deep
        return False
    # strings out, then every byte but a bracket deleted and the brackets made +1 / -1 (C speed)
    steps = _STRING.sub("", text).encode("utf-8", "replace").translate(_STEP, _NOT_BRACKET)
    return max(accumulate(array("b", steps)), default=0) > MAX_DEPTH


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
"""A JSON string, closed or cut off (unrolled: linear, no backtracking)."""
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""Brackets as signed bytes, +1 and -1: the running sum is the nesting depth (json stops at a stray closer)."""
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _arguments(value: Any) -> str:
    """A call's arguments as JSON text; arguments sent as JSON text of an object are read."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, Mapping):
            value = parsed
    return json.dumps(value if value is not None else {})


def parse_reply(content: str) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    """Turn an emulated reply into (text, tool calls as (id, name, JSON arguments)).

    Text that is not one of the expected JSON shapes is returned as it came. A reply that
    looks like a tool call but cannot be one raises :class:`MalformedReply` (and nothing
    else): a ``"tool"`` without a usable name (``null``, ``""``, not a string), or JSON nested
    deeper than :data:`MAX_DEPTH` (never parsed, so never a ``RecursionError``).

    Example:
        >>> parse_reply('{"tool": "add", "arguments": {"a": 1}}')[1][0][1:]
        ('add', '{"a": 1}')
        >>> parse_reply('{"answer": "two"}')
        ('two', ())
        >>> try:
        ...     parse_reply('{"tool": null, "arguments": {}}')
        ... except MalformedReply as err:
        ...     print(err)
        a tool call without a usable name
    """
    if content.lstrip()[:1] in ("[", "{") and too_deep(content):
        raise MalformedReply(f"a reply nested deeper than {MAX_DEPTH} levels (not read)")
    try:
        data = json.loads(content)
    except ValueError:
        return content, ()
    except RecursionError:  # not reached after too_deep(), unless the stack is nearly full already
        raise MalformedReply(f"a reply nested deeper than {MAX_DEPTH} levels (not read)") from None
    if isinstance(data, Mapping):
        if "tool" in data:
            if not usable_name(data["tool"]):
                raise MalformedReply("a tool call without a usable name")
            return "", ((f"call_{uuid.uuid4().hex[:24]}", data["tool"], _arguments(data.get("arguments"))),)
        if isinstance(data.get("answer"), str):
            return data["answer"], ()
    return content, ()
