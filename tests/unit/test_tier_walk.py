"""The tier walk's one rule set, with no model call: chains, error moves, rejections, the
decision it writes. (The drivers' paths over LiteLLM are in test_fault_paths, test_cascade and
the fault matrices; the cascade/`tier_fallback` contract over real calls is at the end.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.errors import Attempt, DispatchError, ProviderAuthError, ProviderFailure
from steproute.tier_walk import TierWalk, walk_rules
from steproute.types import CascadeAttempt, Decision

TIERS = ("fast", "standard", "strong")


def _error(tier: str, kind_error: type[DispatchError] = DispatchError) -> DispatchError:
    return DispatchError("plan", tier, (Attempt(f"m/{tier}", "RateLimitError", "openai"),))


def _decision(tier: str = "fast") -> Decision:
    return Decision(step="plan", kind=None, tier=tier, model=f"m/{tier}", policy="rules", reason="rules: short")


@pytest.mark.parametrize(("fallback", "high", "cascade", "fixed", "chain", "moves"), [
    (None, 2, None, False, ("fast", "standard"), 1),                       # default: the next tier only
    ("next", 2, None, False, ("fast", "standard"), 1),
    ("stronger", 2, None, False, ("fast", "standard", "strong"), 3),       # every stronger tier, cheapest first
    ("none", 2, None, False, ("fast",), 0),
    ("stronger", 1, None, False, ("fast", "standard"), 2),                 # never above max_tier
    ("stronger", 2, None, True, ("fast",), 0),                             # a hint or a guard fixed the tier
    (None, 2, ("fast", "strong"), False, ("fast", "strong"), 2),           # a cascade: its tiers, errors move on
    ("none", 2, ("fast", "strong"), False, ("fast", "strong"), 0),         # ... unless tier_fallback: none
    ("next", 2, ("fast", "standard", "strong"), False, ("fast", "standard", "strong"), 1),
    (None, 1, ("fast", "standard", "strong"), False, ("fast", "standard"), 2),
])
def test_the_chain_and_how_far_errors_may_move_it(fallback, high, cascade, fixed, chain, moves):
    rules = walk_rules("fast", TIERS, high, fallback=fallback, cascade=cascade, fixed=fixed)
    assert (rules.chain, rules.error_moves, rules.judged) == (chain, moves, cascade is not None)


def test_a_chain_starts_at_the_decided_tier_and_never_goes_below_it():
    assert walk_rules("standard", TIERS, 2, fallback="stronger").chain == ("standard", "strong")
    assert walk_rules("strong", TIERS, 2, fallback="stronger").chain == ("strong",)


def test_errors_move_on_once_under_next_and_name_every_failed_tier_at_the_end():
    walk = TierWalk(walk_rules("fast", TIERS, 2, fallback="next", cascade=TIERS), TIERS)
    assert walk.failed_over(_error("fast"), "m/fast") == "standard"
    with pytest.raises(DispatchError) as raised:
        walk.failed_over(_error("standard"), "m/standard")
    assert raised.value.tiers == ("fast", "standard")
    assert [a.model for a in raised.value.attempts] == ["m/fast", "m/standard"]


def test_a_single_failed_tier_raises_its_own_error_unchanged():
    walk = TierWalk(walk_rules("fast", TIERS, 2, fallback="none"), TIERS)
    error = _error("fast")
    with pytest.raises(DispatchError) as raised:
        walk.failed_over(error, "m/fast")
    assert raised.value is error


def test_a_refusal_moves_on_only_when_fallback_on_lists_it():
    failure = ProviderFailure("auth", "AuthenticationError", "Incorrect API key provided.")
    refusal = ProviderAuthError("plan", "fast", (Attempt("m/fast", "AuthenticationError", "openai", kind="auth"),),
                                deployment="m/fast", provider="openai", failure=failure)
    strict = TierWalk(walk_rules("fast", TIERS, 2), TIERS)
    with pytest.raises(ProviderAuthError):
        strict.failed_over(refusal, "m/fast")
    lenient = TierWalk(walk_rules("fast", TIERS, 2, fallback_on=("auth",)), TIERS)
    assert lenient.failed_over(refusal, "m/fast") == "standard"
    decided = lenient.answered(_decision(), "m/standard")
    assert decided.fallback_from == "fast" and "fallback_on lists 'auth'" in decided.reason


def test_rejections_carry_their_cost_forward_and_never_use_up_error_moves():
    walk = TierWalk(walk_rules("fast", TIERS, 2, fallback="next", cascade=TIERS), TIERS)
    assert walk.judges
    walk.rejected(CascadeAttempt("fast", "m/fast", False, 0.2, cost_usd=0.001, reason="low confidence"))
    assert walk.failed_over(_error("standard"), "m/standard") == "strong"  # the one error move is still there
    assert walk.is_last and not walk.judges
    assert walk.carried_usd == pytest.approx(0.001)
    decided = walk.answered(_decision(), "m/strong")
    assert (decided.tier, decided.escalated_from, decided.fallback_from, decided.attempts) == (
        "strong", "fast", "standard", 3)
    assert [a.accepted for a in decided.cascade] == [False, None, None]
    assert walk.escalated  # a verdict rejected an answer: the pin may move


def test_an_error_only_escalation_is_no_reason_to_move_the_pin():
    walk = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS), TIERS)
    walk.failed_over(_error("fast"), "m/fast")
    assert not walk.escalated


def test_a_plain_walk_writes_the_fallback_into_the_reason():
    walk = TierWalk(walk_rules("fast", TIERS, 2), TIERS)
    walk.failed_over(_error("fast"), "m/fast")
    decided = walk.answered(_decision(), "m/standard")
    assert (decided.tier, decided.model, decided.fallback_from, decided.cascade) == ("standard", "m/standard", "fast", ())
    assert "tier 'fast' failed (RateLimitError), fell back to 'standard'" in decided.reason


def test_a_speculative_restart_is_not_an_escalation():
    walk = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS), TIERS)
    walk.cancelled("m/fast", "speculative: rules picked 'strong'")
    walk.restart_at("strong")
    assert walk.chain == ("strong",) and walk.is_last
    decided = walk.answered(_decision(), "m/strong")
    assert (decided.tier, decided.escalated_from, decided.attempts) == ("strong", None, 2)
    assert "speculative: rules picked 'strong'" in decided.reason


# -- the cascade's `tier_fallback`, over real LiteLLM calls ---------------------------------

def _cascade_router(tier_fallback: str | None) -> StepRouter:
    step: dict = {"policy": "cascade", "tiers": ["fast", "strong"], "signals": [{"signal": "hedging"}]}
    if tier_fallback is not None:
        step["tier_fallback"] = tier_fallback
    return StepRouter(RouterConfig.model_validate({
        "tiers": {"fast": {"models": [{"model": "openai/m-fast", "api_key": "sk-test",
                                       "mock_response": "litellm.InternalServerError"}]},
                  "strong": {"models": [{"model": "openai/m-strong", "api_key": "sk-test", "mock_response": "42"}]}},
        "default": "fast", "steps": {"calc": step}}))


def test_a_cascade_with_tier_fallback_none_raises_when_its_tier_fails_like_a_fixed_step():
    router = _cascade_router("none")
    with pytest.raises(DispatchError) as raised:
        router.complete(StepRequest("calc", [{"role": "user", "content": "6*7?"}]))
    assert raised.value.tiers == ("fast",)


@pytest.mark.parametrize("tier_fallback", [None, "next", "stronger"])
def test_a_cascade_escalates_on_errors_unless_told_not_to(tier_fallback):
    result = _cascade_router(tier_fallback).complete(StepRequest("calc", [{"role": "user", "content": "6*7?"}]))
    assert (result.decision.tier, result.decision.fallback_from, result.completion.content) == ("strong", "fast", "42")


# -- the decision the walk writes, word for word (what the span, the log and the user read) -----

def _refusal(tier: str) -> ProviderAuthError:
    failure = ProviderFailure("auth", "AuthenticationError", "Incorrect API key provided.")
    return ProviderAuthError("plan", tier, (Attempt(f"m/{tier}", "AuthenticationError", "openai", kind="auth",
                                                    message="Incorrect API key provided."),),
                             deployment=f"m/{tier}", provider="openai", failure=failure)


def test_a_plain_fallback_over_two_tiers_says_which_failed_with_what_and_what_let_it_through():
    walk = TierWalk(walk_rules("fast", TIERS, 2, fallback="stronger", fallback_on=("auth",)), TIERS)
    assert walk.failed_over(_refusal("fast"), "m/fast") == "standard"
    assert walk.failed_over(_error("standard"), "m/standard") == "strong"
    decided = walk.answered(_decision(), "m/strong")
    assert decided.reason == (
        "rules: short; tier 'fast' → 'standard' failed (AuthenticationError, RateLimitError), fell back to 'strong' "
        "(m/fast: AuthenticationError (Incorrect API key provided.); m/standard: RateLimitError; "
        "fallback_on lists 'auth')")
    assert (decided.tier, decided.model, decided.fallback_from, decided.escalated_from, decided.score) == (
        "strong", "m/strong", "fast", None, None)


def test_a_cascades_chain_records_each_attempt_its_model_and_why():
    walk = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS, fallback_on=("auth",)), TIERS)
    walk.note("speculative: rules agreed")
    walk.failed_over(_refusal("fast"), "m/fast")
    walk.rejected(CascadeAttempt("standard", "m/standard", False, 0.25, (("hedging", 0.25),), 0.002, "hedged"))
    decided = walk.answered(_decision(), "m/strong")
    assert [(a.tier, a.model, a.accepted, a.reason) for a in decided.cascade] == [
        ("fast", "m/fast", None, "failed: m/fast: AuthenticationError (Incorrect API key provided.); "
                                 "fallback_on lists 'auth'"),
        ("standard", "m/standard", False, "hedged"),
        ("strong", "m/strong", None, "last tier: not judged")]
    assert decided.reason == (
        "rules: short; speculative: rules agreed; escalated fast → standard → strong (fast: failed: m/fast: "
        "AuthenticationError (Incorrect API key provided.); fallback_on lists 'auth'; standard: hedged)")
    assert (decided.escalated_from, decided.fallback_from, decided.attempts, decided.score) == ("fast", "fast", 3, None)


def test_an_accepted_first_answer_says_why_and_carries_its_confidence_as_the_score():
    walk = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS), TIERS)
    accepted = CascadeAttempt("fast", "m/fast", True, 0.9, (("logprob", 0.9),), 0.001, "logprob 0.90 ≥ 0.7")
    decided = walk.answered(replace(_decision(), score=0.3), "m/fast", accepted)
    assert decided.reason == "rules: short; accepted (logprob 0.90 ≥ 0.7)"
    assert (decided.score, decided.attempts, decided.escalated_from, decided.cascade) == (0.9, 1, None, (accepted,))
    unscored = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS), TIERS).answered(
        replace(_decision(), score=0.3), "m/fast", replace(accepted, confidence=None))
    assert unscored.score == 0.3  # no confidence: the policy's own score stays


def test_rejections_add_up_and_each_moves_one_tier():
    walk = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS), TIERS)
    assert walk.rejected(CascadeAttempt("fast", "m/fast", False, cost_usd=0.001)) == "standard"
    assert walk.rejected(CascadeAttempt("standard", "m/standard", False, cost_usd=0.002)) == "strong"
    assert walk.carried_usd == pytest.approx(0.003) and walk.index == 2


def test_error_moves_are_counted_one_by_one():
    rules = walk_rules("fast", TIERS, 2, fallback="stronger")
    walk = TierWalk(replace(rules, chain=("fast", "standard", "strong", "strong"), error_moves=2), TIERS)
    walk.failed_over(_error("fast"), "m/fast")
    walk.failed_over(_error("standard"), "m/standard")
    with pytest.raises(DispatchError) as raised:  # a third move is one too many, though the chain goes on
        walk.failed_over(_error("strong"), "m/strong")
    assert raised.value.tiers == ("fast", "standard", "strong")


def test_an_escalation_after_a_speculative_restart_starts_where_the_walk_restarted():
    walk = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS), TIERS)
    walk.cancelled("m/fast", "speculative: rules picked 'standard'")
    walk.restart_at("standard")
    walk.rejected(CascadeAttempt("standard", "m/standard", False, cost_usd=0.002, reason="hedged"))
    decided = walk.answered(_decision(), "m/strong")
    assert (decided.escalated_from, decided.attempts) == ("standard", 3)
    assert decided.cascade[0] == CascadeAttempt("fast", "m/fast", None, reason="speculative call cancelled")


def test_a_walk_that_fails_where_it_was_decided_keeps_its_decision_with_its_notes():
    walk = TierWalk(walk_rules("fast", TIERS, 2, fallback="none"), TIERS)
    walk.note("first note")
    walk.note("second note")
    error = _error("fast")
    with pytest.raises(DispatchError):
        walk.failed_over(error, "m/fast")
    pinned = replace(_decision(), model="m/fast-2")  # the conversation's deployment, tried first: still named
    assert walk.gave_up(pinned, "m/fast", error) == replace(pinned, reason="rules: short; first note; second note")


def test_a_walk_that_restarted_escalated_and_failed_names_each_tier_and_where_it_escalated_from():
    walk = TierWalk(walk_rules("fast", TIERS, 2, cascade=TIERS), TIERS)
    walk.cancelled("m/fast", "speculative: rules picked 'standard'")
    walk.restart_at("standard")
    walk.rejected(CascadeAttempt("standard", "m/standard", False, cost_usd=0.002, reason="hedged"))
    bare = DispatchError("plan", "strong", ())  # no attempt to name (every deployment cooling down)
    with pytest.raises(DispatchError):
        walk.failed_over(bare, "m/strong")
    decided = walk.gave_up(_decision(), "m/strong", bare)
    assert (decided.tier, decided.model, decided.escalated_from, decided.fallback_from, decided.attempts) == (
        "strong", "m/strong", "standard", None, 3)
    assert decided.cascade[-1] == CascadeAttempt("strong", "m/strong", None, reason="failed: DispatchError")
    assert decided.reason == ("rules: short; speculative: rules picked 'standard'; no tier answered: fast → standard"
                              " → strong (fast: speculative call cancelled; standard: hedged; strong: failed: "
                              "DispatchError)")


@pytest.mark.parametrize(("cascade", "tiers"), [(None, ("fast", "standard")), (TIERS, TIERS)])
def test_a_walk_whose_every_tier_failed_fell_back_from_the_first(cascade, tiers):
    walk = TierWalk(walk_rules("fast", TIERS, 2, fallback="next" if cascade is None else None, cascade=cascade),
                    TIERS)
    *moved, end = tiers
    for tier in moved:
        walk.failed_over(_error(tier), f"m/{tier}")
    last = _error(end)
    with pytest.raises(DispatchError):
        walk.failed_over(last, f"m/{end}")
    decided = walk.gave_up(_decision(), f"m/{end}", last)
    assert (decided.tier, decided.model, decided.fallback_from, decided.escalated_from) == (end, f"m/{end}", "fast", None)
    assert [a.tier for a in decided.cascade] == ([] if cascade is None else list(tiers))
    assert decided.reason.endswith(f"{end}: failed: m/{end}: RateLimitError)")


def test_every_note_and_every_refusal_kind_that_let_the_call_through_is_in_the_reason():
    bad = ProviderFailure("bad_request", "BadRequestError", "Unsupported parameter.")
    refused = ProviderAuthError("plan", "standard", (Attempt("m/standard", "BadRequestError", "openai",
                                                             kind="bad_request"),),
                                deployment="m/standard", provider="openai", failure=bad)
    walk = TierWalk(walk_rules("fast", TIERS, 2, fallback="stronger", fallback_on=("auth", "bad_request")), TIERS)
    walk.note("first note")
    walk.note("second note")
    walk.failed_over(_refusal("fast"), "m/fast")
    walk.failed_over(refused, "m/standard")
    reason = walk.answered(_decision(), "m/strong").reason
    assert reason.startswith("rules: short; first note; second note; tier 'fast' → 'standard' failed")
    assert reason.endswith("; fallback_on lists 'auth'; fallback_on lists 'bad_request')")


def test_tiers_that_cannot_serve_the_call_are_left_out_of_the_chain_and_the_pool():
    rules = walk_rules("fast", TIERS, 2, fallback="stronger", skip=("standard",))
    assert (rules.chain, rules.pool, rules.error_moves) == (("fast", "strong"), ("fast", "strong"), 2)
    cascade = walk_rules("fast", TIERS, 2, cascade=TIERS, skip=("fast",))
    assert (cascade.chain, cascade.pool) == (("fast", "standard", "strong"), ("standard", "strong"))
