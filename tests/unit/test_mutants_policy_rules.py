"""Tests that kill mutmut mutants of the simple policies: policies/rules.py, chain.py, fixed.py, base.py.

See docs/architecture.md, "Mutation testing". Each reason is read word for word: it is what the
decision, the span and the log show.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from steproute.policies import ChainPolicy, FixedPolicy, RulesPolicy, build_policy
from steproute.policies.base import Choice, learn_extra_missing
from steproute.policy_config import FixedPolicyConfig, RulesPolicyConfig
from steproute.types import StepRequest
from tests.unit.test_policies import req

TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}


def rules(*rule_list: dict, fallback: str | None = None) -> RulesPolicy:
    return RulesPolicy.from_config(RulesPolicyConfig(rules=list(rule_list), fallback=fallback))


def reason(when: dict, request: StepRequest | None = None) -> str | None:
    choice = rules({"name": "r", "when": when, "tier": "strong"}).choose(request or req())
    return None if choice is None else choice.reason


# -- rules: what each condition says on the reason --------------------------------------------------


@pytest.mark.parametrize(("when", "request_", "said"), [
    ({"kind": ["synthesis", "plan"]}, req(kind="plan"), "kind in ['plan', 'synthesis']"),
    ({"has_tools": True}, req(tools=(TOOL,)), "has_tools=True"),
    ({"has_tools": False}, req(), "has_tools=False"),
    ({"has_schema": True}, req(schema={"type": "object"}), "has_schema=True"),
    ({"has_schema": False}, req(), "has_schema=False"),
    ({"min_turns": 2}, req(turns=2), "turns>=2"),
    ({"max_turns": 2}, req(turns=2), "turns<=2"),
    ({"min_input_tokens": 3}, req("x" * 12), "input_tokens>=3"),
    ({"max_input_tokens": 3}, req("x" * 12), "input_tokens<=3"),
    ({"metadata": {"tenant.plan": "pro"}}, req(metadata={"tenant": {"plan": "pro"}}), "tenant.plan=='pro'"),
    ({"metadata": {"tenant.plan": ["pro", "team"]}}, req(metadata={"tenant": {"plan": "team"}}),
     "tenant.plan in ['pro', 'team']"),
    ({"metadata": {"tier": ["pro"]}}, req(metadata={"tier": "pro"}), "tier=='pro'"),
    ({"keywords": ["prove", "derive"]}, req("derive it"), "keywords ['prove', 'derive']"),
    ({"regex": r"\d+"}, req("a 12"), r"regex '\\d+'"),
    ({}, req(), "always"),
])
def test_each_condition_is_described_word_for_word(when, request_, said):
    assert reason(when, request_) == f"rule 'r' matched ({said})"


def test_several_conditions_are_described_in_order_joined_by_commas():
    when = {"regex": "x", "keywords": ["x"], "metadata": {"a": 1, "b.c": [2, 3]}, "max_input_tokens": 9,
            "min_input_tokens": 0, "max_turns": 1, "min_turns": 1, "has_schema": False, "has_tools": False,
            "kind": ["k"]}
    assert reason(when, req("x", kind="k", metadata={"a": 1, "b": {"c": 3}})) == (
        "rule 'r' matched (kind in ['k'], has_tools=False, has_schema=False, turns>=1, turns<=1, input_tokens>=0, "
        "input_tokens<=9, a==1, b.c in [2, 3], keywords ['x'], regex 'x')")


def test_a_schema_rule_for_calls_without_one_misses_a_call_with_one():
    assert reason({"has_schema": False}, req(schema={"type": "object"})) is None
    assert reason({"has_schema": True}, req()) is None


def test_every_condition_must_hold_not_just_one():
    when = {"keywords": ["prove"], "min_turns": 2}
    assert reason(when, req("prove it", turns=1)) is None
    assert reason(when, req("hi", turns=2)) is None
    assert reason(when, req("prove it", turns=2)) == "rule 'r' matched (turns>=2, keywords ['prove'])"


@pytest.mark.parametrize(("when", "hit", "miss"), [
    ({"min_turns": 2}, req(turns=2), req(turns=1)),
    ({"max_turns": 2}, req(turns=2), req(turns=3)),
    ({"min_input_tokens": 3}, req("x" * 12), req("x" * 11)),
    ({"max_input_tokens": 3}, req("x" * 12), req("x" * 13)),
])
def test_bounds_hold_at_the_bound_and_miss_one_past_it(when, hit, miss):
    assert reason(when, hit) is not None
    assert reason(when, miss) is None


# -- rules: keywords and regex ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "hit"), [
    ("please PROVE it", True),
    ("prove", True),
    ("(prove)", True),
    ("improve it", False),   # a word that ends in the keyword
    ("proves it", False),    # a word that starts with it
    ("derive it", True),     # the second keyword
    ("c++ please", True),    # escaped: '+' is no repetition
    ("cc please", False),
    ("a.b", True),
    ("axb", False),          # escaped: '.' is no wildcard
])
def test_keywords_are_whole_words_escaped_and_case_insensitive(text, hit):
    assert (reason({"keywords": ["prove", "derive", "c++", "a.b"]}, req(text)) is not None) is hit


def test_a_regex_is_searched_case_sensitively_in_the_latest_user_message():
    assert reason({"regex": "Due"}, req("the Due date")) is not None
    assert reason({"regex": "Due"}, req("the due date")) is None
    assert reason({"regex": "^earlier"}, req("now", turns=2)) is None


# -- rules: metadata by dotted path -----------------------------------------------------------------


def test_metadata_paths_read_mappings_and_attributes_and_a_missing_part_never_matches():
    when = {"metadata": {"tenant.plan": [None, "pro"]}}
    assert reason(when, req(metadata={"tenant": {"plan": "pro"}})) is not None
    assert reason(when, req(metadata={"tenant": SimpleNamespace(plan="pro")})) is not None
    assert reason(when, req(metadata={"tenant": {"plan": None}})) is not None
    assert reason(when, req(metadata={"tenant": {}})) is None                      # missing key: not None
    assert reason(when, req(metadata={"tenant": SimpleNamespace()})) is None       # missing attribute
    assert reason(when, req(metadata={})) is None
    assert reason(when, req(metadata={"tenant": "pro"})) is None                   # a str has no 'plan'


def test_a_missing_part_stops_the_walk_before_the_next_part():
    # 'a' is missing; without stopping, the next lookup would run on the marker object itself
    when = {"metadata": {"a.__class__": [object]}}
    assert reason(when, req(metadata={})) is None


def test_a_metadata_value_that_is_a_list_means_one_of():
    when = {"metadata": {"plan": ["pro", "team"]}}
    assert reason(when, req(metadata={"plan": "team"})) is not None
    assert reason(when, req(metadata={"plan": ["pro", "team"]})) is None


# -- rules: names, order, fallback ---------------------------------------------------------------


def test_unnamed_rules_are_named_by_their_position_and_the_first_match_wins():
    policy = rules({"when": {"kind": ["x"]}, "tier": "a"}, {"name": "", "when": {}, "tier": "b"},
                   {"name": "last", "when": {}, "tier": "c"})
    assert policy.choose(req(kind="x")) == Choice("a", "rule 'rules[0]' matched (kind in ['x'])")
    assert policy.choose(req()) == Choice("b", "rule 'rules[1]' matched (always)")


def test_without_a_fallback_no_match_is_no_opinion_and_with_one_it_is_the_fallback_tier():
    assert rules({"when": {"kind": ["x"]}, "tier": "a"}).choose(req()) is None
    policy = RulesPolicy([], fallback="fast")
    assert policy.choose(req()) == Choice("fast", "no rule matched; fallback tier")
    assert RulesPolicy([]).choose(req()) is None


def test_rules_from_the_configuration_keep_their_tiers_and_fallback():
    policy = build_policy(RulesPolicyConfig(rules=[{"when": {"kind": ["x"]}, "tier": "strong"}], fallback="fast"))
    assert policy.choose(req(kind="x")) == Choice("strong", "rule 'rules[0]' matched (kind in ['x'])")
    assert policy.choose(req()) == Choice("fast", "no rule matched; fallback tier")


# -- fixed -----------------------------------------------------------------------------------------


def test_fixed_names_its_tier():
    assert FixedPolicy("fast").choose(req()) == Choice("fast", "fixed tier 'fast'", None)
    assert FixedPolicy.from_config(FixedPolicyConfig(tier="strong")).choose(req()) == Choice("strong", "fixed tier 'strong'")


# -- chain -----------------------------------------------------------------------------------------


@dataclass
class Says:
    """A link that says ``reason`` for ``tier`` (``None``: no opinion)."""

    name: str
    tier: str | None
    reason: str = "because"
    score: float | None = None

    def choose(self, request):
        return None if self.tier is None else Choice(self.tier, self.reason, self.score)


@dataclass
class Blocking(Says):
    blocking: bool = True


def test_an_empty_chain_is_refused():
    with pytest.raises(ValueError) as excinfo:
        ChainPolicy([])
    assert str(excinfo.value) == "a chain needs at least one policy"


def test_a_chain_blocks_when_any_link_blocks():
    assert ChainPolicy([Says("a", "x")]).blocking is False
    assert ChainPolicy([Says("a", "x"), Blocking("b", "y")]).blocking is True
    assert ChainPolicy([Blocking("a", "x", blocking=False), Says("b", "y")]).blocking is False
    assert ChainPolicy([Says("a", "x"), Blocking("b", "y")]).links[1].name == "b"


def test_a_chain_names_every_link_asked_in_order_and_keeps_the_score():
    chain = ChainPolicy([Says("one", None), Says("two", None), Says("three", "strong", "long input", 0.75),
                         Says("four", "fast")])
    assert chain.choose(req()) == Choice("strong", "one: no match → two: no match → three: long input", 0.75)


def test_a_reason_that_already_names_its_link_is_not_named_twice():
    assert ChainPolicy([Says("rules", "a", "rules: x")]).choose(req()) == Choice("a", "rules: x")
    assert ChainPolicy([Says("rules", "a", "rulesx: y")]).choose(req()) == Choice("a", "rules: rulesx: y")
    assert ChainPolicy([Says("rules", "a", "x rules: y")]).choose(req()) == Choice("a", "rules: x rules: y")


def test_a_chain_with_no_opinion_has_none():
    assert ChainPolicy([Says("one", None), Says("two", None)]).choose(req()) is None


# -- base: the learn extra's error ---------------------------------------------------------------------


def test_a_missing_learn_package_is_named_with_the_install_line():
    error = learn_extra_missing("policy 'knn'", ModuleNotFoundError("x", name="sklearn.neighbors._base"))
    assert type(error) is ImportError
    assert str(error) == ("policy 'knn' needs the 'learn' extra (sklearn is not installed): "
                          "pip install 'steproute[learn]'")


@pytest.mark.parametrize("name", [None, "yaml", "numpyx", "x.numpy"])
def test_another_missing_module_is_its_own_error(name):
    exc = ModuleNotFoundError("x", name=name)
    assert learn_extra_missing("policy 'knn'", exc) is exc
