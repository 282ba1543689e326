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
    never = RulesPolicyConfig(rules=[{"when": {"keywords": ["zzz"]}, "tier": "strong"}])
    chain = build_policy(ChainPolicyConfig(policies=[never, FixedPolicyConfig(tier="fast")]))
    assert isinstance(chain, ChainPolicy)
    assert chain.choose(REQUEST) == Choice("fast", "rules: no match → fixed: fixed tier 'fast'")


def test_build_policy_llm_needs_a_router():
    from steproute.policy_config import LLMPolicyConfig

    with pytest.raises(ValueError, match=r"^the llm policy needs a router to make its calls$"):
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


def test_a_signal_that_does_not_apply_is_skipped_not_the_end_of_judging():
    later = Fixed("later", 0.25)
    verdict = CascadePolicy(("fast",), [Fixed("n/a", None), later]).judge(REQUEST, ANSWER, None)
    assert verdict == Verdict(False, 0.25, (("later", 0.25),), "later=0.25; later below threshold")
    assert later.asked == ["later"]


def test_a_pick_above_a_three_tier_cascade_starts_at_its_last_tier():
    policy = CascadePolicy(("fast", "standard", "strong"), [], start=Picks("huge"))
    assert policy.choose(REQUEST) == Choice("strong", "cascade: picker picked 'huge', above the cascade; 'strong'")


def test_a_start_policy_without_a_blocking_attribute_does_not_block():
    assert CascadePolicy(("fast",), [], start=FixedPolicy("fast")).blocking is False


def test_each_signal_takes_its_threshold_and_weight_from_the_configuration():
    policy = _cascade(combine="weighted", signals=[
        {"signal": "logprob", "threshold": 0.11}, {"signal": "arithmetic", "threshold": 0.12},
        {"signal": "tools", "threshold": 0.13}, {"signal": "schema", "weight": 2.5},
        {"signal": "consistency", "weight": 3.5, "threshold": 0.14}, {"signal": "judge", "weight": 4.5, "threshold": 0.15},
    ])
    got = {s.name: (s.threshold, s.weight) for s in policy.signals}
    assert got["logprob"][0] == 0.11 and got["arithmetic"][0] == 0.12 and got["tools"][0] == 0.13
    assert got["schema"][1] == 2.5
    assert got["consistency"] == (0.14, 3.5) and got["judge"] == (0.15, 4.5)


# -- trained artefacts: the cascade's answer scorer, the classifier -----------------------------------


@pytest.fixture(scope="module")
def scorer_artefact(tmp_path_factory) -> Path:
    from steproute.evaluation._cascade import train_cascade
    from steproute.policies._artefact import save_artefact
    from tests.unit.test_cascade_offline import CHEAP, STRONG, sums

    path = tmp_path_factory.mktemp("scorer") / "c.steproute"
    save_artefact(train_cascade(sums(120, seed=1), (CHEAP, STRONG), folds=2), path)
    return path


def test_a_cascade_artefact_is_its_only_signal_unless_signals_are_given(scorer_artefact: Path):
    from steproute.policies.answer_scorer import AnswerScorer, ScorerSignal

    trained = AnswerScorer.load(scorer_artefact)
    context = PolicyContext(("fast", "strong"), scorer_artefact.parent)
    alone = _cascade(context, artefact=scorer_artefact.name)  # relative: read from the config's folder
    (signal,) = alone.signals
    assert isinstance(signal, ScorerSignal) and (signal.name, signal.weight) == ("scorer", 1.0)
    assert signal.threshold == trained.threshold
    question = StepRequest("s", [{"role": "user", "content": "Tom has 20 apples and buys 31 more. How many?"}])
    assert signal.score(question, Answer("20 + 31 = 51\n#### 51"), None) == trained.score(
        "Tom has 20 apples and buys 31 more. How many?", "20 + 31 = 51\n#### 51", None)
    both_kinds = _cascade(PolicyContext(("fast", "strong"), Path("/nonexistent")), artefact=str(scorer_artefact),
                          signals=[{"signal": "hedging"}])  # absolute: the folder is not used
    assert [s.name for s in both_kinds.signals] == ["hedging", "scorer"]
    assert _cascade(context, artefact=scorer_artefact.name, signals=[]).signals[0].name == "scorer"


def test_a_scorer_signal_takes_its_threshold_and_weight(scorer_artefact: Path):
    context = PolicyContext(("fast", "strong"), scorer_artefact.parent)
    policy = _cascade(context, signals=[{"signal": "scorer", "artefact": scorer_artefact.name, "threshold": 0.33,
                                         "weight": 2.0}])
    (signal,) = policy.signals
    assert (signal.threshold, signal.weight) == (0.33, 2.0)


