"""Bad input, generated (hypothesis): configurations, messages and run metadata.

Every malformed input must end in a ``ConfigError`` or ``ValueError`` with a message that names
the field. None may crash the router with another exception, put a secret in a message, or
change a pin or a budget.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steproute import ConfigError, RouterConfig, StepRequest, StepRouter, load_config
from steproute.errors import StepRouteError
from tests.conftest import mock_tiers

SECRET = "sk-live-7f3c9a1b2d4e6f80"
VALID: dict[str, Any] = {
    "tiers": {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_key": SECRET, "mock_response": "ok"}]},
              "strong": {"models": [{"model": "openai/gpt-4o", "api_key": SECRET, "mock_response": "ok"}]}},
    "default": "fast",
    "steps": {"plan": {"policy": "rules", "rules": [{"when": {"keywords": ["prove"]}, "tier": "strong"}]}},
    "pinning": {"mode": "sticky"},
    "guards": {"budgets": {"limits": {"acme": 1.0}}},
}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.just(SECRET))
json_like = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
PATHS = [("tiers",), ("tiers", "fast"), ("tiers", "fast", "models"), ("tiers", "fast", "models", 0),
         ("tiers", "fast", "models", 0, "model"), ("tiers", "fast", "models", 0, "input_cost_per_token"),
         ("default",), ("steps",), ("steps", "plan"), ("steps", "plan", "rules"), ("steps", "plan", "rules", 0, "when"),
         ("steps", "plan", "rules", 0, "tier"), ("pinning",), ("pinning", "mode"), ("dispatch",), ("baseline",),
         ("guards",), ("guards", "budgets", "limits"), ("guards", "pii"), ("steps", "plan", "policy")]


def mutated(path: tuple, value: Any) -> dict[str, Any]:
    config = copy.deepcopy(VALID)
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=json_like)
def test_a_broken_config_is_a_config_error_that_names_the_field_and_hides_secrets(path, value):
    try:
        RouterConfig(**mutated(path, value))
    except ConfigError as exc:
        text = str(exc)
        assert exc.problems and all(p.path or p.message for p in exc.problems)
        assert SECRET not in text and SECRET not in repr(exc)
        assert str(path[0]) in text
    # a mutation that happens to be valid is fine: it must simply not raise anything else


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.text(max_size=12), json_like, max_size=6))
def test_any_top_level_mapping_is_accepted_or_a_config_error(data):
    try:
        RouterConfig(**data)
    except ConfigError as exc:
        assert SECRET not in str(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_file_text_loads_or_is_a_config_error(tmp_path, text):
    path = tmp_path / "steproute.yaml"
    path.write_text(text + f"\n# {SECRET}\n", encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert SECRET not in str(exc)


content = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.binary(max_size=5),
                    st.lists(st.one_of(st.text(max_size=10), st.integers(), st.dictionaries(st.text(max_size=5),
                                                                                            st.text(max_size=5))),
                             max_size=3),
                    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "robot", "", None, 3]),
                           "content": content}),
    json_like)


@pytest.fixture(scope="module")
def router() -> StepRouter:
    return StepRouter(RouterConfig(**VALID))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.one_of(st.lists(message, max_size=4), json_like),
       tenant=st.one_of(st.none(), st.just("acme"), st.integers()),
       thread=st.one_of(st.none(), st.just("t-1"), st.lists(st.integers(), max_size=2)))
def test_malformed_messages_are_value_errors_and_change_no_pin_or_budget(router, messages, tenant, thread):
    window = router._budget.window()[0]
    before = (router.pin_store.get("t-1", "s"), router.budget_store.usage("acme", window))
    try:
        request = StepRequest("s", messages, tenant=tenant, thread=thread)
    except ValueError as exc:
        assert "step 's'" in str(exc)
        assert (router.pin_store.get("t-1", "s"), router.budget_store.usage("acme", window)) == before
        return
    try:
        result = router.complete(request)
    except StepRouteError:
        return
    assert result.completion.content == "ok"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(declared=st.one_of(json_like, st.dictionaries(
    st.sampled_from(["step", "tier", "min_tier", "max_tier", "pin", "pin_group", "kind"]),
    st.one_of(st.text(max_size=8), st.sampled_from(["fast", "strong"]), st.integers(), st.lists(st.text(max_size=3))),
    max_size=4)), tenant=json_like)
def test_malformed_run_metadata_is_a_clear_error_or_is_routed(router, declared, tenant):
    model = router.chat_model()
    try:
        message = model.invoke("hello", config={"metadata": {"steproute": declared, "tenant": tenant}})
    except (ValueError, StepRouteError) as exc:
        assert SECRET not in str(exc)
        return
    assert message.content == "ok"
    assert message.response_metadata["steproute"]["tier"] in ("fast", "strong")


def test_a_routed_call_with_a_bad_tier_hint_leaves_the_pin_alone():
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"))
    router.complete(StepRequest("s", [{"role": "user", "content": "hi"}], thread="t"))
    pin = router.pin_store.get("t", "s")
    from steproute import Hint, RoutingError

    with pytest.raises(RoutingError, match="'gold' is not a tier"):
        router.complete(StepRequest("s", [{"role": "user", "content": "hi"}], thread="t", hint=Hint(tier="gold")))
    with pytest.raises(ValueError, match="hint tier must be a tier name"):
        Hint(tier=["fast"])  # type: ignore[arg-type]
    assert router.pin_store.get("t", "s") == pin
