"""``with_structured_output`` for the routed chat model: the three methods LangChain knows.

- ``function_calling``: the schema is a tool the model must call (LangChain's default, and
  steproute's: it works on every tier, natively or through ``tool_calling: json``).
- ``json_schema``: the schema goes to LiteLLM as ``response_format`` ``{"type": "json_schema",
  "json_schema": {"name", "schema", "strict"}}``; the answer's text is the JSON.
- ``json_mode``: ``response_format`` ``{"type": "json_object"}``; the schema is only parsed against
  (say in the prompt what you want).

The tier is chosen per call, after the request is built, with the same parameters for every
tier; so whether the tiers can take a response format is checked here, over all of the router's
tiers, when the structured model is built. When one cannot, the call is made by tool calling
instead, and steproute says so: a warning in the log (once per router and method) and
``response_metadata["steproute"]["structured_output"]`` on every answer. In every method the
request carries the schema (``StepRequest.response_schema``), for ``has_schema`` rules and the
cascade's ``schema`` signal.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

__all__ = ["METHODS", "response_format_for", "structured_output", "unsupported_tiers"]

METHODS = ("function_calling", "json_schema", "json_mode")
"""The ``method=`` values :func:`structured_output` accepts."""

_log = logging.getLogger("steproute")
_warned: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
"""The methods already warned about, per router."""


def response_format_for(schema: Any, method: str, strict: bool | None = None) -> dict[str, Any]:
    """The OpenAI ``response_format`` of a schema (pydantic model, TypedDict, JSON schema dict).

    Example:
        >>> response_format_for({"title": "City", "type": "object", "properties": {}}, "json_schema", True)
        {'type': 'json_schema', 'json_schema': {'name': 'City', 'schema': {'type': 'object', 'properties': {}}, 'strict': True}}
        >>> response_format_for(None, "json_mode")
        {'type': 'json_object'}
    """
    if method == "json_mode":
        return {"type": "json_object"}
    function = convert_to_openai_tool(schema)["function"]
    json_schema: dict[str, Any] = {"name": function["name"], "schema": function.get("parameters", {})}
    if strict is not None:
        json_schema["strict"] = strict
    return {"type": "json_schema", "json_schema": json_schema}


def unsupported_tiers(router: Any, method: str) -> dict[str, list[str]]:
    """The router's tiers with deployments that cannot take ``method``'s response format, and
    those deployments' models (LiteLLM's ``supports_response_schema``; for ``json_mode``, also
    ``response_format`` among the provider's parameters). A ``tool_calling: json`` tier can:
    its servers compile a JSON schema into a grammar (the tool emulation relies on it).

    Example:
        >>> from steproute import RouterConfig, StepRouter
        >>> router = StepRouter(RouterConfig(tiers={
        ...     "old": {"models": ["openai/gpt-3.5-turbo"]}, "new": {"models": ["openai/gpt-4o"]}}, default="old"))
        >>> unsupported_tiers(router, "json_schema")
        {'old': ['openai/gpt-3.5-turbo']}
    """
    out: dict[str, list[str]] = {}
    for tier in router.tiers:
        if router.config.tiers[tier].tool_calling == "json":
            continue
        models = [d.model for d in router.deployments(tier) if not d.takes_response_format(method)]
        if models:
            out[tier] = models
    return out


def _fallback_reason(method: str, missing: Mapping[str, list[str]]) -> str:
    where = "; ".join(f"tier {tier!r} ({', '.join(models)})" for tier, models in missing.items())
    return f"method {method!r} asked, made by tool calling: {where} cannot take a {method} response format"


def _note(reason: str) -> Runnable:
    """Writes the fallback on the answer, where the decision is: ``steproute.structured_output``."""

    def note(message: AIMessage) -> AIMessage:
        routed = dict(message.response_metadata.get("steproute") or {})
        routed["structured_output"] = {"method": "function_calling", "reason": reason}
        return message.model_copy(update={"response_metadata": {**message.response_metadata, "steproute": routed}})

    return RunnableLambda(note, name="steproute_structured_fallback")


def structured_output(
    model: Any,
    schema: Any,
    *,
    method: str = "function_calling",
    include_raw: bool = False,
    strict: bool | None = None,
    schema_kwarg: str,
    **kwargs: Any,
) -> Runnable:
    """The runnable behind :meth:`RoutedChatModel.with_structured_output`; ``schema_kwarg`` is
    the bound parameter that carries the JSON schema to the routed request.

    Example:
        >>> from steproute import RouterConfig, StepRouter
        >>> router = StepRouter(RouterConfig(tiers={"fast": {"models": [
        ...     {"model": "openai/gpt-4o-mini", "mock_response": '{"city": "Oslo"}'}]}}, default="fast"))
        >>> schema = {"title": "Weather", "type": "object", "properties": {"city": {"type": "string"}}}
        >>> router.chat_model().with_structured_output(schema, method="json_schema").invoke("weather?")
        {'city': 'Oslo'}
    """
    if kwargs:
        raise ValueError(f"with_structured_output: unsupported arguments {', '.join(sorted(kwargs))}")
    if method not in METHODS:
        raise ValueError(f"with_structured_output: method must be one of {', '.join(METHODS)}; got {method!r}")
    if schema is None and method != "json_mode":
        raise ValueError(f"with_structured_output: method {method!r} needs a schema")
    pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    traced: dict[str, Any] = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
    reason = None
    if method != "function_calling":
        missing = unsupported_tiers(model.router, method)
        if missing:
            reason = _fallback_reason(method, missing)
            warned = _warned.setdefault(model.router, set())
            if method not in warned:
                warned.add(method)
                _log.warning("steproute: with_structured_output: %s", reason)
            traced["kwargs"] = {"method": "function_calling", "strict": strict, "requested": method}
    parser: Runnable
    if method == "function_calling" or reason is not None:
        tool = convert_to_openai_tool(schema, strict=strict)
        llm = model.bind_tools([tool], tool_choice="any", ls_structured_output_format=traced)
        if pydantic:
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
        else:
            parser = JsonOutputKeyToolsParser(key_name=tool["function"]["name"], first_tool_only=True)
        if reason is not None:
            llm = llm | _note(reason)
    else:
        bound: dict[str, Any] = {"response_format": response_format_for(schema, method, strict)}
        if schema is not None:  # json_mode may have none
            bound[schema_kwarg] = convert_to_openai_tool(schema)["function"].get("parameters", {})
            bound["ls_structured_output_format"] = traced
        llm = model.bind(**bound)
        parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()
    if not include_raw:
        return llm | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    failed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parsed.with_fallbacks([failed], exception_key="parsing_error")
