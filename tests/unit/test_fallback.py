"""Cross-tier fallback when every deployment of a step's tier fails (LiteLLM mock responses;
the fault matrix over real HTTP is tests/integration/test_fault_matrix.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import DispatchError, Hint, RouterConfig, StepRequest, StepRouter
from tests.conftest import mock_tiers

DOWN = "litellm.InternalServerError"  # LiteLLM's mock raises it


def tiers(*down: str) -> dict[str, Any]:
    t = mock_tiers()
    for name in down:
        t[name]["models"][0]["mock_response"] = DOWN
    return t


def ask(**kw: Any) -> StepRequest:
    return StepRequest("s", [{"role": "user", "content": "hi"}], **kw)


def test_a_tier_that_is_down_falls_back_to_the_next_stronger_one():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = StepRouter(RouterConfig(tiers=tiers("fast"), default="fast"), tracer_provider=provider)
    result = router.complete(ask())
    d = result.decision
    assert (d.tier, d.model, d.fallback_from) == ("standard", "openai/gpt-4.1-mini", "fast")
    assert "tier 'fast' failed (InternalServerError), fell back to 'standard'" in d.reason
    assert result.completion.content == "answer from standard"
    spans = exporter.get_finished_spans()
    (route,) = [s for s in spans if s.name == "route s"]
    chats = [(s.name, s.attributes.get("error.type")) for s in spans if s.name.startswith("chat ")]
    assert chats == [("chat openai/gpt-4o-mini", "InternalServerError"), ("chat openai/gpt-4.1-mini", None)]
    assert (route.attributes["steproute.tier"], route.attributes["steproute.fallback.from"]) == ("standard", "fast")


def test_next_stops_after_one_tier_and_stronger_goes_on():
    down2 = tiers("fast", "standard")
    with pytest.raises(DispatchError) as excinfo:
        StepRouter(RouterConfig(tiers=down2, default="fast")).complete(ask())
    assert excinfo.value.tiers == ("fast", "standard")
    assert [a.model for a in excinfo.value.attempts] == ["openai/gpt-4o-mini", "openai/gpt-4.1-mini"]
    router = StepRouter(RouterConfig(tiers=down2, default={"policy": "fixed", "tier": "fast", "tier_fallback": "stronger"}))
    assert router.complete(ask()).decision.tier == "advanced"


def test_fallback_never_leaves_the_steps_bounds():
    router = StepRouter(RouterConfig(tiers=tiers("fast"), default="fast"))
    with pytest.raises(DispatchError) as excinfo:
        router.complete(ask(hint=Hint(max_tier="fast")))
    assert excinfo.value.tiers == ("fast",)
    with pytest.raises(DispatchError):  # a tier hint fixes the tier
        router.complete(ask(hint=Hint(tier="fast")))
    none = StepRouter(RouterConfig(tiers=tiers("fast"), default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"}))
    with pytest.raises(DispatchError):
        none.complete(ask())
    top = StepRouter(RouterConfig(tiers=tiers("advanced"), default="advanced"))
    with pytest.raises(DispatchError) as excinfo:  # nothing above the strongest tier
        top.complete(ask())
    assert excinfo.value.tiers == ("advanced",)


def test_async_and_stream_fall_back_and_the_pin_stays():
    router = StepRouter(RouterConfig(tiers=tiers("fast"), default="fast"))
    assert asyncio.run(router.acomplete(ask())).decision.fallback_from == "fast"
    *chunks, summary = list(router.stream(ask(thread="t1")))
    assert "".join(c.content for c in chunks) == "answer from standard"
    assert (summary.decision.tier, summary.decision.fallback_from) == ("standard", "fast")
    assert router.pin_store.get("t1", "s").tier == "fast"  # the conversation's tier is still fast

    async def collect() -> list:
        return [item async for item in router.astream(ask())]

    assert asyncio.run(collect())[-1].decision.fallback_from == "fast"


def test_the_config_names_a_bad_fallback_mode():
    from steproute import ConfigError

    with pytest.raises(ConfigError, match=r"default\.tier_fallback"):
        RouterConfig(tiers=mock_tiers(), default={"policy": "fixed", "tier": "fast", "tier_fallback": "down"})


@pytest.mark.parametrize("mode", ["upgrade_only", "reevaluate"])
def test_a_fallback_tier_never_moves_the_pin_even_where_the_pin_mode_would(mode):
    """Under ``upgrade_only`` and ``reevaluate`` too, an answer that came from a fallback tier
    leaves the pin on the conversation's own tier, sync and async."""
    pinning = {"mode": mode, **({"after_turns": 1} if mode == "reevaluate" else {})}
    router = StepRouter(RouterConfig(tiers=tiers("fast"), default="fast", pinning=pinning))
    first = router.complete(ask(thread="t")).decision
    assert (first.tier, first.fallback_from, first.repinned) == ("standard", "fast", False)
    assert router.pin_store.get("t", "s").tier == "fast"
    second = asyncio.run(router.acomplete(ask(thread="t"))).decision
    assert (second.fallback_from, second.repinned) == ("fast", False)
    assert router.pin_store.get("t", "s").tier == "fast"
