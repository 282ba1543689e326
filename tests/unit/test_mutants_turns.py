"""Tests that kill mutmut mutants of steproute/turns.py (see docs/architecture.md, "Mutation testing").

A turn's fingerprint is stored on ``turn`` pins (in a shared store too), so it must be the same
in every process and release: the golden fingerprints below were taken from this release, and
a change to how the count, the text or the message before are hashed breaks the pins already
stored.
"""

from __future__ import annotations

from steproute.turns import request_turn, turn_of
from steproute.types import StepRequest


def user(text: object) -> dict[str, object]:
    return {"role": "user", "content": text}


BEFORE = {"role": "assistant", "id": "msg-1", "content": [{"type": "text", "text": "Which city?"}],
          "tool_calls": [{"id": "c1", "type": "function"}, {"id": "c2"}, "not a call"]}
TOOL = {"role": "tool", "tool_call_id": "c2", "content": "18 C"}


def test_golden_fingerprints_stay_the_same_across_releases():
    assert turn_of([]) == GOLDEN["none"]
    assert turn_of([user("Weather in Paris?")]) == GOLDEN["opening"]
    assert turn_of([user("hi"), BEFORE, user("Lyon")]) == GOLDEN["after an assistant"]
    assert turn_of([user("hi"), TOOL, user("Lyon")]) == GOLDEN["after a tool result"]
    assert turn_of([user("\ud800 lone surrogate")]) == GOLDEN["surrogate"]


GOLDEN = {
    "none": "2b69ff924c007fc2",
    "opening": "9dcea7116344f9ad",
    "after an assistant": "01420759effb3959",
    "after a tool result": "cf0b1533fbe47169",
    "surrogate": "584d9749c9b99578",
}


def test_each_part_of_the_message_before_names_the_turn():
    base = turn_of([user("hi"), BEFORE, user("Lyon")])
    changed = [{**BEFORE, "role": "system"}, {**BEFORE, "id": "msg-2"}, {**BEFORE, "tool_call_id": "c9"},
               {**BEFORE, "tool_calls": [{"id": "c1"}]}, {**BEFORE, "content": "Which town?"}]
    turns = {turn_of([user("hi"), other, user("Lyon")]) for other in changed}
    assert len(turns) == len(changed) and base not in turns
    # what is not text or a call names nothing: a missing id, an id that is no string, calls that are no list
    plain = {"role": "assistant", "content": "ok"}
    same = [plain, {**plain, "id": None}, {**plain, "id": 7}, {**plain, "id": ""}, {**plain, "tool_calls": {"id": "c1"}},
            {**plain, "tool_calls": None}, {**plain, "tool_calls": ["c1", None]}, {**plain, "tool_call_id": 3}]
    assert len({turn_of([user("hi"), m, user("Lyon")]) for m in same}) == 1


def test_a_user_message_opening_the_list_has_no_message_before_it():
    assert turn_of([user("Lyon")]) != turn_of([{}, user("Lyon")]) != turn_of([user("Lyon"), user("Lyon")])
    assert turn_of([user("Lyon"), {"role": "assistant", "content": "x"}]) == turn_of([user("Lyon")])


def test_the_count_and_the_last_user_text_name_the_turn():
    assert turn_of([user("a"), user("b")]) != turn_of([user("b")])
    assert turn_of([user([{"type": "text", "text": "b"}])]) == turn_of([user("b")])
    assert turn_of([{"role": "assistant", "content": "x"}]) == turn_of([])  # no user message: the empty text's turn
    assert request_turn(StepRequest("s", [user("b")])) == turn_of([user("b")])
