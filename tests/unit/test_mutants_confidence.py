"""Tests that kill mutmut mutants of steproute/policies/confidence.py (see docs/architecture.md, "Mutation testing")."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from steproute.policies.confidence import (
    JUDGE_PROMPT,
    Answer,
    ConsistencySignal,
    HedgingSignal,
    JudgeSignal,
    LogprobSignal,
    SchemaSignal,
    ToolCallSignal,
    answer_key,
    parse_json_answer,
)
from steproute.types import StepRequest


def ask(*texts: str, **kw: Any) -> StepRequest:
    return StepRequest("s", [{"role": "user", "content": t} for t in texts], **kw)


class Probe:
    """Answers ``samples`` from a script and ``ask`` with ``reply``; records both."""

    def __init__(self, samples: Sequence[str] = (), reply: str | None = "yes") -> None:
        self.scripted, self.reply = list(samples), reply
        self.calls: list[Any] = []

    def samples(self, n: int) -> list[Answer]:
        self.calls.append(("samples", n))
        return [Answer(t) for t in self.scripted[:n]]

    def ask(self, tier: str, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> str | None:
        self.calls.append(("ask", tier, messages, max_tokens))
        return self.reply


# -- logprob --------------------------------------------------------------------------------------


def test_the_logprob_signal_reads_the_mean_or_the_least_log_probability():
    answer = Answer("12", logprobs=(-0.5, -1.0, -3.0))
    assert LogprobSignal().score(None, answer, None) == pytest.approx(math.exp(-1.5), rel=1e-12)
    assert LogprobSignal(statistic="mean").score(None, answer, None) == pytest.approx(math.exp(-1.5), rel=1e-12)
    assert LogprobSignal(statistic="min").score(None, answer, None) == pytest.approx(math.exp(-3.0), rel=1e-12)
    assert LogprobSignal(statistic="max").score(None, answer, None) == pytest.approx(math.exp(-1.5), rel=1e-12)
    assert LogprobSignal().score(None, Answer("12", logprobs=(-0.25,)), None) == pytest.approx(math.exp(-0.25))
    # no log-probabilities, or none at all: no opinion; very unlikely tokens are floored at exp(-50)
    assert LogprobSignal().score(None, Answer("12", logprobs=()), None) is None
    assert LogprobSignal().score(None, Answer("12", logprobs=(-400.0, -400.0)), None) == math.exp(-50.0)
    assert LogprobSignal().score(None, Answer("12", logprobs=(-50.5,)), None) == math.exp(-50.0)


# -- hedging --------------------------------------------------------------------------------------


def test_hedging_is_caseless_and_adds_phrases_to_the_built_in_ones():
    s = HedgingSignal(phrases=(r"\bperhaps\b", r"\bdunno\b"))
    assert [s.score(None, Answer(t), None) for t in ("I'M NOT SURE.", "PERHAPS 12", "dunno", "As an AI, 12", "12")] == \
        [0.0, 0.0, 0.0, 0.0, 1.0]
    plain = HedgingSignal()
    assert plain.score(None, Answer("perhaps 12"), None) == 1.0 and plain.score(None, Answer("i apologise"), None) == 0.0
    assert plain.score(None, Answer("", (("add", "{}"),)), None) is None
    assert plain.score(None, Answer(""), None) == 0.0


# -- schema ---------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_a_structured_answer_is_the_first_tool_calls_arguments_else_the_text_fenced_or_not():
    assert parse_json_answer(Answer("ignored", (("a", '{"n": 1}'), ("b", '{"n": 2}')))) == {"n": 1}
    assert parse_json_answer(Answer('```json\n{"n": 3}\n```')) == {"n": 3}
    assert parse_json_answer(Answer('  ```\n[1, 2]\n```  ')) == [1, 2]
    assert parse_json_answer(Answer('{"n": 4}')) == {"n": 4}
    with pytest.raises(ValueError):
        parse_json_answer(Answer("```json\nnot json\n```"))


def test_the_schema_signal():
    s = SchemaSignal()
    request = ask("x", response_schema=SCHEMA)
    assert s.score(request, Answer('```json\n{"n": 3}\n```'), None) == 1.0
    assert s.score(request, Answer("", (("Out", '{"n": 3}'),)), None) == 1.0
    assert s.score(request, Answer("", (("Out", '{"n": "3"}'),)), None) == 0.0
    assert s.score(request, Answer('{"m": 3}'), None) == 0.0
    assert s.score(request, Answer("{"), None) == 0.0
    assert s.score(ask("x"), Answer('{"n": 3}'), None) is None
    # the schema's own draft: draft 4 reads exclusiveMaximum as a flag, 2020-12 as a bound
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": True}
    assert s.score(ask("x", response_schema=draft4), Answer("5"), None) == 0.0
    assert s.score(ask("x", response_schema=draft4), Answer("4"), None) == 1.0


# -- tools ----------------------------------------------------------------------------------------

ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}}}


def test_tool_calls_are_checked_against_the_offered_tools():
    s = ToolCallSignal()
    bare = {"type": "function", "function": {"name": "now"}}  # no parameters: any object
    nulled = {"type": "function", "function": {"name": "later", "parameters": None}}
    odd = [{"type": "retrieval"}, {"function": "add"}, {"function": {"name": 5}}]
    request = ask("x", tools=[*odd, ADD, bare, nulled])
    assert s.score(request, Answer("", (("add", '{"a": 1}'),)), None) == 1.0
    assert s.score(request, Answer("", (("now", '{"anything": 1}'), ("later", ""))), None) == 1.0
    assert s.score(request, Answer("", (("now", "[1]"),)), None) == 0.0  # not an object
    assert s.score(request, Answer("", (("later", '"text"'),)), None) == 0.0
    assert s.score(request, Answer("", (("add", ""),)), None) == 0.0  # no arguments: "a" is missing
    assert s.score(request, Answer("", (("add", '{"a": 1}'), ("add", '{"a": "one"}'))), None) == 0.0
    assert s.score(request, Answer("", (("add", '{"a": 1}'), ("add", "{a"))), None) == 0.0
    assert s.score(request, Answer("", (("add", '{"a": 1}'), ("5", "{}"))), None) == 0.0
    assert s.score(request, Answer("", (("add", '{"a": 1}'), ("retrieval", "{}"))), None) == 0.0
    assert s.score(request, Answer("3"), None) is None
    assert s.score(ask("x"), Answer("", (("add", '{"a": 1}'),)), None) == 0.0


# -- consistency ----------------------------------------------------------------------------------


def test_answer_keys():
    assert answer_key(Answer("", (("add", '{"b": 2, "a": 1}'), ("neg", "")))) == '[["add", {"a": 1, "b": 2}], ["neg", {}]]'
    assert answer_key(Answer("ignored 12", (("add", "{a: 1"),))) == json.dumps([["add", "{a: 1"]])
    assert answer_key(Answer("It is 1,250.50 or 7")) == "7"
    assert answer_key(Answer("It is 1,250.50")) == "1250.5"
    assert answer_key(Answer("It is 12.0")) == "12"
    assert answer_key(Answer("It is 100")) == "100"
    assert answer_key(Answer("It is -3.")) == "-3"
    assert answer_key(Answer("  The   Answer is\nYES. ")) == "the answer is yes"
    assert answer_key(Answer("...Paris...")) == "paris"


def test_consistency_is_the_share_of_samples_that_agree():
    probe = Probe(["so 12", "13", "12.0"])
    assert ConsistencySignal(samples=4).score(ask("x"), Answer("12"), probe) == 3 / 4
    assert probe.calls == [("samples", 3)]
    assert ConsistencySignal().score(ask("x"), Answer("14"), Probe(["12", "12"])) == 1 / 3


# -- judge ----------------------------------------------------------------------------------------


def test_the_judge_is_shown_the_request_the_earlier_turns_and_the_answer_word_for_word():
    s = JudgeSignal("fast")
    messages = s.messages(ask("first", "second", "What is 6+6?"), Answer("12"))
    assert messages == [
        {"role": "system", "content": JUDGE_PROMPT},
        {"role": "user", "content": "Earlier in the conversation:\nsecond\nfirst\n\nRequest:\nWhat is 6+6?\n\n"
                                    "Answer:\n12\n\nIs the answer correct and complete? Reply yes or no."}]
    assert JUDGE_PROMPT == ("You check answers. Read the request and the answer, then reply with one word: "
                            "'yes' if the answer is correct and complete, 'no' if it is not.")
    alone = s.messages(ask("q"), Answer("", (("add", '{"a": 1}'),)))[1]["content"]
    assert alone == ('Request:\nq\n\nAnswer:\n[{"tool": "add", "arguments": "{\\"a\\": 1}"}]\n\n'
                     "Is the answer correct and complete? Reply yes or no.")


def test_the_judge_is_shown_at_most_1000_characters_of_context_and_4000_of_request_and_answer():
    context, query, answer = "c" * 999 + "C" * 5, "q" * 3999 + "Q" * 5, "a" * 3999 + "A" * 5
    content = JudgeSignal("fast").messages(ask(context, query), Answer(answer))[1]["content"]
    assert content == (f"Earlier in the conversation:\n{'c' * 999}C\n\nRequest:\n{'q' * 3999}Q\n\n"
                       f"Answer:\n{'a' * 3999}A\n\nIs the answer correct and complete? Reply yes or no.")


@pytest.mark.parametrize(("reply", "score"), [
    ("yes", 1.0), ("Yes.", 1.0), ("  **YES**, it is", 1.0), ("no", 0.0), ("No, 13", 0.0), ("NO", 0.0),
    ("yesterday", None), ("maybe yes", None), ("", None), (None, None), ("nope", None),
])
def test_the_judges_reply(reply: str | None, score: float | None):
    probe = Probe(reply=reply)
    s = JudgeSignal("mid", max_tokens=7)
    assert s.score(ask("q"), Answer("12"), probe) == score
    assert probe.calls == [("ask", "mid", s.messages(ask("q"), Answer("12")), 7)]
    assert JudgeSignal("mid").max_tokens == 4
