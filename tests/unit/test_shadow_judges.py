"""Shadow mode's judges and its configuration (issue 19, part 3); the call path is in
tests/integration/test_shadow_llmock.py."""

from __future__ import annotations

import pytest

from steproute import RouterConfig, StepRequest, StepRouter
from steproute._shadow_judges import JudgeUnreadable, judge_answers, judge_prompt, parse_verdict, tool_calls_key
from steproute.errors import ConfigError
from steproute.policies.confidence import Answer
from steproute.policy_config import ShadowConfig
from steproute.testing import FunctionTransport, TierCall

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def calls(*pairs: tuple[str, str]) -> Answer:
    return Answer("", tuple(pairs))


@pytest.mark.parametrize(("judge", "live", "candidate", "verdict"), [
    ("exact", "Paris", "Paris", "tie"),
    ("exact", "Paris", "paris", "loss"),
    ("normalised", "Paris.", "  PARIS ", "tie"),
    ("normalised", "Paris", "Lyon", "loss"),
    ("normalised", '{"a": 1, "b": 2}', '```json\n{"b": 2, "a": 1}\n```', "tie"),
    ("normalised", "ﬁne", "fine", "tie"),  # NFKC
])
def test_text_judges(judge, live, candidate, verdict):
    judged = judge_answers(judge, Answer(live), Answer(candidate), None)
    assert (judged.verdict, judged.judge, judged.quality) == (verdict, judge, 0.0 if verdict == "loss" else 1.0)


@pytest.mark.parametrize(("live", "candidate", "verdict"), [
    ('{"n": 1}', '{"n": 2}', "tie"),      # both valid: the schema cannot tell them apart
    ('{"n": "one"}', '{"n": 2}', "win"),
    ('{"n": 2}', "two", "loss"),
    ("no", "nope", "tie"),
])
def test_the_json_schema_judge_ranks_valid_above_invalid(live, candidate, verdict):
    assert judge_answers("json_schema", Answer(live), Answer(candidate), SCHEMA).verdict == verdict


def test_the_json_schema_judge_without_a_schema_judges_normalised_and_says_so():
    judged = judge_answers("json_schema", Answer("ok"), Answer("OK"), None)
    assert (judged.verdict, judged.judge) == ("tie", "normalised")


@pytest.mark.parametrize(("live", "candidate", "verdict"), [
    (calls(("get", '{"city": "Oslo", "unit": "c"}')), calls(("get", '{"unit":"c","city":"Oslo"}')), "tie"),
    (calls(("get", '{"city": "Oslo"}'), ("time", "{}")), calls(("time", "{}"), ("get", '{"city": "Oslo"}')), "tie"),
    (calls(("get", '{"city": "Oslo"}')), calls(("get", '{"city": "Bergen"}')), "loss"),
    (calls(("get", '{"city": "Oslo"}')), calls(("put", '{"city": "Oslo"}')), "loss"),
    (calls(("get", '{"city": "Oslo"}')), Answer("It is sunny."), "loss"),
    (calls(("get", "not json")), calls(("get", '{"city": "Oslo"}')), "win"),
    (calls(("nope", "{}")), calls(("get", "{}")), "win"),  # 'nope' is not an offered tool
    (Answer("Sunny."), calls(("get", '{"city": "Oslo"}')), "win"),
])
def test_a_tool_call_turn_is_judged_by_equivalent_calls_whatever_the_judge(live, candidate, verdict):
    for judge in ("exact", "normalised", "json_schema", "llm"):
        judged = judge_answers(judge, live, candidate, SCHEMA, offered_tools={"get", "put", "time"})
        assert (judged.verdict, judged.judge) == (verdict, "tools")


def test_tool_calls_key_is_none_for_arguments_that_are_not_an_object():
    assert tool_calls_key(calls(("get", "[1]"))) is None
    assert tool_calls_key(calls(("get", ""))) == ("get({})",)


@pytest.mark.parametrize(("reply", "verdict"), [
    ("A", "A"), ("b", "B"), ("TIE", "TIE"), ("**Answer B**", "B"), ("Verdict: A.", "A"), ("'B'", "B"),
    ("Both are equally good", "TIE"), ("tie.", "TIE"), ("Answer: (A)", "A"), ("They are the same", "TIE"),
])
def test_parse_verdict_reads_a_judge_reply_leniently(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize("reply", ["", "I cannot decide, sk-secret-123", "Bee"])
def test_an_unreadable_verdict_raises_without_echoing_the_reply(reply):
    with pytest.raises(JudgeUnreadable) as caught:
        parse_verdict(reply)
    assert "sk-secret" not in str(caught.value) and "decide" not in str(caught.value)


def test_the_llm_judge_asks_its_tier_with_the_live_answer_as_a():
    asked = []

    def ask(tier, messages, max_tokens):
        asked.append((tier, messages, max_tokens))
        return "B", 0.002

    judged = judge_answers("llm", Answer("4"), Answer("5"), None, question="2+2?", ask=ask, judge_tier="strong")
    assert (judged.verdict, judged.judge, judged.cost_usd) == ("win", "llm", 0.002)
    assert asked == [("strong", judge_prompt("2+2?", Answer("4"), Answer("5")), 8)]
    assert "Answer A:\n4\n\nAnswer B:\n5" in asked[0][1][1]["content"]


def test_the_llm_judge_runs_through_a_named_tier_on_the_call_path():
    seen: list[str] = []

    def answer(call: TierCall) -> str:
        seen.append(call.tier)
        if call.step == "shadow-judge":
            return "TIE"
        return "4" if call.tier == "fast" else "four"

    config = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]},
                                 "judge": {"models": ["openai/gpt-4.1-mini"]}},
                          default={"policy": "fixed", "tier": "fast",
                                   "shadow": {"candidate": "strong", "judge": "llm", "judge_tier": "judge"}})
    router = StepRouter(config, transport=FunctionTransport(answer))
    assert router.complete(StepRequest("sum", [{"role": "user", "content": "2+2?"}])).completion.content == "4"
    router.close(timeout=10)
    assert sorted(seen) == ["fast", "judge", "strong"]
    assert router.shadow is not None and router.shadow.counts() == {("sum", "tie"): 1}


