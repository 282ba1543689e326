"""Behaviour the call path must keep through refactors (issue 16, "One tier walk").

Each test here was written against a bug planted by hand in a copy of the code that the rest of
the suite let through; each asserts public behaviour only: the decision a call follows, the pin
in the public pin store, what LiteLLM was asked to send (read with a LiteLLM callback), and the
cost of a call to the last digit. The planted bug each one kills is named in its docstring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from steproute import DispatchError, Hint, RouterConfig, StepRequest, StepRouter
from steproute.pricing import Price, call_cost
from steproute.types import Usage
from tests.conftest import mock_tiers

DOWN = "litellm.InternalServerError"  # LiteLLM's mock_response raises it


def ask(text: str = "hi", **kw: Any) -> StepRequest:
    return StepRequest("s", [{"role": "user", "content": text}], **kw)


# -- min_tier / max_tier: the hint narrows the configuration's bounds, never replaces them -----

def bounded_router(tier: str = "fast", **bounds: str) -> StepRouter:
    """A step whose policy picks ``tier`` (a rule that never matches, then its fallback: a
    ``fixed`` tier outside its own entry's bounds is refused at load), held to ``bounds``."""
    never = [{"name": "never", "when": {"keywords": ["\x00never\x00"]}, "tier": tier}]
    return StepRouter(RouterConfig(tiers=mock_tiers(), default="fast",
                                   steps={"s": {"policy": "rules", "rules": never, "fallback": tier, **bounds}}))


def test_a_min_tier_hint_combines_with_the_configs_floor():
    """Planted bug: the ``min_tier`` hint replaced the configuration's ``min_tier`` (a weaker
    hint then lowered the floor the configuration set)."""
    router = bounded_router(min_tier="standard")
    assert router.decide(ask()).tier == "standard"
    weaker = router.decide(ask(hint=Hint(min_tier="fast")))
    assert weaker.tier == "standard", "a weaker min_tier hint lowered the configuration's floor"
    assert "raised to min_tier 'standard'" in weaker.reason
    stronger = router.decide(ask(hint=Hint(min_tier="advanced")))
    assert stronger.tier == "advanced"  # the stronger of the two floors holds
    routed = router.complete(ask(hint=Hint(min_tier="fast")))  # the call follows the same decision
    assert (routed.decision.tier, routed.completion.content) == ("standard", "answer from standard")


def test_a_max_tier_hint_combines_with_the_configs_ceiling():
    """The same for the ceiling: a looser hint never lifts the configuration's ``max_tier``."""
    router = bounded_router("advanced", max_tier="standard")
    assert router.decide(ask(hint=Hint(max_tier="advanced"))).tier == "standard"
    assert router.decide(ask(hint=Hint(max_tier="fast"))).tier == "fast"


# -- upgrade_only: a call on the pinned tier follows the pin; only a stronger one re-pins ------

def upgrade_only_router() -> StepRouter:
    rules = {"policy": "rules", "fallback": "fast",
             "rules": [{"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"}]}
    return StepRouter(RouterConfig(tiers=mock_tiers(), default="fast", steps={"s": rules},
                                   pinning={"mode": "upgrade_only"}))


def test_upgrade_only_keeps_the_pin_on_a_same_tier_call():
    """Planted bug: ``upgrade_only`` re-pinned when the policy chose the pinned tier again
    (``>=`` for ``>``): every call made a new pin, so the conversation never followed one."""
    router = upgrade_only_router()
    first = router.complete(ask(thread="t")).decision
    pin = router.pin_store.get("t", "s")
    assert (pin.tier, pin.decision_id) == ("fast", first.id)
    second = router.complete(ask("again", thread="t")).decision
    assert (second.tier, second.pinned, second.policy) == ("fast", True, "pin")
    assert router.pin_store.get("t", "s") == pin, "a same-tier call replaced the pin"
    upgraded = router.complete(ask("now prove it", thread="t")).decision
    assert (upgraded.tier, upgraded.pinned) == ("advanced", False)
    assert "upgraded from pinned tier 'fast'" in upgraded.reason
    assert router.pin_store.get("t", "s").decision_id == upgraded.id
    after = router.complete(ask("thanks", thread="t")).decision  # a weaker choice follows the upgraded pin
    assert (after.tier, after.pinned) == ("advanced", True)
    assert router.pin_store.get("t", "s").decision_id == upgraded.id


def test_upgrade_only_keeps_the_pin_on_a_same_tier_async_call():
    router = upgrade_only_router()
    first = asyncio.run(router.acomplete(ask(thread="t"))).decision
    second = asyncio.run(router.acomplete(ask("again", thread="t"))).decision
    assert second.pinned and router.pin_store.get("t", "s").decision_id == first.id


# -- tier_fallback: stronger walks the stronger tiers cheapest first ---------------------------

def down(*names: str) -> dict[str, Any]:
    tiers = mock_tiers()
    for name in names:
        tiers[name]["models"][0]["mock_response"] = DOWN
    return tiers


def stronger_router(*down_tiers: str) -> StepRouter:
    return StepRouter(RouterConfig(tiers=down(*down_tiers), default={"policy": "fixed", "tier": "fast",
                                                                     "tier_fallback": "stronger"}))


def test_stronger_fallback_tries_the_next_stronger_tier_first():
    """Planted bug: ``tier_fallback: stronger`` tried the strongest tier first (it answered at
    the top price while a cheaper tier was up)."""
    result = stronger_router("fast").complete(ask())
    assert (result.decision.tier, result.decision.fallback_from) == ("standard", "fast")
    assert result.completion.content == "answer from standard"
    assert "fell back to 'standard'" in result.decision.reason


def test_stronger_fallback_walks_every_tier_in_order_when_all_are_down():
    with pytest.raises(DispatchError) as excinfo:
        stronger_router("fast", "standard", "advanced").complete(ask())
    assert excinfo.value.tiers == ("fast", "standard", "advanced")
    assert [a.model for a in excinfo.value.attempts] == ["openai/gpt-4o-mini", "openai/gpt-4.1-mini", "openai/gpt-4o"]


def test_stronger_fallback_streams_from_the_next_stronger_tier():
    *chunks, summary = list(stronger_router("fast").stream(ask()))
    assert "".join(c.content for c in chunks) == "answer from standard"
    assert summary.decision.tier == "standard"


# -- cost: exact arithmetic, no rounding that hides small calls --------------------------------

TINY_IN, TINY_OUT = 1.3e-10, 7.7e-10  # USD per token: a call costs well under $0.000001


def test_call_cost_keeps_every_digit_of_a_tiny_price():
    """Planted bug: costs rounded to 6 decimals (every call under $0.0000005 became $0)."""
    usage = Usage(input_tokens=3, output_tokens=2)
    assert call_cost(Price(TINY_IN, TINY_OUT), usage) == pytest.approx(3 * TINY_IN + 2 * TINY_OUT, rel=1e-9)
    cached = Usage(input_tokens=10, output_tokens=1, cache_read_tokens=4)
    expected = 6 * TINY_IN + 4 * 1e-11 + 1 * TINY_OUT
    assert call_cost(Price(TINY_IN, TINY_OUT, cache_read=1e-11), cached) == pytest.approx(expected, rel=1e-9)


def test_a_routed_calls_cost_and_baseline_are_exact_at_tiny_prices():
    tiers = mock_tiers(input_cost_per_token=TINY_IN, output_cost_per_token=TINY_OUT)
    tiers["advanced"]["models"][0].update(input_cost_per_token=TINY_IN * 3, output_cost_per_token=TINY_OUT * 3)
    router = StepRouter(RouterConfig(tiers=tiers, default="fast"))
    result = router.complete(ask("what is the capital of France?"))
    usage = result.completion.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    expected = usage.input_tokens * TINY_IN + usage.output_tokens * TINY_OUT
    assert result.cost_usd == pytest.approx(expected, rel=1e-9)
    assert result.baseline_cost_usd == pytest.approx(3 * expected, rel=1e-9)
    message = router.chat_model().invoke("what is the capital of France?")
    meta = message.response_metadata["steproute"]
    assert meta["cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert meta["baseline_cost_usd"] == pytest.approx(3 * expected, rel=1e-9)


# -- chat_model parameters: what reaches LiteLLM, not what the model object holds -------------

@pytest.fixture
def sent() -> Iterator[list[dict[str, Any]]]:
    """The optional parameters LiteLLM was asked to send, one dict per call (a LiteLLM callback)."""
    from litellm.integrations.custom_logger import CustomLogger

    from steproute._litellm import litellm

    calls: list[dict[str, Any]] = []

    class Recorder(CustomLogger):
        def log_pre_api_call(self, model: str, messages: Any, kwargs: dict[str, Any]) -> None:
            calls.append(dict(kwargs.get("optional_params") or {}))

    module = litellm()
    recorder = Recorder()
    module.callbacks.append(recorder)
    try:
        yield calls
    finally:
        module.callbacks.remove(recorder)


def test_chat_model_fields_reach_litellm(make_router, sent):
    """Planted bug: ``chat_model(temperature=..., max_tokens=..., model_kwargs={"seed": ...})``
    never reached the provider (the old test read back the model's private params)."""
    llm = make_router().chat_model(temperature=0.2, max_tokens=5, model_kwargs={"seed": 7})
    assert llm.invoke("x").content == "answer from fast"
    assert asyncio.run(llm.ainvoke("x")).content == "answer from fast"
    assert "".join(c.content for c in llm.stream("x")) == "answer from fast"
    assert len(sent) == 3
    for params in sent:
        assert (params.get("temperature"), params.get("max_tokens"), params.get("seed")) == (0.2, 5, 7), params


def test_call_kwargs_override_the_chat_models_fields_on_the_wire(make_router, sent):
    llm = make_router().chat_model(temperature=0.2, max_tokens=5)
    llm.invoke("x", temperature=0.9, seed=11, stop=["END"])
    (params,) = sent
    assert (params.get("temperature"), params.get("max_tokens"), params.get("seed")) == (0.9, 5, 11)
    assert params.get("stop") == ["END"]
