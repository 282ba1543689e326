"""Tests that kill mutmut mutants of steproute/policies/llm_judge.py (see docs/architecture.md, "Mutation testing").

The routing call is a plain function (the policy's ``ask``), so each test reads what the routing
model is asked, word for word, and what the policy makes of each answer.
"""

from __future__ import annotations

import pytest

from steproute.policies.base import Choice
from steproute.policies.llm_judge import DEFAULT_INSTRUCTIONS, LLMRouterPolicy, parse_tier
from steproute.types import StepRequest

TIERS = ["fast", "Strong"]


@pytest.mark.parametrize(("text", "tier"), [
    ("fast", "fast"),
    ("FAST", "fast"),
    ("strong", "Strong"),             # any case; the configured spelling comes back
    (" \t\r\n\"'`*.fast.*`'\"\n\r\t ", "fast"),
    ("**Strong**.", "Strong"),
    ("fast or strong", None),
    ("fastest", None),
    ("", None),
    ('{"tier": "fast"}', "fast"),
    ('{"tier": " `STRONG`. "}', "Strong"),
    ('{"tier": "fast"', "fast"),      # a JSON object cut before its closing brace (was a bug: the quote was stripped)
    ('{"tier": "fast" ', "fast"),
    ("'{\"tier\": \"Strong\"", "Strong"),
    ('{"tier": "fast"`.', "fast"),
    ('{"tier": "fast', None),         # cut inside the name: it may go on
    ('{"tier": "fast", "why": "short"', "fast"),
    ('"{"tier": "fast"}"', "fast"),
    ("'{\"tier\": \"fast\"'", "fast"),
    ('{"tier": "fast"X', None),       # after a cut object only whitespace, quotes, backticks, * and . are stripped
    ('{"why": "{", "tier": "fast"', "fast"),   # read from its first brace
    ('`{"tier": "fast"}`', "fast"),
    ('{"tier": "fast"}}', None),
    ('{"tier": 3}', None),
    ('{"tier": "medium"}', None),
    ('{"name": "fast"}', None),
    ("{fast", None),
    ('["fast"]', None),
])
def test_parse_tier(text, tier):
    assert parse_tier(text, TIERS) == tier


def test_parse_tier_reads_a_json_tier_only_from_an_object():
    assert parse_tier('{"tier": "fast", "why": "short"}', TIERS) == "fast"
    assert parse_tier('{"tier": null}', TIERS) is None


def policy(answer="fast", *, fail: Exception | None = None, **kw) -> tuple[LLMRouterPolicy, list]:
    asked: list = []

    def ask(tier, messages, max_tokens):
        asked.append((tier, messages, max_tokens))
        if fail is not None:
            raise fail
        return answer

    return LLMRouterPolicy(ask, "router", {"fast": "short answers", "strong": ""}, "strong", **kw), asked


def test_defaults():
    p, _ = policy()
    assert (p.name, p.blocking, p.router_tier, p.choices, p.fallback) == ("llm", True, "router",
                                                                          {"fast": "short answers", "strong": ""}, "strong")
    assert (p.instructions, p.max_tokens, p.calls, p.unparsable, p.failed) == (DEFAULT_INSTRUCTIONS, 8, 0, 0, 0)
    assert policy(instructions="")[0].instructions == DEFAULT_INSTRUCTIONS
    assert policy(instructions="Pick.")[0].instructions == "Pick."
    assert DEFAULT_INSTRUCTIONS == ("You route requests to the cheapest model tier that will answer them well. "
                                    "Read the request and reply with exactly one tier name and nothing else.")


def test_the_routing_question_word_for_word():
    p, _ = policy(instructions="Pick a tier.")
    request = StepRequest("answer", [{"role": "system", "content": "secret"}, {"role": "user", "content": "first"},
                                     {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"},
                                     {"role": "user", "content": "Prove it."}], kind="synthesis")
    assert p.messages(request) == [
        {"role": "system", "content": "Pick a tier.\n\nTiers, cheapest first:\n- fast: short answers\n- strong"},
        {"role": "user", "content": "Step: answer (a synthesis step)\n\nEarlier in the conversation the user said:\n"
                                    "second\nfirst\n\nRequest:\nProve it.\n\nAnswer with one of: fast, strong."},
    ]
    alone = StepRequest("answer", [{"role": "user", "content": "Hi"}])
    assert p.messages(alone)[1] == {"role": "user",
                                    "content": "Step: answer\n\nRequest:\nHi\n\nAnswer with one of: fast, strong."}


def test_the_question_keeps_the_first_4000_characters_of_the_request_and_1000_of_the_context():
    p, _ = policy()
    request = StepRequest("s", [{"role": "user", "content": "c" * 999 + "CC"}, {"role": "user", "content": "q" * 3999 + "QQ"}])
    content = p.messages(request)[1]["content"]
    assert ("c" * 999 + "C\n\n") in content and "CC" not in content
    assert ("q" * 3999 + "Q\n\n") in content and "QQ" not in content


def test_an_answer_names_the_tier_and_the_call_is_counted():
    p, asked = policy(" Strong. ", max_tokens=5)
    request = StepRequest("s", [{"role": "user", "content": "Hi"}])
    assert p.choose(request) == Choice("strong", "llm: router answered 'strong'")
    assert asked == [("router", p.messages(request), 5)]
    assert (p.calls, p.unparsable, p.failed) == (1, 0, 0)


@pytest.mark.parametrize(("answer", "chars"), [("maybe fast?", 11), (None, 0), ("", 0)])
def test_an_unparsable_answer_goes_to_the_fallback_and_is_counted(answer, chars):
    p, _ = policy(answer)
    assert p.choose(StepRequest("s", [])) == Choice("strong", f"llm: unparsable routing answer ({chars} chars); "
                                                             "fallback 'strong'")
    p.choose(StepRequest("s", []))
    assert (p.calls, p.unparsable, p.failed) == (2, 2, 0)


def test_an_empty_answer_names_no_tier_whatever_the_tiers_are_called():
    p = LLMRouterPolicy(lambda tier, messages, max_tokens: None, "router", {"xxxx": "", "strong": ""}, "strong")
    assert p.choose(StepRequest("s", [])) == Choice("strong", "llm: unparsable routing answer (0 chars); fallback 'strong'")


def test_a_failed_routing_call_goes_to_the_fallback_and_is_counted():
    p, _ = policy(fail=TimeoutError("slow"))
    assert p.choose(StepRequest("s", [])) == Choice("strong", "llm: the routing call failed (TimeoutError); "
                                                              "fallback 'strong'")
    p.choose(StepRequest("s", []))
    assert (p.calls, p.unparsable, p.failed) == (2, 0, 2)