def test_an_unreadable_llm_verdict_is_an_error_count_never_the_users():
    def answer(call: TierCall) -> str:
        return "no idea" if call.step == "shadow-judge" else call.tier

    config = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}},
                          default={"policy": "fixed", "tier": "fast",
                                   "shadow": {"candidate": "strong", "judge": "llm", "judge_tier": "strong"}})
    router = StepRouter(config, transport=FunctionTransport(answer))
    assert router.complete(StepRequest("s", [{"role": "user", "content": "q"}])).completion.content == "fast"
    router.close(timeout=10)
    assert router.shadow is not None and router.shadow.counts() == {("s", "error"): 1}


# -- configuration ---------------------------------------------------------------------------


def test_a_candidate_is_a_tier_name_a_tier_entry_or_a_pure_policy():
    assert ShadowConfig(candidate="strong").candidate.tier == "strong"  # type: ignore[union-attr]
    assert ShadowConfig(candidate={"tier": "strong"}).candidate.policy == "fixed"
    rules = ShadowConfig(candidate={"policy": "rules", "rules": [{"when": {"keywords": ["x"]}, "tier": "strong"}]})
    assert rules.candidate.policy == "rules"


@pytest.mark.parametrize(("settings", "message"), [
    ({"candidate": "strong", "unknown": 1}, "Extra inputs are not permitted"),
    ({"candidate": "strong", "sample": 1.5}, "less than or equal to 1"),
    ({"candidate": "strong", "sample": -0.1}, "greater than or equal to 0"),
    ({"candidate": "strong", "max_concurrency": 0}, "greater than or equal to 1"),
    ({"candidate": "strong", "budget_usd_per_day": 0}, "greater than 0"),
    ({"candidate": "strong", "judge": "vibes"}, "Input should be"),
    ({"candidate": "strong", "judge": "llm"}, "judge 'llm' needs judge_tier"),
    ({"candidate": {"policy": "llm", "router_tier": "fast", "fallback": "fast"}}, "'llm' does"),
    ({"candidate": {"policy": "cascade"}}, "'cascade' does"),
    ({"candidate": {"policy": "chain", "policies": [{"policy": "llm", "router_tier": "f", "fallback": "f"}]}},
     "'llm' does"),
    ({"candidate": {"tier": "strong", "shadow": {"candidate": "fast"}}}, "cannot have a shadow"),
])
def test_invalid_shadow_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        ShadowConfig(**settings)


def test_unknown_tiers_in_a_shadow_entry_are_config_problems_at_their_path():
    tiers = {"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}}
    with pytest.raises(ConfigError) as caught:
        RouterConfig(tiers=tiers, default="fast", steps={"plan": {
            "policy": "fixed", "tier": "fast",
            "shadow": {"candidate": "stronk", "judge": "llm", "judge_tier": "juge"}}})
    paths = [p.path for p in caught.value.problems]
    assert paths == ["steps.plan.shadow.candidate.tier", "steps.plan.shadow.judge_tier"]


def test_a_router_without_shadow_entries_has_no_runner(make_router):
    assert make_router().shadow is None
    assert make_router().close() == 0


def test_final_number_judge_compares_the_last_number_of_each_answer():
    from steproute._shadow_judges import judge_answers
    from steproute.policies.confidence import Answer

    # a worked answer and a bare one agree when they end on the same number (commas, signs, decimals)
    assert judge_answers("final_number", Answer("13"), Answer("4 + 9 = 13"), None).verdict == "tie"
    assert judge_answers("final_number", Answer("It is 1,250.50."), Answer("1250.5"), None).verdict == "tie"
    assert judge_answers("final_number", Answer("-7"), Answer("7"), None).verdict == "loss"
    assert judge_answers("final_number", Answer("13"), Answer("4 + 9 = 12"), None).verdict == "loss"
    assert judge_answers("final_number", Answer("13"), Answer("no idea"), None).verdict == "loss"
    # a live answer with no number: nothing to compare by number, judged as normalised text (and said)
    judged = judge_answers("final_number", Answer("Paris."), Answer("paris"), None)
    assert (judged.verdict, judged.judge) == ("tie", "normalised")


def test_final_number_is_a_judge_the_configuration_accepts():
    from steproute.policy_config import ShadowConfig

    assert ShadowConfig(candidate="strong", judge="final_number").judge == "final_number"
