"""The ``bandit`` policy: a step's tier learned online from ``feedback()`` within guard rails."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from steproute.config import RouterConfig
from steproute.errors import ConfigError
from steproute.policies.bandit import BanditPolicy, BanditStore, share_bandit_store
from steproute.router import StepRouter
from steproute.types import Decision, Hint, StepRequest

TIERS = ("fast", "mid", "strong")


def _config(**bandit: Any) -> RouterConfig:
    tiers = {name: {"models": [{"model": model, "mock_response": "ok", "input_cost_per_token": price,
                                "output_cost_per_token": price}]}
             for name, model, price in (("fast", "openai/gpt-4o-mini", 1e-7), ("mid", "openai/gpt-4.1-mini", 1e-6),
                                        ("strong", "openai/gpt-4o", 1e-5))}
    return RouterConfig(tiers=tiers, default="fast", steps={"answer": {"policy": "bandit", **bandit}})


def _request(hint: Hint | None = None) -> StepRequest:
    return StepRequest("answer", [{"role": "user", "content": "hi"}], hint=hint or Hint())


def teach(bandit: BanditPolicy, tier: str, quality: float, times: int, step: str = "answer") -> None:
    """``times`` decisions of ``step`` at ``tier``, each rated ``quality`` (what the bandit learns from)."""
    for i in range(times):
        decision = Decision(step=step, kind=None, tier=tier, model="m", policy="bandit", reason="",
                            id=f"{step}-{tier}-{quality}-{i}-{time.monotonic_ns()}")
        bandit.decided(decision)
        assert bandit.learn({"type": "feedback", "id": decision.id, "quality": quality})


def test_feedback_updates_the_posterior_of_the_decisions_step_and_tier():
    bandit = BanditPolicy(TIERS)
    assert bandit.posterior("answer")["mid"] == (1.0, 1.0)
    teach(bandit, "mid", 1.0, 3)
    teach(bandit, "mid", 0.25, 1)
    assert bandit.posterior("answer")["mid"] == (1.0 + 3.25, 1.0 + 0.75)
    assert bandit.posterior("answer")["fast"] == (1.0, 1.0)
    assert bandit.posterior("other")["mid"] == (1.0, 1.0)  # per step


def test_feedback_for_a_decision_it_did_not_make_is_not_learnt_unless_named():
    bandit = BanditPolicy(TIERS)
    assert not bandit.learn({"type": "feedback", "id": "unknown", "quality": 1.0})
    bandit.decided(Decision(step="answer", kind=None, tier="fast", model="m", policy="fixed", reason="", id="x"))
    assert not bandit.learn({"type": "feedback", "id": "x", "quality": 1.0})  # another policy decided it
    assert bandit.learn({"type": "feedback", "id": "elsewhere", "quality": 1.0, "step": "answer", "tier": "strong"})
    assert bandit.posterior("answer")["strong"] == (2.0, 1.0)


def test_feedback_counts_once_per_decision():
    bandit = BanditPolicy(TIERS)
    bandit.decided(Decision(step="answer", kind=None, tier="fast", model="m", policy="bandit", reason="", id="d"))
    assert bandit.learn({"id": "d", "quality": 1.0})
    assert not bandit.learn({"id": "d", "quality": 1.0})
    assert bandit.posterior("answer")["fast"] == (2.0, 1.0)


def test_exploitation_takes_the_best_posterior_mean():
    bandit = BanditPolicy(TIERS, explore=0.0, seed=3)
    teach(bandit, "fast", 0.0, 20)
    teach(bandit, "mid", 1.0, 20)
    teach(bandit, "strong", 0.5, 20)
    choices = {bandit.choose(_request()).tier for _ in range(200)}
    assert choices == {"mid"}


def test_the_reward_takes_cost_off_quality():
    bandit = BanditPolicy(TIERS, explore=0.0, costs={"fast": 0.0, "mid": 0.0, "strong": 0.01}, cost_weight=50)
    teach(bandit, "strong", 1.0, 30)
    teach(bandit, "mid", 0.9, 30)
    assert bandit.choose(_request()).tier == "mid"  # strong's 0.97 − 0.5 is below mid's 0.88


def test_the_explored_share_never_goes_over_the_cap_in_1000_decisions():
    bandit = BanditPolicy(TIERS, explore=0.1, seed=7)  # flat posteriors: the draws want to explore 2 calls in 3
    explored = 0
    for calls in range(1, 1001):
        choice = bandit.choose(_request())
        explored += choice.reason.startswith("bandit explore")
        assert explored <= 0.1 * calls
    assert explored >= 90  # the cap is used, not just respected


def test_reason_says_explore_or_exploit_with_the_posterior_means():
    bandit = BanditPolicy(("fast", "strong"), explore=1.0, seed=1)
    teach(bandit, "fast", 1.0, 3)
    reasons = [bandit.choose(_request()).reason for _ in range(300)]
    explore = [r for r in reasons if r.startswith("bandit explore 'strong'")]
    exploit = [r for r in reasons if r.startswith("bandit exploit 'fast'")]
    assert explore and exploit and len(explore) + len(exploit) == 300
    assert "means fast 0.800 (n=3), strong 0.500 (n=0)" in explore[0]
    assert "over exploit 'fast'" in explore[0]


def test_a_capped_exploration_is_said_on_the_reason_and_once_in_the_log(caplog):
    bandit = BanditPolicy(("fast", "strong"), explore=0.0, seed=1)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        reasons = [bandit.choose(_request()).reason for _ in range(50)]
    stopped = [r for r in reasons if "exploration of 'strong' stopped" in r]
    assert stopped and all(r.startswith("bandit exploit 'fast'") for r in stopped)
    assert "over the cap 0.0%" in stopped[0]
    assert sum("exploration of 'strong' stopped" in m for m in caplog.messages) == 1


def test_the_budget_stops_exploration_and_says_so():
    bandit = BanditPolicy(("fast", "strong"), explore=1.0, costs={"fast": 0.0, "strong": 0.01},
                          budget_usd_per_day=0.03, seed=2)
    teach(bandit, "fast", 1.0, 2)
    choices = [bandit.choose(_request()) for _ in range(200)]
    assert sum(c.tier == "strong" for c in choices) == 3  # three explorations at $0.01 extra each
    assert any("budget $0.03/day for exploration spent" in c.reason for c in choices)


def test_budget_without_costs_is_refused():
    with pytest.raises(ValueError, match="budget_usd_per_day"):
        BanditPolicy(TIERS, budget_usd_per_day=1.0)


def test_never_outside_the_steps_bounds_nor_the_hints():
    router = StepRouter(_config(min_tier="mid", max_tier="mid", explore=1.0, seed=0))
    assert router.policy_of("answer").tiers == ("mid",)  # type: ignore[attr-defined]
    wide = StepRouter(_config(explore=1.0, seed=0))
    seen = Counter()
    for _ in range(300):
        decision, _ = wide.route(_request(Hint(min_tier="mid")))
        seen[decision.tier] += 1
        assert "raised to min_tier" not in decision.reason  # the bandit itself kept to the bounds
        wide.feedback(decision.id, 1.0 if decision.tier == "fast" else 0.0)
    assert set(seen) <= {"mid", "strong"} and len(seen) == 2
    for _ in range(300):
        decision, _ = router.route(_request())
        assert decision.tier == "mid"


def test_two_routers_on_one_store_learn_together():
    store = InMemoryStore()
    a, b = StepRouter(_config(explore=0.0)), StepRouter(_config(explore=0.0))
    assert share_bandit_store(a, BanditStore(store)) == 1 and share_bandit_store(b, BanditStore(store)) == 1
    assert b.route(_request())[0].tier == "fast"
    bandit_b = b.policy_of("answer")
    routed = []
    for _ in range(8):  # through A: fast and mid score 0, strong 1
        decision, _ = a.route(_request())
        routed.append(decision.tier)
        a.feedback(decision.id, 1.0 if decision.tier == "strong" else 0.0)
    assert routed[0] == "fast" and routed[-1] == "strong"
    assert b.route(_request())[0].tier == "fast"  # B has not read the store yet
    bandit_b.refresh("answer")  # what a background read does every refresh_seconds
    assert b.route(_request())[0].tier == "strong"


def test_a_stale_cache_is_read_again_in_the_background():
    store = BanditStore(InMemoryStore())
    a = BanditPolicy(TIERS, store=store, explore=0.0)
    b = BanditPolicy(TIERS, store=store, explore=0.0, refresh_seconds=0.01)
    assert b.choose(_request()).tier == "fast"
    teach(a, "strong", 1.0, 5)
    deadline = time.monotonic() + 5
    while b.choose(_request()).tier != "strong":
        assert time.monotonic() < deadline, "the background read never brought the other replica's feedback"
        time.sleep(0.02)


def test_the_state_survives_a_new_router_on_the_same_store():
    store = InMemoryStore()
    first = StepRouter(_config(explore=0.0))
    share_bandit_store(first, BanditStore(store))
    for _ in range(5):
        first.feedback("d", 1.0, step="answer", tier="mid")
    second = StepRouter(_config(explore=0.0))
    share_bandit_store(second, BanditStore(store))
    second.policy_of("answer").refresh("answer")  # type: ignore[attr-defined]
    decision, _ = second.route(_request())
    assert decision.tier == "mid" and "mid 0.857 (n=5)" in decision.reason


def test_feedback_needs_no_decision_log_when_a_bandit_learns_from_it():
    router = StepRouter(_config())
    decision, _ = router.route(_request())
    router.feedback(decision.id, 1.0)
    assert router.policy_of("answer").posterior("answer")[decision.tier] == (2.0, 1.0)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="needs a decision log"):
        router.feedback("not-a-bandit-decision", 1.0)


@pytest.mark.parametrize(("setting", "field"), [
    ({"explore": 1.5}, "steps.answer.explore"),
    ({"prior": "huge"}, "steps.answer.prior"),
    ({"tiers": ["fast", "nope"]}, "steps.answer.tiers[1]"),
    ({"costs": {"fast": -1}}, "steps.answer.costs.fast"),
    ({"budget_usd_per_day": 1.0}, "steps.answer"),
    ({"cost_weight": -0.5}, "steps.answer.cost_weight"),
])
def test_bad_bandit_settings_are_config_errors_naming_the_field(setting, field):
    with pytest.raises(ConfigError) as caught:
        StepRouter(_config(**setting))
    assert field in str(caught.value)


def test_converges_to_the_cheap_tier_over_a_real_router_with_litellm():
    router = StepRouter(_config(tiers=["fast", "strong"], prior="strong", explore=0.2, seed=11))
    tiers = []
    for _ in range(200):
        result = router.complete(_request())
        assert result.completion.content == "ok"
        tiers.append(result.decision.tier)
        router.feedback(result.decision.id, 1.0 if result.decision.tier == "fast" else 0.5)
    assert tiers[0] == "strong"  # the prior
    assert Counter(tiers[-50:])["fast"] >= 45, Counter(tiers[-50:])


def test_each_replica_writes_its_own_item_and_a_reader_adds_them_up():
    store = BanditStore(InMemoryStore())
    a, b = BanditPolicy(TIERS, store=store), BanditPolicy(TIERS, store=store)
    teach(a, "strong", 1.0, 3)
    teach(b, "strong", 0.0, 2)
    teach(a, "strong", 1.0, 1)  # a rewrites its own item; b's stays
    reader = BanditPolicy(TIERS, store=store)
    reader.refresh("answer")
    assert reader.posterior("answer")["strong"] == (1.0 + 4.0, 1.0 + 2.0)
    store.store.put(("steproute", "bandit", "answer"), "broken", {"tiers": {"strong": ["x", 1], "fast": [5, 1]}})
    reader.refresh("answer")  # a malformed item counts as nothing
    assert reader.posterior("answer")["strong"] == (5.0, 3.0) and reader.posterior("answer")["fast"] == (1.0, 1.0)
