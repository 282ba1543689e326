"""Tool calling for tiers whose models have none (``tool_calling: json``)."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from steproute import RouterConfig, StepRouter
from steproute.json_tools import emulated_request, parse_reply

ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
MUL = {"type": "function", "function": {"name": "mul", "description": "Multiply.",
                                        "parameters": {"type": "object", "properties": {"x": {"type": "number"}}}}}


def test_tools_become_a_json_schema_response_format():
    messages, params, emulated = emulated_request(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}],
        {"tools": [ADD, MUL], "tool_choice": "auto", "parallel_tool_calls": False, "temperature": 0})
    assert emulated and params["temperature"] == 0
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(params)
    options = params["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [o["properties"].get("tool", {}).get("const") for o in options] == ["add", "mul", None]
    assert options[0]["properties"]["arguments"] == ADD["function"]["parameters"]
    assert options[2]["required"] == ["answer"]  # 'auto' may answer without a tool
    assert messages[0]["content"].startswith("Be brief.\n\nYou can call these tools:")  # one system message
    assert "- add(a: number, b: number): Add two numbers." in messages[0]["content"]


def test_required_and_named_choices_leave_no_answer_option():
    _, params, _ = emulated_request([{"role": "user", "content": "x"}], {"tools": [ADD, MUL], "tool_choice": "required"})
    assert all("tool" in o["properties"] for o in params["response_format"]["json_schema"]["schema"]["anyOf"])
    _, params, _ = emulated_request([{"role": "user", "content": "x"}],
                                    {"tools": [ADD, MUL], "tool_choice": {"type": "function", "function": {"name": "mul"}}})
    schema = params["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["tool"] == {"const": "mul"} and "anyOf" not in schema


def test_no_tools_or_choice_none_is_a_plain_request():
    messages = [{"role": "user", "content": "hi"}]
    assert emulated_request(messages, {"temperature": 1}) == (messages, {"temperature": 1}, False)
    _, params, emulated = emulated_request(messages, {"tools": [ADD], "tool_choice": "none"})
    assert not emulated and params == {}


def test_tool_history_becomes_plain_turns():
    history = [
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
    ]
    messages, _, _ = emulated_request(history, {"tools": [ADD]})
    assert messages[2] == {"role": "assistant", "content": '{"tool": "add", "arguments": {"a": 2, "b": 3}}'}
    assert messages[3] == {"role": "user", "content": "Result of add: 5"}


@pytest.mark.parametrize("reply, text, call", [
    ('{"tool": "add", "arguments": {"a": 2, "b": 3}}', "", ("add", {"a": 2, "b": 3})),
    ('{"answer": "It is 5."}', "It is 5.", None),
    ("not json at all", "not json at all", None),
    ('["a list"]', '["a list"]', None),
    ('{"tool": "add", "arguments": "{\\"a\\": 2}"}', "", ("add", {"a": 2})),  # arguments sent as JSON text
])
def test_parse_reply(reply, text, call):
    # a tool call without a usable name is rejected: tests/unit/test_model_output.py
    content, calls = parse_reply(reply)
    assert content == text
    if call is None:
        assert calls == ()
    else:
        (id_, name, arguments), = calls
        assert id_.startswith("call_") and (name, json.loads(arguments)) == call


def json_router(reply: str) -> StepRouter:
    return StepRouter(RouterConfig(
        tiers={"fast": {"tool_calling": "json",
                        "models": [{"model": "openai/gpt-4o-mini", "mock_response": reply, "api_key": "sk-test"}]}},
        default="fast"))


def test_chat_model_turns_the_json_reply_into_tool_calls():
    llm = json_router('{"tool": "add", "arguments": {"a": 2, "b": 3}}').chat_model()
    message = llm.bind_tools([ADD]).invoke([HumanMessage("2+3?")])
    assert message.tool_calls[0]["name"] == "add" and message.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert message.response_metadata["finish_reason"] == "tool_calls" and message.content == ""
    # the tool loop continues over the converted history
    follow = json_router('{"answer": "5"}').chat_model().bind_tools([ADD]).invoke(
        [HumanMessage("2+3?"), message, ToolMessage("5", tool_call_id=message.tool_calls[0]["id"])])
    assert isinstance(follow, AIMessage) and follow.content == "5" and not follow.tool_calls


def test_structured_output_and_streaming_through_json_tools():
    class Sum(BaseModel):
        a: int
        b: int

    llm = json_router('{"tool": "Sum", "arguments": {"a": 2, "b": 3}}').chat_model()
    assert llm.with_structured_output(Sum).invoke("2 and 3") == Sum(a=2, b=3)
    llm = json_router('{"tool": "add", "arguments": {"a": 2, "b": 3}}').chat_model()
    chunks = list(llm.bind_tools([ADD]).stream("2+3?"))
    calls = [c for chunk in chunks for c in chunk.tool_call_chunks]
    assert calls[0]["name"] == "add" and json.loads(calls[0]["args"]) == {"a": 2, "b": 3}
    assert chunks[-1].usage_metadata and chunks[-1].response_metadata["steproute"]["tier"] == "fast"


def test_tool_calling_mode_is_validated():
    with pytest.raises(ValueError, match=r"tiers\.fast\.tool_calling"):
        RouterConfig(tiers={"fast": {"tool_calling": "xml", "models": ["openai/gpt-4o-mini"]}}, default="fast")
