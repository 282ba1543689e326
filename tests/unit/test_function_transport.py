"""The public test double (steproute.testing.FunctionTransport): a graph routed without a server,
with the real walk, pins, spans and costs above it."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import DispatchError, RouterConfig, StepRequest, StepRouter
from steproute.completions import ToolCall
from steproute.testing import FunctionTransport, Reply, TierCall

TIERS = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_key": "sk-fast"},
                             {"model": "anthropic/claude-haiku-4-5", "api_key": "sk-haiku"}]},
         "strong": {"models": [{"model": "openai/gpt-4o", "api_key": "sk-strong"}]}}
HI = [{"role": "user", "content": "How much are 3 notebooks at 4.50?"}]


def test_the_tiers_next_deployment_answers_when_the_first_fails_and_the_attempt_is_recorded():
    def answer(call: TierCall) -> str:
        if call.model == "openai/gpt-4o-mini":
            raise TimeoutError("slow")
        return f"answered by {call.model}"

    transport = FunctionTransport(answer)
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=transport)
    result = router.complete(StepRequest("calc", HI))
    assert (result.decision.tier, result.decision.model) == ("fast", "anthropic/claude-haiku-4-5")
    assert [(a.model, a.error_type) for a in result.completion.failed_attempts] == [("openai/gpt-4o-mini", "TimeoutError")]
    assert [(c.tier, c.deployment) for c in transport.calls] == [("fast", 0), ("fast", 1)]
    assert result.cost_usd > 0 and result.baseline_cost_usd > result.cost_usd  # priced at each deployment's price


def test_a_tier_whose_every_deployment_fails_falls_back_and_the_span_says_so():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), tracer_provider=provider,
                        transport=FunctionTransport(lambda call: "42" if call.tier == "strong" else 1 / 0))
    result = router.complete(StepRequest("calc", HI))
    assert (result.decision.tier, result.decision.fallback_from) == ("strong", "fast")
    assert "fell back to 'strong'" in result.decision.reason
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert [s.attributes.get("error.type") for s in chats] == ["ZeroDivisionError", "ZeroDivisionError", None]


def test_no_tier_answers_raises_the_walks_error_naming_each_tier():
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=FunctionTransport(lambda call: 1 / 0))
    with pytest.raises(DispatchError) as raised:
        router.complete(StepRequest("calc", HI))
    assert raised.value.tiers == ("fast", "strong") and len(raised.value.attempts) == 3


def test_a_cascade_rejects_a_hedged_answer_and_carries_its_cost():
    answers = {"fast": "I'm not sure, I cannot say.", "strong": "13.50 EUR"}
    config = RouterConfig(tiers=TIERS, default="fast", steps={"calc": {
        "policy": "cascade", "tiers": ["fast", "strong"], "signals": [{"signal": "hedging"}]}})
    router = StepRouter(config, transport=FunctionTransport(lambda call: answers[call.tier]))
    result = router.complete(StepRequest("calc", HI))
    first, last = result.decision.cascade
    assert (first.tier, first.accepted, last.tier, result.completion.content) == ("fast", False, "strong", "13.50 EUR")
    assert result.cost_usd == pytest.approx(first.cost_usd + result.completion.cost_usd)


def test_tool_calls_and_streams_come_through_the_real_layers():
    call = ToolCall("call_1", "price_of", json.dumps({"product": "notebook"}))
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"),
                        transport=FunctionTransport(lambda c: Reply(tool_calls=[call]) if c.params.get("tools") else
                                                    "three notebooks cost 13.50 EUR"))
    llm = router.chat_model(step="calc")
    tool = {"type": "function", "function": {"name": "price_of", "parameters": {"type": "object", "properties": {}}}}
    message = llm.bind_tools([tool]).invoke("price of a notebook?")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("price_of", {"product": "notebook"})]
    pieces = [c.content for c in llm.stream("and three?")]
    assert len(pieces) > 3 and "".join(pieces) == "three notebooks cost 13.50 EUR"


def test_an_async_handler_answers_async_calls():
    async def answer(call: TierCall) -> str:
        await asyncio.sleep(0)
        return "async answer"

    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=FunctionTransport(answer))
    result = asyncio.run(router.acomplete(StepRequest("calc", HI)))
    assert result.completion.content == "async answer"
    with pytest.raises(DispatchError):  # a sync call cannot await it: the tier fails, loudly
        router.complete(StepRequest("calc", HI))


def test_a_handler_that_raises_a_provider_refusal_fails_the_whole_tier_with_it():
    from steproute import ProviderAuthError
    from steproute.errors import Attempt, ProviderFailure

    def answer(call: TierCall) -> str:
        if call.tier == "fast":
            failure = ProviderFailure("auth", "AuthenticationError", "Incorrect API key provided.")
            raise ProviderAuthError(call.step, call.tier, (Attempt(call.model, "AuthenticationError", "openai",
                                                                   kind="auth"),),
                                    deployment=call.model, provider="openai", failure=failure)
        return "42"

    transport = FunctionTransport(answer)
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=transport)
    with pytest.raises(ProviderAuthError):  # a refusal does not fall back unless fallback_on lists it
        router.complete(StepRequest("calc", HI))
    assert [c.deployment for c in transport.calls] == [0]  # the tier's second deployment was not tried
    lenient = StepRouter(RouterConfig(tiers=TIERS, default={"policy": "fixed", "tier": "fast", "fallback_on": ["auth"]}),
                         transport=FunctionTransport(answer))
    assert lenient.complete(StepRequest("calc", HI)).decision.fallback_from == "fast"


def test_a_cascade_that_cannot_ask_a_model_for_logprobs_says_so_on_the_reason_and_once_in_the_log(caplog):
    tiers = {"fast": {"models": [{"model": "anthropic/claude-haiku-4-5", "api_key": "sk-haiku"}]},
             "strong": {"models": [{"model": "openai/gpt-4o", "api_key": "sk-strong"}]}}
    config = RouterConfig(tiers=tiers, default="fast", steps={"calc": {
        "policy": "cascade", "tiers": ["fast", "strong"],
        "signals": [{"signal": "hedging"}, {"signal": "logprob", "threshold": 0.7}]}})
    transport = FunctionTransport(lambda call: "13.50 EUR")
    router = StepRouter(config, transport=transport)
    with caplog.at_level("WARNING", logger="steproute"):
        first = router.complete(StepRequest("calc", HI))
        router.complete(StepRequest("calc", HI))
    assert "logprobs" not in transport.calls[0].params  # Anthropic refuses the parameter
    assert "logprob signal: tier 'fast' (anthropic/claude-haiku-4-5) does not take logprobs" in first.decision.reason
    assert sum("does not take logprobs" in r.getMessage() for r in caplog.records) == 1
