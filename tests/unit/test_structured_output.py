"""`with_structured_output(method=...)`: what reaches LiteLLM for each method, the parsers, the
fallback to tool calling where a tier cannot take a response format, and the schema the router
sees. What LiteLLM is sent is read by a LiteLLM callback (the parameters it maps for the call)."""

from __future__ import annotations

import logging
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from pydantic import BaseModel
from typing_extensions import TypedDict

from steproute import RouterConfig, StepRouter
from tests.conftest import mock_tiers

SCHEMA_CALL = [{"id": "c1", "type": "function", "function": {"name": "Weather", "arguments": '{"city": "Oslo"}'}}]


class Weather(BaseModel):
    """Weather in a city."""

    city: str


class WeatherDict(TypedDict):
    """Weather in a city."""

    city: str


class Sent(CustomLogger):
    """The optional parameters LiteLLM maps for each call, before it is made."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.calls.append(dict(kwargs.get("optional_params") or {}))


@pytest.fixture
def sent():
    capture = Sent()
    litellm.callbacks.append(capture)
    yield capture
    litellm.callbacks.remove(capture)


def json_router(make_router, **config: Any) -> StepRouter:
    return make_router(tiers=mock_tiers(mock_response='{"city": "Oslo"}'), **config)


def test_json_schema_sends_a_strict_response_format_and_parses_the_text(make_router, sent):
    structured = json_router(make_router).chat_model().with_structured_output(Weather, method="json_schema",
                                                                              strict=True)
    assert structured.invoke("weather in Oslo?") == Weather(city="Oslo")
    (params,) = sent.calls
    assert "tools" not in params
    fmt = params["response_format"]
    assert fmt["type"] == "json_schema"
    assert (fmt["json_schema"]["name"], fmt["json_schema"]["strict"]) == ("Weather", True)
    assert fmt["json_schema"]["schema"]["properties"] == {"city": {"type": "string"}}


def test_json_mode_sends_json_object_and_parses_into_the_model(make_router, sent):
    structured = json_router(make_router).chat_model().with_structured_output(Weather, method="json_mode")
    assert structured.invoke("weather in Oslo? answer in JSON") == Weather(city="Oslo")
    assert sent.calls[0]["response_format"] == {"type": "json_object"}
    assert "tools" not in sent.calls[0]


def test_dict_schemas_give_dicts_and_include_raw_keeps_the_message(make_router, sent):
    llm = json_router(make_router).chat_model()
    assert llm.with_structured_output(WeatherDict, method="json_schema").invoke("x") == {"city": "Oslo"}
    out = llm.with_structured_output(Weather, method="json_schema", include_raw=True).invoke("x")
    assert out["parsed"] == Weather(city="Oslo") and out["parsing_error"] is None
    assert out["raw"].response_metadata["steproute"]["tier"] == "fast"
    assert llm.with_structured_output(None, method="json_mode").invoke("x") == {"city": "Oslo"}


def test_a_reply_that_does_not_parse_is_a_parsing_error_with_include_raw(make_router):
    router = make_router(tiers=mock_tiers(mock_response="not json"))
    out = router.chat_model().with_structured_output(Weather, method="json_schema", include_raw=True).invoke("x")
    assert out["parsed"] is None and out["parsing_error"] is not None


def test_function_calling_keeps_the_tool_path(make_router, sent):
    router = make_router(tiers=mock_tiers(mock_tool_calls=SCHEMA_CALL))
    structured = router.chat_model().with_structured_output(Weather, method="function_calling", strict=True)
    assert structured.invoke("weather?") == Weather(city="Oslo")
    (params,) = sent.calls
    assert "response_format" not in params
    (tool,) = params["tools"]
    assert tool["function"]["name"] == "Weather" and tool["function"]["strict"] is True


def test_an_unknown_method_or_argument_is_a_clear_error(make_router):
    llm = make_router().chat_model()
    with pytest.raises(ValueError, match="method must be one of function_calling, json_schema, json_mode; got 'xml'"):
        llm.with_structured_output(Weather, method="xml")
    with pytest.raises(ValueError, match="unsupported arguments colour"):
        llm.with_structured_output(Weather, colour="red")


@pytest.mark.parametrize("method", ["json_schema", "json_mode", "function_calling"])
def test_the_router_sees_the_schema_whatever_the_method(make_router, method):
    rules = {"policy": "rules", "rules": [{"name": "schema", "when": {"has_schema": True}, "tier": "advanced"}],
             "fallback": "fast"}
    router = make_router(tiers=mock_tiers(mock_response='{"city": "Oslo"}', mock_tool_calls=SCHEMA_CALL)
                         if method == "function_calling" else mock_tiers(mock_response='{"city": "Oslo"}'),
                         default=rules)
    out = router.chat_model().with_structured_output(Weather, method=method, include_raw=True).invoke("x")
    assert out["parsed"] == Weather(city="Oslo")
    assert out["raw"].response_metadata["steproute"]["tier"] == "advanced"


def test_streaming_json_schema_sends_the_response_format(make_router, sent):
    structured = json_router(make_router).chat_model().with_structured_output(WeatherDict, method="json_schema")
    chunks = list(structured.stream("x"))
    assert chunks[-1] == {"city": "Oslo"}
    assert sent.calls[0]["response_format"]["type"] == "json_schema"


def test_a_tier_that_cannot_take_json_schema_falls_back_to_tool_calling_and_says_so(sent, caplog):
    tiers = {"old": {"models": [{"model": "openai/gpt-3.5-turbo", "mock_tool_calls": SCHEMA_CALL, "api_key": "k"}]},
             "new": {"models": [{"model": "openai/gpt-4o", "mock_tool_calls": SCHEMA_CALL, "api_key": "k"}]}}
    router = StepRouter(RouterConfig(tiers=tiers, default="old"))
    with caplog.at_level(logging.WARNING, logger="steproute"):
        structured = router.chat_model().with_structured_output(Weather, method="json_schema", include_raw=True)
        router.chat_model().with_structured_output(Weather, method="json_schema")  # warned once
    out = structured.invoke("weather?")
    assert out["parsed"] == Weather(city="Oslo")
    assert "response_format" not in sent.calls[0] and sent.calls[0]["tools"][0]["function"]["name"] == "Weather"
    said = out["raw"].response_metadata["steproute"]["structured_output"]
    assert said["method"] == "function_calling"
    assert "tier 'old' (openai/gpt-3.5-turbo) cannot take a json_schema response format" in said["reason"]
    warnings = [r for r in caplog.records if "with_structured_output" in r.getMessage()]
    assert len(warnings) == 1 and "tier 'old'" in warnings[0].getMessage()


def test_json_tool_tiers_take_a_json_schema(sent):
    tiers = {"local": {"models": [{"model": "openai/smollm2-135m", "mock_response": '{"city": "Oslo"}',
                                   "api_key": "k"}], "tool_calling": "json"}}
    router = StepRouter(RouterConfig(tiers=tiers, default="local"))
    assert router.chat_model().with_structured_output(Weather, method="json_schema").invoke("x") == Weather(city="Oslo")
    assert sent.calls[0]["response_format"]["type"] == "json_schema"
