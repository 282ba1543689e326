"""Model output over real HTTP (LiteLLM → llmock on 127.0.0.1), issue 17: a stream of ``n=2``
choices streams the first choice only; a ``tool_calling: json`` tier's reply nested too deep and
a native tool call without a name fall back to the next tier, said on the reason; a stream its
consumer abandons is booked at what was streamed, never at $0.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from llmock.scenarios import Reply, ToolCall

from steproute import MalformedResponse, RouterConfig, StepRequest, StepRouter
from steproute.decision_log import JsonlDecisionLog, read_log

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"
TEXT = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun."
LONG = " ".join(["steproute streams every word of this answer"] * 40)
ADD = {"type": "function", "function": {"name": "add", "description": "Add two numbers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}


def deployment(llmock, model: str) -> dict[str, Any]:
    return {"model": f"openai/{model}", "api_base": llmock.base_url(), "api_key": "sk-test"}


def router_for(llmock, tmp_path=None, *, fast: dict[str, Any] | None = None, **config: Any) -> StepRouter:
    tiers = {"fast": {"models": [deployment(llmock, CHEAP)], **(fast or {})},
             "strong": {"models": [deployment(llmock, STRONG)]}}
    log = JsonlDecisionLog(tmp_path / "d.jsonl") if tmp_path is not None else None
    return StepRouter(RouterConfig(tiers=tiers, default="fast", dispatch={"timeout": 10}, **config), decision_log=log)


def on_the_wire(llmock) -> Counter[str]:
    return Counter(r.model for r in llmock.requests)


def ask(tenant: str | None = None) -> StepRequest:
    return StepRequest("extract", [{"role": "user", "content": "Tell me about foxes."}], tenant=tenant)


def test_a_stream_of_two_choices_streams_the_first(llmock):
    llmock.add(Reply(text=TEXT, times=None))
    router = router_for(llmock)
    items = list(router.stream(ask(), n=2))
    assert "".join(i.content for i in items[:-1]) == TEXT and items[-1].content == TEXT
    assert items[-1].usage.output_tokens > 0  # the provider's usage: both choices, billed
    assert "".join(c.text for c in router.chat_model().stream("foxes?", n=2)) == TEXT
    assert router.complete(ask(), n=2).completion.content == TEXT


def test_a_deep_json_reply_falls_back_over_http(llmock):
    llmock.add(Reply(text='{"tool": "add", "arguments": ' + '{"a": ' * 3_000 + "1" + "}" * 3_001,
                     match=_model(CHEAP)))
    llmock.add(Reply(tool_calls=(ToolCall("add", {"a": 2, "b": 3}),), match=_model(STRONG)))
    router = router_for(llmock, fast={"tool_calling": "json"})
    message = router.chat_model().bind_tools([ADD]).invoke("2+3?")
    assert message.tool_calls[0]["name"] == "add" and message.tool_calls[0]["args"] == {"a": 2, "b": 3}
    decision = message.response_metadata["steproute"]
    assert decision["tier"] == "strong" and decision["fallback_from"] == "fast"
    assert "MalformedResponse" in decision["reason"] and "nested deeper than" in decision["reason"]
    assert on_the_wire(llmock) == Counter({CHEAP: 1, STRONG: 1})


@pytest.mark.parametrize("stream, name", [(False, ""), (True, ""), (True, None)])  # llmock answers null only streamed
def test_a_native_tool_call_without_a_name_is_never_passed_on(llmock, stream, name):
    llmock.add(Reply(tool_calls=(ToolCall(name, {"a": 1}),), match=_model(CHEAP)))
    llmock.add(Reply(tool_calls=(ToolCall("add", {"a": 2, "b": 3}),), match=_model(STRONG)))
    llm = router_for(llmock).chat_model().bind_tools([ADD])
    if stream:
        chunks = list(llm.stream("2+3?"))
        message = chunks[0]
        for chunk in chunks[1:]:
            message = message + chunk
    else:
        message = llm.invoke("2+3?")
    assert [c["name"] for c in message.tool_calls] == ["add"] and not message.invalid_tool_calls
    decision = message.response_metadata["steproute"]
    assert decision["fallback_from"] == "fast" and "without a usable name" in decision["reason"]


def test_a_native_tool_call_without_a_name_and_no_fallback_is_typed(llmock):
    llmock.add(Reply(tool_calls=(ToolCall("", {"a": 1}),), times=None))
    router = StepRouter(RouterConfig(tiers=router_for(llmock).config.tiers, dispatch={"timeout": 10},
                                     default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"}))
    with pytest.raises(MalformedResponse, match="without a usable name") as info:
        router.complete(ask(), tools=[ADD])
    assert info.value.deployment == f"openai/{CHEAP}"


def test_a_stream_abandoned_over_http_is_billed(llmock, tmp_path):
    llmock.add(Reply(text=LONG, times=None))
    router = router_for(llmock, tmp_path, guards={"budgets": {"limits": {"acme": 10.0}}})
    stream = router.stream(ask(tenant="acme"))
    streamed = "".join(next(stream).content for _ in range(3))
    stream.close()

    async def cancelled() -> None:
        parts: list[str] = []

        async def consume() -> None:
            async for item in router.chat_model().astream("foxes?", config={"metadata": {"tenant": "acme"}}):
                parts.append(item.text)
                if len(parts) == 3:
                    await asyncio.sleep(10)

        task = asyncio.create_task(consume())
        while len(parts) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    router.decision_log.close()
    entries = read_log(tmp_path / "d.jsonl").decisions
    assert len(entries) == 2 and all(e["abandoned"] and e["usage_estimated"] for e in entries)
    assert all(0 < e["output_tokens"] < len(LONG) // 4 and e["cost_usd"] > 0 for e in entries)
    total, reserved = router.budget_store.usage("acme", router._budget.window()[0])
    assert total == pytest.approx(sum(e["cost_usd"] for e in entries)) and reserved == 0.0
    assert streamed in LONG


def _model(name: str) -> Any:
    from llmock.scenarios import Match

    return Match(model=name)
