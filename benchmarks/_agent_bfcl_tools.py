"""BFCL function docs as LangChain tools, and the middleware that records each model call's tool calls.

BFCL's function docs use Gorilla's own type names (``dict``, ``float``, ``tuple``, ``any``); as
tools they become JSON schemas the way bfcl-eval's OpenAI-style handlers convert them
(``model_handler.utils.convert_to_tool`` with ``GORILLA_TO_OPENAPI``; that module imports
tree-sitter parsers, so the conversion is repeated here): dotted names become underscores, a
``float`` is a ``number`` whose description says so, unknown or missing types are strings. Nested
objects and arrays are converted at every depth.

Example:
    >>> tool_name("math.factorial")
    'math_factorial'
    >>> openapi_schema({"type": "dict", "properties": {"n": {"type": "integer", "description": "n."}},
    ...                 "required": ["n"]}, {"dict": "object", "integer": "integer"})
    {'type': 'object', 'properties': {'n': {'type': 'integer', 'description': 'n.'}}, 'required': ['n']}
"""

from __future__ import annotations

import copy
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, StructuredTool

__all__ = ["CallRecorder", "ModelCall", "call_string", "make_tools", "openapi_schema", "tool_name"]


def tool_name(name: str) -> str:
    """BFCL's name as an OpenAI-style tool name (``^[a-zA-Z0-9_-]{1,64}$``): dots become underscores."""
    return name.replace(".", "_")


def _convert(schema: dict[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    gorilla = schema.get("type")
    schema["type"] = mapping.get(gorilla, "string") if isinstance(gorilla, str) else "string"
    if gorilla == "float":
        schema["format"] = "float"
        schema["description"] = schema.get("description", "") + " This is a float type value."
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for value in properties.values():
            if isinstance(value, dict):
                _convert(value, mapping)
    items = schema.get("items")
    if isinstance(items, dict):
        _convert(items, mapping)
    return schema


def openapi_schema(parameters: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """A BFCL ``parameters`` block as a JSON schema (a copy; the task's own doc is left as it is)."""
    schema = _convert(copy.deepcopy(dict(parameters)), mapping)
    schema["type"] = "object"
    schema.setdefault("properties", {})
    return schema


def call_string(name: str, args: Mapping[str, Any]) -> str:
    """A tool call as BFCL writes an executable call (``model_handler.utils.convert_to_function_call``).

    Example:
        >>> call_string("cd", {"folder": "document"})
        "cd(folder='document')"
    """
    return f"{name}({','.join(f'{k}={v!r}' for k, v in args.items())})"


def _key(name: str, args: Mapping[str, Any]) -> str:
    return name + json.dumps(args, sort_keys=True, default=repr)


@dataclass(frozen=True)
class ModelCall:
    """One model call of the agent loop: the turn it answered and the tool calls it made."""

    turn: int
    tool_calls: tuple[tuple[str, dict[str, Any]], ...]
    invalid_tool_calls: tuple[str, ...] = ()
    text: str = ""
    routing: Mapping[str, Any] = field(default_factory=dict)
    """steproute's ``response_metadata["steproute"]`` on the message (step, kind, tier, model, cost)."""


class CallRecorder(AgentMiddleware):  # type: ignore[type-arg]
    """Records every model call's tool calls; with ``execute``, runs them in the order the model listed them.

    ``execute(calls)`` receives a response's calls as BFCL call strings and returns one result each
    (BFCL's ``execute_multi_turn_func_call`` for the multi-turn environments); the tools then
    return those results. Executing here, once per response and in order, keeps the environment's
    state what BFCL's own inference loop would make it, although LangChain runs a response's
    tool calls concurrently.

    Example:
        >>> recorder = CallRecorder()
        >>> recorder._record(AIMessage("", tool_calls=[{"name": "cd", "args": {"folder": "x"}, "id": "1"}]))
        >>> recorder.calls[0].tool_calls
        (('cd', {'folder': 'x'}),)
    """

    def __init__(self, execute: Callable[[list[str]], list[str]] | None = None) -> None:
        super().__init__()
        self.execute = execute
        self.calls: list[ModelCall] = []
        self.turn = 0
        self._results: dict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "BfclCallRecorder"

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        response = handler(request)
        for message in _messages(response):
            if isinstance(message, AIMessage):
                self._record(message)
        return response

    def _record(self, message: AIMessage) -> None:
        tool_calls = tuple((str(c["name"]), dict(c["args"])) for c in message.tool_calls)
        invalid = tuple(f"{c.get('name')}({c.get('args')})" for c in message.invalid_tool_calls)
        text = message.content if isinstance(message.content, str) else json.dumps(message.content, default=str)
        routing = dict((message.response_metadata or {}).get("steproute") or {})
        self.calls.append(ModelCall(self.turn, tool_calls, invalid, text, routing))
        if self.execute is not None and tool_calls:
            results = self.execute([call_string(name, args) for name, args in tool_calls])
            with self._lock:
                for (name, args), result in zip(tool_calls, results, strict=True):
                    self._results[_key(name, args)].append(result)

    def result_for(self, name: str, args: Mapping[str, Any]) -> str | None:
        """The result :meth:`_record` computed for this call (``None`` if there is none)."""
        with self._lock:
            queue = self._results.get(_key(name, args))
            return queue.popleft() if queue else None


def _messages(response: Any) -> list[Any]:
    if isinstance(response, AIMessage):
        return [response]
    inner = getattr(response, "model_response", response)  # ExtendedModelResponse wraps a ModelResponse
    return list(getattr(inner, "result", []) or [])


def make_tools(functions: Sequence[Mapping[str, Any]], mapping: Mapping[str, str],
               respond: Callable[[str, dict[str, Any]], str]) -> list[BaseTool]:
    """One tool per BFCL function doc; calling it returns ``respond(tool name, arguments)``.

    Arguments reach ``respond`` exactly as the model wrote them (the schema is for the model; no
    validation in between), so the checker sees what the model said.
    """
    tools: list[BaseTool] = []
    seen: set[str] = set()
    for doc in functions:
        name = tool_name(str(doc["name"]))
        if name in seen:
            continue
        seen.add(name)

        tools.append(StructuredTool(name=name, description=str(doc.get("description", "")),
                                    args_schema=openapi_schema(doc.get("parameters", {}), mapping),
                                    func=_responder(name, respond)))
    return tools


def _responder(name: str, respond: Callable[[str, dict[str, Any]], str]) -> Callable[..., str]:
    def run(**kwargs: Any) -> str:
        return respond(name, kwargs)

    return run
