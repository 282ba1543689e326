"""Tests that kill mutmut mutants of steproute/pricing.py (see docs/architecture.md, "Mutation testing").

Each asserts what a deployment is priced at, or the exact warning said about it, with LiteLLM's
real price map (``LITELLM_LOCAL_MODEL_COST_MAP=True``: the map shipped with the pinned LiteLLM).
"""

from __future__ import annotations

import logging

import pytest

from steproute import RouterConfig
from steproute.config import DeploymentConfig
from steproute.pricing import Price, call_cost, estimate_usage, in_price_map, price_of
from steproute.types import Usage

WARNING = ("steproute: no price for {} in LiteLLM's price map and no override in the config; "
           "its calls are counted at $0")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "steproute" and r.levelno == logging.WARNING]


def test_both_overrides_win_without_asking_litellm():
    # an unknown model with both prices given is priced at them, known, and without a warning
    assert price_of(DeploymentConfig(model="acme/not-a-model", input_cost_per_token=1e-6,
                                     output_cost_per_token=3e-6)) == Price(1e-6, 3e-6, None, True)


@pytest.mark.parametrize(("given", "expected"), [
    ({"input_cost_per_token": 1e-6}, Price(1e-6, 6e-7, None, True)),
    ({"output_cost_per_token": 2e-6}, Price(1.5e-7, 2e-6, 7.5e-8, True)),
])
def test_one_override_takes_the_other_price_from_the_map(given, expected, caplog):
    """An input override drops the map's cached-input price (it was the map's input price's)."""
    with caplog.at_level(logging.WARNING, logger="steproute"):
        assert price_of(DeploymentConfig(model="openai/gpt-4o-mini", **given)) == expected
    assert warnings(caplog) == []


def test_a_mapped_model_is_priced_from_the_map_with_its_cached_input_price():
    assert price_of(DeploymentConfig(model="openai/gpt-4o-mini")) == Price(1.5e-7, 6e-7, 7.5e-8, True)
    assert price_of(DeploymentConfig(model="ollama/llama3")) == Price(0.0, 0.0, None, True)  # listed, free


def _listed_under_another_name(input_priced: bool) -> tuple[str, dict]:
    """A model of LiteLLM's map (of whichever LiteLLM is installed) priced for input only or for
    output only, and LiteLLM prices it under its upper-cased name, which the map does not list."""
    import litellm

    for name, info in litellm.model_cost.items():
        given_in, given_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
        if not (given_in if input_priced else given_out) or (given_out if input_priced else given_in):
            continue
        if name.upper() in litellm.model_cost or in_price_map(name.upper()):
            continue
        try:
            found = litellm.get_model_info(name.upper())
        except Exception:
            continue
        if found.get("input_cost_per_token") == given_in and found.get("output_cost_per_token") == given_out:
            return name.upper(), found
    pytest.fail("no model of LiteLLM's map is priced for one direction only under another name")


def test_a_model_litellm_prices_under_another_name_is_known(caplog):
    with caplog.at_level(logging.WARNING, logger="steproute"):
        assert price_of(DeploymentConfig(model="openai/GPT-4o-mini")) == Price(1.5e-7, 6e-7, 7.5e-8, True)
    assert warnings(caplog) == []


@pytest.mark.parametrize("input_priced", [True, False], ids=["input price only", "output price only"])
def test_a_model_priced_one_way_under_another_name_is_known_with_the_other_price_zero(input_priced, caplog):
    model, info = _listed_under_another_name(input_priced)
    cache = info.get("cache_read_input_token_cost")
    expected = Price(float(info.get("input_cost_per_token") or 0.0), float(info.get("output_cost_per_token") or 0.0),
                     float(cache) if cache is not None else None, True)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        assert price_of(DeploymentConfig(model=model)) == expected
    assert warnings(caplog) == []
    assert (expected.input > 0) is input_priced and (expected.output > 0) is not input_priced


