"""Tests that kill mutmut mutants of steproute/policies (see docs/architecture.md, "Mutation testing").

The cascade's judgement is asserted through fixed-score signals (the :class:`Signal` protocol is
public: a user's own signal is one of these), so each combination rule is checked to the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from steproute.policies import ChainPolicy, FixedPolicy, PolicyContext, RulesPolicy, build_policy
from steproute.policies.base import Choice
from steproute.policies.cascade import CascadePolicy, Verdict
from steproute.policies.confidence import (
    Answer,
    ConsistencySignal,
    HedgingSignal,
    JudgeSignal,
    LogprobSignal,
    SchemaSignal,
    ToolCallSignal,
)
from steproute.policy_config import CascadePolicyConfig, ChainPolicyConfig, FixedPolicyConfig, RulesPolicyConfig
from steproute.types import StepRequest

REQUEST = StepRequest("s", [{"role": "user", "content": "hi"}])
ANSWER = Answer("42")


@dataclass
class Fixed:
    """A signal with a fixed score (``None``: it does not apply); records that it was asked."""

    name: str
    value: float | None
    threshold: float = 0.5
    weight: float = 1.0
    calls_models: bool = False
    asked: list[str] = field(default_factory=list)

    def score(self, request, answer, probe):
        self.asked.append(self.name)
        return self.value


@dataclass
class Picks:
    """A start policy that picks ``tier`` (``None``: no opinion)."""

    tier: str | None
    name: str = "picker"
    blocking: bool = False

    def choose(self, request):
        return None if self.tier is None else Choice(self.tier, f"picked {self.tier}", 0.25)


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tiers": ()}, "a cascade needs at least one tier"),
    ({"combine": "most"}, "combine must be all, any or weighted, not 'most'"),
    ({"speculative": True}, "speculative routing needs a start policy"),
])
def test_a_cascade_that_cannot_work_is_refused(kwargs, message):
    args = {"tiers": ("fast", "strong"), "signals": [], **kwargs}
    with pytest.raises(ValueError) as excinfo:
        CascadePolicy(args.pop("tiers"), args.pop("signals"), **args)
    assert str(excinfo.value) == message


def test_defaults_and_what_the_router_reads_off_a_cascade():
    policy = CascadePolicy(["fast", "strong"], [Fixed("a", 1.0)])
    assert (policy.tiers, policy.combine, policy.threshold, policy.start, policy.speculative,
            policy.max_concurrency) == (("fast", "strong"), "all", 0.5, None, False, 8)
    assert (policy.needs_logprobs, policy.calls_models, policy.blocking) == (False, False, False)
    assert policy.name == "cascade"
    speculative = CascadePolicy(("fast",), [Fixed("logprob", 1.0), Fixed("judge", 1.0, calls_models=True)],
                                start=Picks("fast", blocking=True), speculative=True, max_concurrency=3)
    assert (speculative.needs_logprobs, speculative.calls_models, speculative.blocking) == (True, True, True)
    assert (speculative.speculative, speculative.max_concurrency) == (True, 3)
    assert CascadePolicy(("fast",), [], start=Picks("fast")).blocking is False


def test_signals_that_call_models_are_asked_last_in_order():
    judge, hedging, schema = Fixed("judge", 0.9, calls_models=True), Fixed("hedging", 0.9), Fixed("schema", 0.9)
    policy = CascadePolicy(("fast",), [judge, hedging, schema])
    assert [s.name for s in policy.signals] == ["hedging", "schema", "judge"]


# -- where to start, where to go next ---------------------------------------------------------------


def test_the_first_choice_and_choose_without_a_start():
    policy = CascadePolicy(("fast", "strong"), [])
    assert policy.first_choice() == Choice("fast", "cascade: start at 'fast'")
    assert policy.choose(REQUEST) == Choice("fast", "cascade: start at 'fast'")


def test_the_start_policys_pick_moved_up_to_a_cascade_tier():
    order = ("fast", "standard", "strong", "huge")
    policy = CascadePolicy(("fast", "strong"), [], start=Picks("strong"))
    assert policy.choose(REQUEST) == Choice("strong", "cascade: start at 'strong' (picked strong)", 0.25)
    assert CascadePolicy(("fast", "strong"), [], start=Picks(None)).choose(REQUEST) == policy.first_choice()
    above = CascadePolicy(("fast", "strong"), [], start=Picks("huge"))
    assert above.choose(REQUEST) == Choice("strong", "cascade: picker picked 'huge', above the cascade; 'strong'")
    assert policy.from_start(Choice("huge", "x")).reason == "cascade: picker picked 'huge', above the cascade; 'strong'"
    assert CascadePolicy(("fast", "strong"), []).from_start(Choice("huge", "x")).reason == (
        "cascade: start picked 'huge', above the cascade; 'strong'")
    assert policy.at_or_above("standard", order) == "strong"
    assert policy.at_or_above("fast", order) == "fast"
    assert policy.at_or_above("standard") is None
    assert policy.at_or_above("nowhere", order) is None
    assert policy.at_or_above("huge", order) is None
    assert CascadePolicy(("standard", "strong"), []).at_or_above("fast", order) == "standard"
    assert CascadePolicy(("x", "strong"), []).at_or_above("standard", order) == "strong"


def test_next_tier():
    policy = CascadePolicy(("fast", "standard", "strong"), [])
    assert [policy.next_tier(t) for t in ("fast", "standard", "strong", "other")] == ["standard", "strong", None, None]


# -- judging ------------------------------------------------------------------------------------------


def test_an_answer_no_signal_applies_to_is_accepted():
    policy = CascadePolicy(("fast",), [Fixed("a", None), Fixed("b", None)])
    assert policy.judge(REQUEST, ANSWER, None) == Verdict(True, None, (), "no signal applies")


def test_all_stops_at_the_first_failing_signal_and_reports_the_least_score():
    a, b, c = Fixed("a", 0.9), Fixed("b", 0.2, threshold=0.3), Fixed("c", 0.95)
    verdict = CascadePolicy(("fast",), [a, b, c]).judge(REQUEST, ANSWER, None)
    assert verdict == Verdict(False, 0.2, (("a", 0.9), ("b", 0.2)), "a=0.9, b=0.2; b below threshold")
    assert c.asked == []
    passing = CascadePolicy(("fast",), [Fixed("a", 0.5), Fixed("b", 0.3, threshold=0.3), Fixed("n", None)])
    assert passing.judge(REQUEST, ANSWER, None) == Verdict(True, 0.3, (("a", 0.5), ("b", 0.3)),
                                                           "a=0.5, b=0.3; accepted")


def test_any_stops_at_the_first_passing_signal_and_reports_the_most_score():
    a, b, c = Fixed("a", 0.1), Fixed("b", 0.6), Fixed("c", 0.0)
    verdict = CascadePolicy(("fast",), [a, b, c], combine="any").judge(REQUEST, ANSWER, None)
    assert verdict == Verdict(True, 0.6, (("a", 0.1), ("b", 0.6)), "a=0.1, b=0.6; accepted")
    assert c.asked == []
    failing = CascadePolicy(("fast",), [Fixed("a", 0.1), Fixed("b", 0.4)], combine="any")
    assert failing.judge(REQUEST, ANSWER, None) == Verdict(False, 0.4, (("a", 0.1), ("b", 0.4)),
                                                           "a=0.1, b=0.4; a, b below threshold")


def test_weighted_asks_every_signal_and_compares_the_weighted_mean_with_the_threshold():
    signals = [Fixed("a", 1.0, weight=3.0), Fixed("b", 0.0, weight=1.0, threshold=0.9), Fixed("c", 0.2, weight=1.0)]
    verdict = CascadePolicy(("fast",), signals, combine="weighted", threshold=0.65).judge(REQUEST, ANSWER, None)
    assert verdict.confidence == pytest.approx(3.2 / 5)
    assert verdict == Verdict(False, verdict.confidence, (("a", 1.0), ("b", 0.0), ("c", 0.2)),
                              "a=1, b=0, c=0.2; weighted 0.64 < 0.65")
    at = CascadePolicy(("fast",), signals, combine="weighted", threshold=0.64).judge(REQUEST, ANSWER, None)
    assert (at.accepted, at.reason) == (True, "a=1, b=0, c=0.2; weighted 0.64 >= 0.64")
    assert at.signals == (("a", 1.0), ("b", 0.0), ("c", 0.2))


def test_scores_are_rounded_to_six_places_in_the_record():
    verdict = CascadePolicy(("fast",), [Fixed("a", 0.123456789)]).judge(REQUEST, ANSWER, None)
    assert verdict.signals == (("a", 0.123457),) and verdict.confidence == 0.123456789


# -- building policies from the configuration ------------------------------------------------------


def test_build_policy_fixed_rules_chain():
    assert build_policy(FixedPolicyConfig(tier="fast")).choose(REQUEST) == Choice("fast", "fixed tier 'fast'")
    rules = build_policy(RulesPolicyConfig(rules=[{"name": "r", "when": {"keywords": ["hi"]}, "tier": "strong"}]))
    assert isinstance(rules, RulesPolicy) and rules.choose(REQUEST).tier == "strong"
    chain = build_policy(ChainPolicyConfig(policies=[RulesPolicyConfig(rules=[{"when": {"keywords": ["zzz"]}, "tier": "strong"}]), FixedPolicyConfig(tier="fast")]))
    assert isinstance(chain, ChainPolicy)
    assert chain.choose(REQUEST) == Choice("fast", "rules: no match → fixed: fixed tier 'fast'")


def test_build_policy_llm_needs_a_router():
    from steproute.policy_config import LLMPolicyConfig

    with pytest.raises(ValueError, match="^the llm policy needs a router to make its calls$"):
        build_policy(LLMPolicyConfig(router_tier="fast", fallback="fast"), PolicyContext(("fast", "strong")))


def _cascade(context: PolicyContext | None = None, **config) -> CascadePolicy:
    policy = build_policy(CascadePolicyConfig(**config), context or PolicyContext(("fast", "strong")))
    assert isinstance(policy, CascadePolicy)
    return policy


def test_a_cascade_from_the_configuration_takes_every_setting():
    policy = _cascade(tiers=["strong", "fast"], combine="weighted", threshold=0.7, max_concurrency=2,
                      start={"policy": "fixed", "tier": "strong"}, speculative=True,
                      signals=[{"signal": "hedging", "weight": 2.0, "threshold": 0.4}])
    assert (policy.tiers, policy.combine, policy.threshold, policy.max_concurrency, policy.speculative) == (
        ("strong", "fast"), "weighted", 0.7, 2, True)
    assert isinstance(policy.start, FixedPolicy) and policy.choose(REQUEST).tier == "strong"
    (hedging,) = policy.signals
    assert isinstance(hedging, HedgingSignal) and (hedging.weight, hedging.threshold) == (2.0, 0.4)
    assert _cascade().tiers == ("fast", "strong") and _cascade().start is None


def test_each_signal_kind_is_built_with_its_settings():
    policy = _cascade(combine="weighted", signals=[
        {"signal": "logprob", "statistic": "min", "weight": 0.5},
        {"signal": "hedging", "phrases": ["dunno"]},
        {"signal": "schema", "threshold": 0.8},
        {"signal": "tools", "weight": 3.0},
        {"signal": "consistency", "samples": 4},
        {"signal": "judge"},
        {"signal": "judge", "tier": "strong"},
        {"signal": "arithmetic", "weight": 0.25},
    ])
    kinds = {type(s).__name__: s for s in policy.signals}
    assert isinstance(kinds["LogprobSignal"], LogprobSignal)
    assert (kinds["LogprobSignal"].statistic, kinds["LogprobSignal"].weight) == ("min", 0.5)
    assert kinds["LogprobSignal"].threshold == LogprobSignal().threshold  # no threshold given: the signal's own
    assert kinds["HedgingSignal"].phrases == ("dunno",)
    assert kinds["SchemaSignal"].threshold == 0.8 and isinstance(kinds["SchemaSignal"], SchemaSignal)
    assert kinds["ToolCallSignal"].weight == 3.0 and isinstance(kinds["ToolCallSignal"], ToolCallSignal)
    assert kinds["ConsistencySignal"].samples == 4 and isinstance(kinds["ConsistencySignal"], ConsistencySignal)
    judges = [s for s in policy.signals if isinstance(s, JudgeSignal)]
    assert [j.tier for j in judges] == ["fast", "strong"]  # default: the cascade's first tier
    assert kinds["ArithmeticSignal"].weight == 0.25
    assert policy.needs_logprobs and policy.calls_models


def test_a_cascade_artefact_adds_the_scorer(tmp_path: Path):
    # a missing artefact is named in the error, relative to the configuration's folder
    with pytest.raises((ValueError, ImportError)) as excinfo:
        _cascade(PolicyContext(("fast", "strong"), tmp_path), artefact="scorer.json")
    assert "scorer.json" in str(excinfo.value)