def test_a_cascades_start_policy_is_built_with_the_context(scorer_artefact: Path, classifier_artefact: Path):
    context = PolicyContext(("fast", "strong"), classifier_artefact.parent)
    policy = _cascade(context, start={"policy": "classifier", "artefact": classifier_artefact.name})
    assert policy.start is not None and policy.start.name == "classifier" and policy.start.tiers == ("fast", "strong")


@pytest.fixture(scope="module")
def classifier_artefact(tmp_path_factory) -> Path:
    from steproute.evaluation._train import train_classifier
    from steproute.policies._artefact import save_artefact
    from tests.unit.test_learned_policies import MODELS, synthetic_rows

    path = tmp_path_factory.mktemp("classifier") / "answer.steproute"
    save_artefact(train_classifier(synthetic_rows(120), MODELS, folds=2), path)
    return path


def test_a_classifier_maps_its_labels_to_the_routers_tiers(classifier_artefact: Path):
    from steproute.policies.classifier import ClassifierPolicy
    from steproute.policy_config import ClassifierPolicyConfig

    context = PolicyContext(("fast", "strong"), classifier_artefact.parent)
    by_order = build_policy(ClassifierPolicyConfig(artefact=classifier_artefact.name, threshold=0.125), context)
    assert isinstance(by_order, ClassifierPolicy)
    assert (by_order.tiers, by_order.threshold) == (("fast", "strong"), 0.125)
    assert by_order.choose(StepRequest("answer", [{"role": "user", "content": "What is the capital of Peru?"}])).tier in (
        "fast", "strong")
    named = build_policy(ClassifierPolicyConfig(artefact=str(classifier_artefact), tiers=["strong", "fast"],
                                                threshold=0.25), PolicyContext(("a", "b", "c"), Path("/nonexistent")))
    assert (named.tiers, named.threshold) == (("strong", "fast"), 0.25)
    default_threshold = build_policy(ClassifierPolicyConfig(artefact=classifier_artefact.name), context)
    from steproute.policies._artefact import load_artefact

    assert default_threshold.threshold == load_artefact(classifier_artefact).threshold


def test_a_classifier_with_a_different_number_of_tiers_says_so(classifier_artefact: Path):
    from steproute.policy_config import ClassifierPolicyConfig

    context = PolicyContext(("fast", "standard", "strong"), classifier_artefact.parent)
    with pytest.raises(ValueError) as excinfo:
        build_policy(ClassifierPolicyConfig(artefact=classifier_artefact.name), context)
    assert str(excinfo.value) == ("the artefact estimates 2 tiers (cheap-model, strong-model) and the configuration "
                                  "has 3: say which tier is which with 'tiers:'")


def test_a_classifier_artefact_of_another_kind_is_refused(scorer_artefact: Path):
    from steproute.policy_config import ClassifierPolicyConfig

    with pytest.raises(ValueError) as excinfo:
        build_policy(ClassifierPolicyConfig(artefact=scorer_artefact.name),
                     PolicyContext(("fast", "strong"), scorer_artefact.parent))
    assert "cascade" in str(excinfo.value) and "classifier" in str(excinfo.value)


def test_an_llm_policy_from_the_configuration_takes_every_setting():
    from steproute.policies import LLMRouterPolicy
    from steproute.policy_config import LLMPolicyConfig

    def ask(tier, messages, n):
        return "strong"

    context = PolicyContext(("fast", "strong"), ask=ask)
    policy = build_policy(LLMPolicyConfig(router_tier="fast", fallback="strong", instructions="Pick one.",
                                          max_tokens=5), context)
    assert isinstance(policy, LLMRouterPolicy)
    assert (policy.router_tier, policy.choices, policy.fallback, policy.instructions, policy.max_tokens) == (
        "fast", {"fast": "", "strong": ""}, "strong", "Pick one.", 5)
    given = build_policy(LLMPolicyConfig(router_tier="fast", fallback="fast", choices={"strong": "hard ones"}), context)
    assert given.choices == {"strong": "hard ones"} and given.fallback == "fast"
    chained = build_policy(ChainPolicyConfig(policies=[LLMPolicyConfig(router_tier="fast", fallback="fast")]), context)
    assert chained.choose(REQUEST).tier == "strong"  # the chain's links get the context (its model call)


def test_an_artefact_that_does_not_fit_its_policy_is_named_in_the_error(tmp_path: Path, classifier_artefact: Path):
    import dataclasses

    from steproute.policies._artefact import ArtefactError, load_artefact, save_artefact
    from steproute.policy_config import ClassifierPolicyConfig

    artefact = load_artefact(classifier_artefact)
    save_artefact(dataclasses.replace(artefact, meta={**artefact.meta, "encoder": "no-such-encoder"}),
                  tmp_path / "bad.steproute")
    with pytest.raises(ArtefactError) as excinfo:
        build_policy(ClassifierPolicyConfig(artefact="bad.steproute"), PolicyContext(("fast", "strong"), tmp_path))
    assert str(excinfo.value).startswith(f"{tmp_path / 'bad.steproute'}: the artefact does not fit its policy")