@pytest.mark.parametrize(("given", "expected"), [
    ({}, Price(0.0, 0.0, None, False)),
    ({"input_cost_per_token": 1e-6}, Price(1e-6, 0.0, None, False)),
    ({"output_cost_per_token": 2e-6}, Price(0.0, 2e-6, None, False)),
])
def test_an_unknown_model_is_priced_at_zero_or_its_one_override_and_said_once(given, expected, caplog):
    # "ollama/..." is one of the providers LiteLLM answers $0 for, for any name
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for model in ("ollama/not-a-model-xyz", "acme/not-a-model"):
            assert price_of(DeploymentConfig(model=model, **given)) == expected
    assert warnings(caplog) == [WARNING.format("ollama/not-a-model-xyz"), WARNING.format("acme/not-a-model")]


def test_the_warning_names_the_place_of_a_model_from_the_environment(monkeypatch, caplog):
    monkeypatch.setenv("STEPROUTE_MUTANT_MODEL", "acme/secret-model-1d2c")
    config = RouterConfig(tiers={"fast": {"models": ["${STEPROUTE_MUTANT_MODEL}"]}}, default="fast")
    deployment = config.tiers["fast"].models[0]
    with caplog.at_level(logging.WARNING, logger="steproute"):
        assert price_of(deployment, "tiers.fast.models[0]").known is False
        price_of(deployment)
    assert warnings(caplog) == [WARNING.format("tiers.fast.models[0] (a model name from the environment)"),
                                WARNING.format("the deployment (a model name from the environment)")]


@pytest.mark.parametrize(("model", "listed"), [
    ("openai/gpt-4o-mini", True), ("gpt-4o-mini", True), ("ollama/llama3", True),
    ("openai/GPT-4o-mini", False), ("ollama/not-a-model-xyz", False), ("acme/openai/gpt-4o-mini", False),
    ("not-a-model", False),
])
def test_in_price_map_with_or_without_the_provider_prefix(model, listed):
    assert in_price_map(model) is listed


def test_estimate_usage_counts_with_the_tokenizer_once_per_choice():
    messages = [{"role": "user", "content": "hi"}]
    one = estimate_usage("openai/gpt-4o-mini", messages, "Hello there")
    assert (one.input_tokens, one.output_tokens) == (8, 2)
    assert estimate_usage("openai/gpt-4o-mini", messages, "Hello there", choices=3) == Usage(8, 6)
    assert estimate_usage("openai/gpt-4o-mini", messages, "", choices=3) == Usage(8, 0)
    assert estimate_usage("openai/gpt-4o-mini", messages, "Hello there", choices=0) == Usage(8, 2)


def test_estimate_usage_of_content_the_tokenizer_cannot_count():
    # an object LiteLLM's counter rejects: about 3 characters a token, plus one
    messages = [{"role": "user", "content": [{"type": "mystery", "x": 1}]}]
    usage = estimate_usage("openai/gpt-4o-mini", messages, "Hello there")
    assert usage.input_tokens == len(str(messages[0]["content"])) // 3 + 1
    assert estimate_usage("openai/gpt-4o-mini", [{"role": "user"}], "") .input_tokens >= 1


def test_call_cost_prices_cached_input_at_the_cache_price_and_never_more_than_the_input():
    price = Price(1e-6, 2e-6, cache_read=1e-7)
    assert call_cost(price, Usage(100, 10, cache_read_tokens=40)) == pytest.approx(60e-6 + 4e-6 + 20e-6, abs=0)
    assert call_cost(price, Usage(100, 10, cache_read_tokens=400)) == round(100 * 1e-7 + 10 * 2e-6, 12)
    assert call_cost(Price(1e-6, 2e-6), Usage(100, 10, cache_read_tokens=40)) == round(100e-6 + 20e-6, 12)


def test_call_cost_is_rounded_to_whole_picodollars():
    """Twelve decimals: float noise below a picodollar never shows in a cost or a sum of costs."""
    assert call_cost(Price(1.23456789012345e-6, 0.0), Usage(1000, 0)) == 0.00123456789
    assert call_cost(Price(0.1, 0.2), Usage(1, 1)) == 0.3
