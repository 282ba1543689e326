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
from steproute.guards import InMemoryBudgetStore
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


class WatchedBudgets(InMemoryBudgetStore):
    """The default budget store, remembering every (tenant, window) a call touched, so a test
    can read the whole budget state through the public ``usage`` API."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[tuple[str, int]] = set()

    def reserve(self, tenant: str, window: int, amount: float, limit: float) -> float | None:
        self.keys.add((tenant, window))
        return super().reserve(tenant, window, amount, limit)

    def settle(self, tenant: str, window: int, reserved: float, spent: float) -> None:
        self.keys.add((tenant, window))
        super().settle(tenant, window, reserved, spent)

    def state(self) -> dict[str, tuple[float, float]]:
        """``tenant -> (spent, reserved)`` summed over the windows calls have touched."""
        out: dict[str, tuple[float, float]] = {}
        for tenant, window in self.keys:
            spent, reserved = self.usage(tenant, window)
            old = out.get(tenant, (0.0, 0.0))
            out[tenant] = (old[0] + spent, old[1] + reserved)
        return out


@pytest.fixture(scope="module")
def router() -> StepRouter:
    return StepRouter(RouterConfig(**VALID), budget_store=WatchedBudgets())


def pins_and_budgets(router: StepRouter) -> tuple[Any, dict[str, tuple[float, float]]]:
    """Every pin a call of these tests could touch, and every tenant's budget."""
    assert isinstance(router.budget_store, WatchedBudgets)
    return router.pin_store.get("t-1", "s"), router.budget_store.state()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.one_of(st.lists(message, max_size=4), json_like),
       tenant=st.one_of(st.none(), st.just("acme"), st.integers()),
       thread=st.one_of(st.none(), st.just("t-1"), st.lists(st.integers(), max_size=2)))
def test_malformed_messages_are_value_errors_and_change_no_pin_or_budget(router, messages, tenant, thread):
    before = pins_and_budgets(router)
    try:
        request = StepRequest("s", messages, tenant=tenant, thread=thread)
    except ValueError as exc:
        assert "step 's'" in str(exc)
        assert pins_and_budgets(router) == before
        return
    try:
        result = router.complete(request)
    except StepRouteError:  # refused while routing or dispatching: nothing pinned, nothing spent
        assert pins_and_budgets(router) == before
        return
    assert result.completion.content == "ok"
    pin, budgets = pins_and_budgets(router)
    old_pin, old_budgets = before
    if thread == "t-1":  # the call follows the thread's pin, or made its first one
        if old_pin is not None:
            assert pin == old_pin and result.decision.pinned and result.decision.tier == old_pin.tier
        else:
            assert pin is not None and (pin.tier, pin.decision_id) == (result.decision.tier, result.decision.id)
    else:
        assert pin == old_pin
    if tenant == "acme":  # spent exactly what the call cost; no reservation left behind
        spent, reserved = budgets["acme"]
        old_spent, old_reserved = old_budgets.get("acme", (0.0, 0.0))
        assert result.cost_usd > 0
        assert spent == pytest.approx(old_spent + result.cost_usd, rel=1e-9, abs=1e-15)
        assert old_reserved == 0.0 and reserved == pytest.approx(0.0, abs=1e-15)
        budgets = {k: v for k, v in budgets.items() if k != "acme"}
        old_budgets = {k: v for k, v in old_budgets.items() if k != "acme"}
    assert budgets == old_budgets  # no other tenant's budget moved


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
