import pytest

from steproute.config import RulesPolicyConfig
from steproute.policies import FixedPolicy, Policy, RulesPolicy
from steproute.types import StepRequest

TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}


def req(text="hello", *, turns=1, kind=None, tools=(), schema=None, metadata=None):
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": text if i == turns - 1 else "earlier"})
        if i < turns - 1:
            messages.append({"role": "assistant", "content": "ok"})
    return StepRequest("s", messages, kind=kind, tools=tools, response_schema=schema, metadata=metadata or {})


def rules(*rule_list, fallback=None):
    return RulesPolicy.from_config(RulesPolicyConfig(rules=list(rule_list), fallback=fallback))


def test_policies_satisfy_the_protocol():
    assert isinstance(FixedPolicy("fast"), Policy)
    assert isinstance(rules({"when": {}, "tier": "fast"}), Policy)


@pytest.mark.parametrize(
    ("when", "hit", "miss"),
    [
        ({"keywords": ["prove"]}, req("Please PROVE it"), req("improve it")),
        ({"keywords": "step by step"}, req("go step by step now"), req("step and step")),
        ({"regex": r"\d{4}-\d{2}"}, req("due 2026-11"), req("due soon")),
        ({"min_input_tokens": 10}, req("x" * 40), req("x" * 39)),
        ({"max_input_tokens": 10}, req("x" * 40), req("x" * 41)),
        ({"min_turns": 3}, req(turns=3), req(turns=2)),
        ({"max_turns": 1}, req(turns=1), req(turns=2)),
        ({"has_tools": True}, req(tools=(TOOL,)), req()),
        ({"has_tools": False}, req(), req(tools=(TOOL,))),
        ({"has_schema": True}, req(schema={"type": "object"}), req()),
        ({"kind": ["plan", "synthesis"]}, req(kind="plan"), req(kind="rewrite")),
        ({"metadata": {"tenant.plan": "enterprise"}}, req(metadata={"tenant": {"plan": "enterprise"}}),
         req(metadata={"tenant": {"plan": "free"}})),
        ({"metadata": {"tenant.plan": ["pro", "enterprise"]}}, req(metadata={"tenant": {"plan": "pro"}}),
         req(metadata={})),
    ],
)
def test_each_condition_matches_and_misses(when, hit, miss):
    policy = rules({"name": "r", "when": when, "tier": "strong"})
    assert policy.choose(hit).tier == "strong"
    assert policy.choose(miss) is None


def test_conditions_are_anded_and_first_match_wins():
    policy = rules(
        {"name": "both", "when": {"keywords": ["prove"], "min_turns": 2}, "tier": "advanced"},
        {"name": "kw", "when": {"keywords": ["prove"]}, "tier": "standard"},
        fallback="fast",
    )
    assert policy.choose(req("prove it", turns=2)).reason == "rule 'both' matched (turns>=2, keywords ['prove'])"
    assert policy.choose(req("prove it", turns=1)).tier == "standard"
    fallback = policy.choose(req("hi"))
    assert (fallback.tier, fallback.reason) == ("fast", "no rule matched; fallback tier")


def test_unnamed_rules_are_named_by_position():
    policy = rules({"when": {"has_tools": True}, "tier": "a"}, {"when": {}, "tier": "b"})
    assert policy.choose(req()).reason == "rule 'rules[1]' matched (always)"


def test_latest_user_text_reads_content_blocks():
    request = StepRequest("s", [{"role": "user", "content": [{"type": "text", "text": "please prove"}]},
                                {"role": "assistant", "content": "sure"}])
    assert rules({"when": {"keywords": ["prove"]}, "tier": "a"}).choose(request).tier == "a"
