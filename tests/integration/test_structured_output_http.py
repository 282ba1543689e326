"""`with_structured_output(method=...)` over HTTP: LiteLLM → llmock on 127.0.0.1. The request on
the wire carries `response_format` for json_schema and json_mode, `tools` for function_calling;
each answer is parsed into the pydantic object. And `create_agent` with a `ProviderStrategy`."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ProviderStrategy
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from steproute import RouterConfig, StepRouter

pytestmark = pytest.mark.integration


class Weather(BaseModel):
    """Weather in a city."""

    city: str
    celsius: int


def router_for(llmock) -> StepRouter:
    tiers = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_base": llmock.base_url(), "api_key": "k"}]}}
    return StepRouter(RouterConfig(tiers=tiers, default="fast"))


@pytest.mark.parametrize("method", ["json_schema", "json_mode", "function_calling"])
def test_each_method_reaches_the_wire_as_itself_and_parses(llmock, method):
    if method == "function_calling":
        llmock.call_tool("Weather", {"city": "Oslo", "celsius": 12})
    else:
        llmock.reply('{"city": "Oslo", "celsius": 12}')
    structured = router_for(llmock).chat_model().with_structured_output(Weather, method=method, strict=True)
    assert structured.invoke("Weather in Oslo, as JSON?") == Weather(city="Oslo", celsius=12)
    (request,) = llmock.requests
    body = request.body
    if method == "function_calling":
        assert "response_format" not in body
        assert [t["function"]["name"] for t in body["tools"]] == ["Weather"]
        assert body["tools"][0]["function"]["strict"] is True
    elif method == "json_schema":
        assert "tools" not in body
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Weather"
        assert fmt["json_schema"]["strict"] is True
        assert set(fmt["json_schema"]["schema"]["properties"]) == {"city", "celsius"}
    else:
        assert "tools" not in body
        assert body["response_format"] == {"type": "json_object"}


def test_create_agent_with_a_provider_strategy_sends_the_response_format(llmock):
    llmock.reply('{"city": "Oslo", "celsius": 12}')
    agent = create_agent(router_for(llmock).chat_model(), tools=[], response_format=ProviderStrategy(Weather))
    result = agent.invoke({"messages": [HumanMessage("Weather in Oslo?")]})
    assert result["structured_response"] == Weather(city="Oslo", celsius=12)
    (request,) = llmock.requests
    assert request.body["response_format"]["type"] == "json_schema"
    assert request.body["response_format"]["json_schema"]["name"] == "Weather"
    assert "strict" not in request.body  # LangChain's `strict=True` is for the tools, not a top-level field
