"""The capability filter: a call goes only where it can be served (vision, audio input,
function calling, a JSON-schema response format, the context window)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import CapabilityError, ConfigError, RouterConfig, StepRequest, StepRouteError, StepRouter
from steproute.capabilities import Facts, facts_of, needs_of
from steproute.config import DeploymentConfig
from steproute.testing import FunctionTransport, TierCall

IMAGE = [{"role": "user", "content": [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
AUDIO = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]
TEXT = [{"role": "user", "content": "hello"}]
TOOL = {"type": "function", "function": {"name": "add", "description": "Add.",
                                         "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "City", "schema": {"type": "object", "properties": {}}}}


def tiers(fast: Any = "openai/gpt-3.5-turbo", standard: Any = "openai/gpt-4o-mini",
          strong: Any = "openai/gpt-4o") -> dict[str, Any]:
    def models(spec: Any) -> list[Any]:
        return spec if isinstance(spec, list) else [spec]

    return {"fast": {"models": models(fast)}, "standard": {"models": models(standard)},
            "strong": {"models": models(strong)}}


class Calls:
    """A transport that answers every call with its tier and model, and remembers the calls."""

    def __init__(self) -> None:
        self.calls: list[TierCall] = []

    def __call__(self, call: TierCall) -> str:
        self.calls.append(call)
        return f"{call.tier}:{call.model}"


def router_for(calls: Calls, tracer_provider: Any = None, **config: Any) -> StepRouter:
    config.setdefault("tiers", tiers())
    config.setdefault("default", "fast")
    return StepRouter(RouterConfig(**config), transport=FunctionTransport(calls), tracer_provider=tracer_provider)


# -- configuration ---------------------------------------------------------------------------------


def test_an_unknown_key_under_capabilities_is_a_config_error_naming_its_path():
    with pytest.raises(ConfigError) as caught:
        RouterConfig(tiers={"fast": {"models": [{"model": "openai/my-local", "capabilities": {"visoin": True}}]}},
                     default="fast")
    paths = [p.path for p in caught.value.problems]
    assert paths == ["tiers.fast.models[0].capabilities.visoin"]
    assert "vision" in str(caught.value)  # did you mean


def test_a_wrong_type_under_capabilities_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        RouterConfig(tiers={"fast": {"models": [{"model": "openai/my-local",
                                                 "capabilities": {"max_input_tokens": -5}}]}}, default="fast")
    assert [p.path for p in caught.value.problems] == ["tiers.fast.models[0].capabilities.max_input_tokens"]


def test_capabilities_are_not_sent_to_litellm():
    model = DeploymentConfig(model="openai/my-local", capabilities={"vision": True}, api_base="http://127.0.0.1:1")
    assert "capabilities" not in model.litellm_params()
    calls = Calls()
    router = router_for(calls, tiers={"fast": {"models": [{"model": "openai/my-local", "capabilities": {"vision": True}}]}})
    router.complete(StepRequest("s", IMAGE))
    assert "capabilities" not in calls.calls[0].params
    assert all("capabilities" not in d.params for d in router.deployments("fast"))


# -- facts and needs -------------------------------------------------------------------------------


def test_facts_come_from_litellm_and_the_override_wins():
    facts = facts_of(DeploymentConfig(model="openai/gpt-3.5-turbo"))
    assert (facts.vision, facts.tools, facts.response_schema, facts.max_input_tokens) == (False, True, False, 16385)
    assert facts.known
    override = facts_of(DeploymentConfig(model="openai/gpt-3.5-turbo", capabilities={"vision": True,
                                                                                     "max_input_tokens": 100}))
    assert (override.vision, override.max_input_tokens, override.max_output_tokens) == (True, 100, 4096)
    unknown = facts_of(DeploymentConfig(model="openai/my-local-model"))
    assert unknown == Facts() and not unknown.known


def test_what_a_call_needs():
    assert needs_of(IMAGE, {}).vision and not needs_of(IMAGE, {}).audio
    assert needs_of(AUDIO, {}).audio and not needs_of(AUDIO, {}).vision
    assert needs_of(TEXT, {"tools": [TOOL]}).tools
    assert not needs_of(TEXT, {"tools": [TOOL], "tool_choice": "none"}).tools
    assert needs_of(TEXT, {"response_format": SCHEMA_FORMAT}).response_schema
    assert not needs_of(TEXT, {"response_format": {"type": "json_object"}}).response_schema
    plain = needs_of(TEXT, {"max_tokens": 300})
    assert not (plain.vision or plain.audio or plain.tools or plain.response_schema)
    assert plain.output_tokens == 300


def test_the_token_estimate_counts_only_when_the_bound_does_not_fit():
    long = [{"role": "user", "content": "word " * 4000}]
    needs = needs_of(long, {})
    assert needs.fits(100_000)  # the cheap bound (UTF-8 bytes) fits: nothing counted
    assert needs.counted is None
    assert needs.fits(4_500)  # 20,000 bytes do not fit 4,500; about 4,000 tokens do
    assert needs.counted is not None and 3_900 <= needs.counted <= 4_200
    assert not needs.fits(3_000)
    fresh = needs_of(long, {})
    assert not fresh.fits(2_000) and fresh.counted is None  # more than 8 bytes a token: cannot fit, not counted


# -- routing ---------------------------------------------------------------------------------------


def test_an_image_goes_past_a_tier_that_cannot_see_and_the_reason_names_vision(caplog):
    calls = Calls()
    router = router_for(calls, tiers=tiers(standard="openai/gpt-3.5-turbo"))
    with caplog.at_level(logging.WARNING, logger="steproute"):
        result = router.complete(StepRequest("describe", IMAGE))
        router.complete(StepRequest("describe", IMAGE))
    assert result.decision.tier == "strong"
    assert [c.tier for c in calls.calls] == ["strong", "strong"]
    assert "needs vision: no deployment of 'fast' or 'standard' has it; tier 'strong'" in result.decision.reason
    told = [r.getMessage() for r in caplog.records if "needs vision" in r.getMessage()]
    assert len(told) == 1 and "'describe'" in told[0]


def test_a_plain_call_is_not_moved():
    calls = Calls()
    result = router_for(calls).complete(StepRequest("s", TEXT))
    assert result.decision.tier == "fast" and "needs" not in result.decision.reason


def test_the_capability_is_on_the_route_span():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router_for(Calls(), tracer_provider=provider).complete(StepRequest("describe", IMAGE))
    route = next(s for s in exporter.get_finished_spans() if s.name.startswith("route"))
    assert route.attributes["steproute.capability.needs"] == ("vision",)
    assert route.attributes["steproute.capability.skipped"] == ("fast",)
    assert "needs vision" in route.attributes["steproute.decision.reason"]


def test_no_capable_tier_raises_capability_error_before_any_call():
    calls = Calls()
    router = router_for(calls, tiers=tiers(standard="openai/gpt-3.5-turbo", strong="openai/gpt-3.5-turbo"))
    secret = "my password is hunter2"
    with pytest.raises(CapabilityError) as caught:
        router.complete(StepRequest("describe", [{"role": "user", "content": [
            {"type": "text", "text": secret}, *IMAGE[0]["content"][1:]]}]))
    assert calls.calls == []
    error = caught.value
    assert isinstance(error, StepRouteError)
    assert (error.step, error.capability, error.tiers) == ("describe", "vision", ("fast", "standard", "strong"))
    assert "needs vision" in str(error) and "'fast', 'standard', 'strong'" in str(error)
    assert "hunter2" not in str(error)


def test_max_tier_bounds_the_move():
    calls = Calls()
    router = router_for(calls, steps={"describe": {"policy": "fixed", "tier": "fast", "max_tier": "standard"}},
                        tiers=tiers(standard="openai/gpt-3.5-turbo"))
    with pytest.raises(CapabilityError) as caught:
        router.complete(StepRequest("describe", IMAGE))
    assert caught.value.tiers == ("fast", "standard")
    assert calls.calls == []


def test_a_tier_hint_cannot_move():
    from steproute import Hint

    calls = Calls()
    with pytest.raises(CapabilityError) as caught:
        router_for(calls).complete(StepRequest("describe", IMAGE, hint=Hint(tier="fast")))
    assert caught.value.tiers == ("fast",)
    assert "fixed" in str(caught.value)
    assert calls.calls == []


async def test_async_calls_are_filtered_too():
    calls = Calls()
    result = await router_for(calls).acomplete(StepRequest("describe", IMAGE))
    assert result.decision.tier == "standard"
    with pytest.raises(CapabilityError):
        await router_for(calls, tiers=tiers(standard="openai/gpt-3.5-turbo", strong="openai/gpt-3.5-turbo")
                         ).acomplete(StepRequest("describe", IMAGE))


def test_a_stream_is_filtered_too():
    calls = Calls()
    items = list(router_for(calls).stream(StepRequest("describe", IMAGE)))
    assert items[-1].decision.tier == "standard"
    assert [c.tier for c in calls.calls] == ["standard"]


def test_audio_needs_audio_input():
    calls = Calls()
    router = router_for(calls, tiers=tiers(strong={"model": "openai/gpt-4o", "capabilities": {"audio": True}}))
    assert router.complete(StepRequest("listen", AUDIO)).decision.tier == "strong"


def test_tools_need_function_calling_unless_the_tier_emulates_it():
    calls = Calls()
    no_tools = {"model": "openai/gpt-3.5-turbo", "capabilities": {"tools": False}}
    router = router_for(calls, tiers=tiers(fast=no_tools))
    result = router.complete(StepRequest("act", TEXT), tools=[TOOL])
    assert result.decision.tier == "standard"
    assert "needs function calling: no deployment of 'fast' has it" in result.decision.reason
    emulated = tiers(fast=no_tools)
    emulated["fast"]["tool_calling"] = "json"
    assert router_for(Calls(), tiers=emulated).complete(StepRequest("act", TEXT), tools=[TOOL]).decision.tier == "fast"


def test_a_json_schema_response_format_needs_schema_support_or_the_json_emulation():
    calls = Calls()
    result = router_for(calls).complete(StepRequest("extract", TEXT), response_format=SCHEMA_FORMAT)
    assert result.decision.tier == "standard"
    assert "needs a JSON-schema response format" in result.decision.reason
    emulated = tiers()
    emulated["fast"]["tool_calling"] = "json"
    result = router_for(Calls(), tiers=emulated).complete(StepRequest("extract", TEXT), response_format=SCHEMA_FORMAT)
    assert result.decision.tier == "fast"
    json_object = router_for(Calls()).complete(StepRequest("extract", TEXT), response_format={"type": "json_object"})
    assert json_object.decision.tier == "fast"


def test_a_long_conversation_moves_past_a_small_window():
    small = {"model": "openai/gpt-4o-mini", "capabilities": {"max_input_tokens": 1500}}
    calls = Calls()
    router = router_for(calls, tiers=tiers(fast=small))
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": "tell me more about it " * 20}
            for i in range(20)]
    result = router.complete(StepRequest("chat", long))
    assert result.decision.tier == "standard"
    assert "needs a context window of about" in result.decision.reason  # the window falls between the bounds: counted
    assert "no deployment of 'fast' has it" in result.decision.reason
    assert router.complete(StepRequest("chat", TEXT)).decision.tier == "fast"


def test_max_tokens_above_the_models_output_limit_moves_the_call():
    calls = Calls()
    result = router_for(calls).complete(StepRequest("write", TEXT), max_tokens=10_000)  # gpt-3.5-turbo: 4,096
    assert result.decision.tier == "standard"
    assert "max_tokens 10000" in result.decision.reason


def test_an_incapable_deployment_of_a_tier_is_skipped_and_the_tier_keeps_the_call():
    calls = Calls()
    router = router_for(calls, tiers=tiers(fast=["openai/gpt-3.5-turbo", "openai/gpt-4o-mini"]))
    result = router.complete(StepRequest("describe", IMAGE))
    assert result.decision.tier == "fast"
    assert [c.model for c in calls.calls] == ["openai/gpt-4o-mini"]
    assert result.decision.model == "openai/gpt-4o-mini"
    assert "needs vision: skipped openai/gpt-3.5-turbo of 'fast'" in result.decision.reason
    calls.calls.clear()
    router.complete(StepRequest("greet", TEXT))
    assert [c.model for c in calls.calls] == ["openai/gpt-3.5-turbo"]


def test_the_fallback_walk_skips_an_incapable_tier():
    seen: list[str] = []

    def answer(call: TierCall) -> str:
        seen.append(call.tier)
        if call.tier == "standard":
            raise TimeoutError("down")
        return "ok"

    router = StepRouter(RouterConfig(tiers=tiers(strong="openai/gpt-3.5-turbo"), default="fast",
                                     steps={"describe": {"policy": "fixed", "tier": "fast",
                                                         "tier_fallback": "stronger"}}),
                        transport=FunctionTransport(answer))
    with pytest.raises(StepRouteError):
        router.complete(StepRequest("describe", IMAGE))
    assert seen == ["standard"]  # 'strong' (gpt-3.5-turbo) cannot see: never called


def test_an_unknown_model_counts_as_capable_and_it_is_said_once(caplog):
    calls = Calls()
    with caplog.at_level(logging.WARNING, logger="steproute"):
        router = router_for(calls, tiers={"fast": {"models": ["openai/my-local-model"]}})
        router.complete(StepRequest("describe", IMAGE))
        router.complete(StepRequest("describe", IMAGE))
    assert [c.tier for c in calls.calls] == ["fast", "fast"]
    told = [r.getMessage() for r in caplog.records if "capabilit" in r.getMessage()]
    assert len(told) == 1 and "openai/my-local-model" in told[0] and "capabilities:" in told[0]


def test_a_full_override_is_not_warned_about(caplog):
    known = {"vision": False, "audio": False, "tools": True, "response_schema": True,
             "max_input_tokens": 8192, "max_output_tokens": 2048}
    with caplog.at_level(logging.WARNING, logger="steproute"):
        router_for(Calls(), tiers={"fast": {"models": [{"model": "openai/my-local-model", "capabilities": known}]},
                                   "strong": {"models": ["openai/gpt-4o"]}}).complete(StepRequest("s", IMAGE))
    assert not [r for r in caplog.records if "capabilit" in r.getMessage()]


# -- steproute check -------------------------------------------------------------------------------


def test_check_warns_when_a_steps_bounds_leave_it_no_tier_with_a_capability(tmp_path):
    from steproute.config_check import check_file

    path = tmp_path / "caps.yaml"
    path.write_text("tiers:\n  fast:\n    models: [{model: openai/gpt-3.5-turbo, capabilities: {tools: false}}]\n"
                    "  strong: {models: [openai/gpt-4o]}\n"
                    "default: fast\nsteps:\n  act: {policy: fixed, tier: fast, kind: tool_use, max_tier: fast}\n"
                    "  answer: {policy: fixed, tier: fast}\n")
    report = check_file(path)
    assert report.ok
    assert [(w.path, w.message) for w in report.warnings] == [
        ("steps.act.max_tier", "no tier within the step's bounds ('fast') has vision (calls with images): such calls "
                               "raise CapabilityError (tier 'strong' has it)"),
        ("steps.act.max_tier", "no tier within the step's bounds ('fast') has function calling (calls with tools): "
                               "such calls raise CapabilityError (tier 'strong' has it)"),
        ("steps.act.max_tier", "no tier within the step's bounds ('fast') has a JSON-schema response format: such "
                               "calls raise CapabilityError (tier 'strong' has it)"),
    ]


# -- pins ------------------------------------------------------------------------------------------


def test_a_capability_move_leaves_the_conversations_pin_on_its_own_tier_and_model():
    calls = Calls()
    router = router_for(calls)
    first = router.complete(StepRequest("chat", TEXT, thread="t-1"))
    assert first.decision.tier == "fast"
    pin = router.pin_store.get("t-1", "chat")
    assert (pin.tier, pin.model) == ("fast", "openai/gpt-3.5-turbo")
    moved = router.complete(StepRequest("chat", IMAGE, thread="t-1"))
    assert moved.decision.tier == "standard" and "needs vision" in moved.decision.reason
    after = router.pin_store.get("t-1", "chat")
    assert (after.tier, after.model) == ("fast", "openai/gpt-3.5-turbo")
    assert router.complete(StepRequest("chat", TEXT, thread="t-1")).decision.tier == "fast"


async def test_a_speculative_start_that_picks_a_tier_that_cannot_serve_the_call_skips_it():
    calls = Calls()
    router = router_for(calls, tiers=tiers(fast="openai/gpt-4o-mini", standard="openai/gpt-3.5-turbo"), steps={
        "describe": {"policy": "cascade", "tiers": ["fast", "standard", "strong"], "speculative": True,
                     "start": {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "standard"}],
                               "fallback": "fast"}}})
    request = StepRequest("describe", [{"role": "user", "content": [
        {"type": "text", "text": "prove it"}, *IMAGE[0]["content"][1:]]}])
    result = await router.acomplete(request)
    assert "standard" not in [c.tier for c in calls.calls]  # gpt-3.5-turbo cannot see
    assert result.decision.tier == "strong"
    assert "rules picked 'standard'" in result.decision.reason
    assert "it cannot serve the call: tier 'strong'" in result.decision.reason
