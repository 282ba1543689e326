"""Pin mode ``turn``: a user message and the agent's tool loop stay on the model that began the
turn; the next user message is routed afresh. And the warm deployment: a conversation re-decided
onto the same tier stays on the deployment that served it last (docs/pinning.md)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from steproute import ConfigError, Hint, RouterConfig, StepRequest, StepRouter, step
from steproute._pin_keeper import PinKeeper, preferred_model
from steproute._plan import StepPlan
from steproute.pinning import InMemoryPinStore, Pin, PinAction, PinSettings, apply_pin, pin_after
from steproute.policies import FixedPolicy
from steproute.testing import FunctionTransport, Reply, TierCall
from steproute.turns import request_turn, turn_of
from steproute.types import Decision

RANK = {"fast": 0, "standard": 1, "advanced": 2}
MODELS = {"fast": "openai/fast-1", "standard": "openai/standard-1", "advanced": "openai/advanced-1"}
TURN = PinSettings("turn", "answer")


def user(text):
    return {"role": "user", "content": text}


def tool_loop(*opening):
    """The opening messages, then an assistant tool call and its result (inside the turn)."""
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    return [*opening, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "18 C and sunny"}]


def decided(tier="fast", **kw):
    return Decision(step="answer", kind="chat", tier=tier, model=MODELS[tier], policy="rules",
                    reason=f"rule picked {tier!r}", thread="t1", **kw)


# -- what a turn is ----------------------------------------------------------------------------


def test_a_turn_is_its_opening_user_message_through_the_tool_loop():
    opening = [{"role": "system", "content": "be brief"}, user("Weather in Paris?")]
    loop = tool_loop(*opening)
    assert turn_of(opening) == turn_of(loop) == turn_of([*loop, {"role": "assistant", "content": "18 C"}])
    answered = [*loop, {"role": "assistant", "content": "18 C"}]
    assert turn_of([*answered, user("And Lyon?")]) != turn_of(loop)
    # the same words again are a new turn: the count of user messages has grown
    assert turn_of([*answered, user("Weather in Paris?")]) != turn_of(opening)
    request = StepRequest("answer", loop)
    assert request_turn(request) == turn_of(loop)


def test_the_turn_fingerprint_never_carries_the_text():
    secret = "my card is 4111 1111 1111 1111"
    key = turn_of([user(secret)])
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert secret not in json.dumps(Pin("fast", "m", "d-1", 0.0, turn=key).to_dict())


# -- the pure rule: apply_pin ----------------------------------------------------------------------


def test_within_a_turn_the_pin_holds_and_the_reason_says_so():
    pin = Pin("standard", MODELS["standard"], "d-0", 0.0, turn="aaaa")
    out, action = apply_pin(decided("advanced"), pin, TURN, "t1", RANK, 0, 2, 5.0, turn="aaaa")
    assert (out.tier, out.pinned, out.policy, out.score) == ("standard", True, "pin", None)
    assert out.reason == "pinned for this turn: tier 'standard' (turn, group 'answer') by d-0"
    assert action.held is pin and not action.made and action.write == "none"


def test_a_new_turn_is_routed_afresh_and_its_pin_replaces_the_old_one():
    pin = Pin("standard", MODELS["standard"], "d-0", 0.0, turn="aaaa")
    d = decided("fast")
    out, action = apply_pin(d, pin, TURN, "t1", RANK, 0, 2, 5.0, turn="bbbb")
    assert (out.tier, out.pinned, out.policy) == ("fast", False, "rules")
    assert out.reason == "rule picked 'fast'; new turn"
    assert action.made and action.write == "replace"
    assert action.held == Pin("fast", MODELS["fast"], d.id, 5.0, turn="bbbb")


def test_the_first_call_of_a_thread_makes_a_turn_pin():
    d = decided("standard")
    out, action = apply_pin(d, None, TURN, "t1", RANK, 0, 2, 5.0, turn="aaaa")
    assert out.reason == d.reason and action.write == "absent"
    assert action.held == Pin("standard", MODELS["standard"], d.id, 5.0, turn="aaaa")


def test_other_modes_store_no_turn():
    _out, action = apply_pin(decided("fast"), None, PinSettings("sticky", "answer"), "t1", RANK, 0, 2, 5.0,
                            turn="aaaa")
    assert action.held is not None and action.held.turn is None


def test_a_turn_pin_out_of_bounds_is_not_followed():
    pin = Pin("advanced", MODELS["advanced"], "d-0", 0.0, turn="aaaa")
    out, action = apply_pin(decided("fast"), pin, TURN, "t1", RANK, 0, 1, 5.0, turn="aaaa")
    assert out.tier == "fast" and "out of bounds" in out.reason and action.held is None


# -- the warm deployment: a re-decided pin on the same tier keeps the model that served last ----


@pytest.mark.parametrize("settings, pin_turn, now", [
    (TURN, "aaaa", 5.0),                                           # a new turn
    (PinSettings("reevaluate", "answer", after_seconds=1.0), None, 5.0),  # a re-evaluated pin
])
def test_a_pin_decided_again_onto_its_tier_keeps_the_deployment_that_served_last(settings, pin_turn, now):
    pin = Pin("fast", "openai/fast-2", "d-0", 0.0, turn=pin_turn)
    d = decided("fast")
    out, action = apply_pin(d, pin, settings, "t1", RANK, 0, 2, now, turn="bbbb")
    assert action.made and action.carried and action.held.model == "openai/fast-2"
    assert action.held.decision_id == d.id and out.pinned is False
    assert out.reason.endswith("; deployment 'openai/fast-2' first (it served this conversation last)")
    assert preferred_model(action) == "openai/fast-2"


def test_a_pin_decided_onto_another_tier_starts_at_that_tiers_first_deployment():
    pin = Pin("fast", "openai/fast-2", "d-0", 0.0, turn="aaaa")
    out, action = apply_pin(decided("standard"), pin, TURN, "t1", RANK, 0, 2, 5.0, turn="bbbb")
    assert action.held.model == MODELS["standard"] and not action.carried
    assert preferred_model(action) is None and "served this conversation last" not in out.reason


def test_a_carried_deployment_that_fails_is_a_repin():
    held = Pin("fast", "openai/fast-2", "d-1", 5.0, turn="bbbb")
    action = PinAction("t1", TURN, held, "replace", made=True, carried=True)
    pin, repinned = pin_after(action, replace(decided("fast"), model="openai/fast-1"))
    assert repinned and pin == Pin("fast", "openai/fast-1", "d-1", 5.0, repins=1, turn="bbbb")


def test_a_followed_turn_pin_keeps_its_turn_when_another_deployment_answers():
    held = Pin("fast", "openai/fast-1", "d-1", 5.0, turn="bbbb")
    pin, repinned = pin_after(PinAction("t1", TURN, held), replace(decided("fast"), model="openai/fast-2"))
    assert repinned and pin == Pin("fast", "openai/fast-2", "d-1", 5.0, turns=1, repins=1, turn="bbbb")


def test_a_cascade_move_keeps_the_turn():
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    action = PinAction("t1", TURN, Pin("fast", MODELS["fast"], "d-0", 0.0, turn="aaaa"), "absent", made=True)
    keeper.move(action, Pin("advanced", MODELS["advanced"], "d-0", 1.0))
    assert store.get("t1", "answer").turn == "aaaa"
    asyncio.run(keeper.amove(action, Pin("standard", MODELS["standard"], "d-0", 2.0)))
    assert store.get("t1", "answer") == Pin("standard", MODELS["standard"], "d-0", 2.0, turn="aaaa")


def test_stored_pins_round_trip_their_turn_and_old_ones_have_none():
    pin = Pin("fast", "m", "d-1", 1.0, turn="abcd")
    assert Pin.from_dict(pin.to_dict()) == pin
    assert Pin.from_dict({"tier": "fast", "model": "m", "decision_id": "d", "created": 1.0}).turn is None


# -- through the router (FunctionTransport) ------------------------------------------------------

RULES = {"policy": "rules", "fallback": "standard",
         "rules": [{"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"},
                   {"name": "short", "when": {"max_input_tokens": 20}, "tier": "fast"}]}


def turn_router(tiers=None, **pinning):
    transport = FunctionTransport(lambda call: f"from {call.model}")
    tiers = tiers or {t: {"models": [m]} for t, m in MODELS.items()}
    config = RouterConfig(tiers=tiers, default="fast", steps={"answer": RULES},
                          pinning={"mode": "turn", **pinning})
    return StepRouter(config, transport=transport), transport


def test_through_the_router_a_turn_stays_on_its_model_and_the_next_turn_is_routed_afresh():
    r, transport = turn_router()
    turn1 = [user("Weather in Paris?")]
    first = r.complete(StepRequest("answer", turn1, thread="t1")).decision
    assert (first.tier, first.pinned) == ("fast", False)
    # the tool result makes the conversation long: the policy alone would say 'standard'
    loop = tool_loop(*turn1)
    loop[-1]["content"] = "sunny " * 40
    assert r.decide(StepRequest("answer", loop, thread="t1")).tier == "standard"
    inside = r.complete(StepRequest("answer", loop, thread="t1")).decision
    assert (inside.tier, inside.pinned, inside.policy) == ("fast", True, "pin")
    assert inside.reason == f"pinned for this turn: tier 'fast' (turn, group 'answer') by {first.id}"
    # the next user message: the policy decides again, and that decision is the new pin
    turn2 = [*loop, {"role": "assistant", "content": "Sunny."}, user("prove it")]
    second = r.complete(StepRequest("answer", turn2, thread="t1")).decision
    assert (second.tier, second.pinned) == ("advanced", False)
    assert second.reason.startswith("rule 'hard' matched") and second.reason.endswith("; new turn")
    assert r.pin_store.get("t1", "answer").decision_id == second.id
    after_tool = r.complete(StepRequest("answer", tool_loop(*turn2), thread="t1")).decision
    assert (after_tool.tier, after_tool.pinned) == ("advanced", True)
    # a third turn may go down: the old turn's pin does not hold it up
    turn3 = [*tool_loop(*turn2), {"role": "assistant", "content": "Done."}, user("thanks")]
    third = r.complete(StepRequest("answer", turn3, thread="t1")).decision
    assert (third.tier, third.pinned) == ("standard", False)
    assert [c.tier for c in transport.calls] == ["fast", "fast", "advanced", "advanced", "standard"]


def test_turn_pins_async_and_streamed():
    r, _transport = turn_router()
    turn1 = [user("Weather in Paris?")]
    asyncio.run(r.acomplete(StepRequest("answer", turn1, thread="t1")))
    loop = tool_loop(*turn1)
    loop[-1]["content"] = "sunny " * 40
    streamed = list(r.stream(StepRequest("answer", loop, thread="t1")))[-1].decision
    assert (streamed.tier, streamed.pinned) == ("fast", True)
    again = asyncio.run(r.acomplete(StepRequest("answer", loop, thread="t1"))).decision
    assert (again.tier, again.pinned) == ("fast", True)


def test_a_thread_less_call_is_never_pinned():
    r, _ = turn_router()
    loop = tool_loop(user("Weather in Paris?"))
    loop[-1]["content"] = "sunny " * 40
    d = r.complete(StepRequest("answer", loop)).decision
    assert (d.tier, d.pinned) == ("standard", False)


def test_turn_is_a_mode_of_the_config_the_hint_and_the_chat_model():
    assert RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}}, default="fast",
                        pinning={"mode": "turn"}).pinning.mode == "turn"
    assert step("answer", pin="turn")["steproute"]["pin"] == "turn"
    with pytest.raises(ConfigError):
        RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}}, default="fast", pinning={"mode": "turns"})
    r, _ = turn_router()
    d = r.complete(StepRequest("answer", [user("hi")], thread="t9", hint=Hint(pin="sticky"))).decision
    assert r.pin_store.get("t9", "answer").turn is None and d.pin_group == "answer"


def test_a_two_deployment_tier_keeps_the_conversation_on_the_deployment_that_served_it_last():
    down: set[str] = set()

    def answer(call: TierCall):
        if call.model in down:
            raise TimeoutError("down")
        return Reply(f"from {call.model}")

    transport = FunctionTransport(answer)
    tiers = {"fast": {"models": ["openai/fast-1", "openai/fast-2"]}, "standard": {"models": [MODELS["standard"]]},
             "advanced": {"models": [MODELS["advanced"]]}}
    r = StepRouter(RouterConfig(tiers=tiers, default="fast", steps={"answer": RULES}, pinning={"mode": "turn"}),
                   transport=transport)
    down.add("openai/fast-1")
    first = r.complete(StepRequest("answer", [user("hi")], thread="t1")).decision
    assert first.model == "openai/fast-2"
    down.clear()  # fast-1 is back; the conversation stays where its cache is warm
    turn2 = [user("hi"), {"role": "assistant", "content": "hello"}, user("ok")]
    second = r.complete(StepRequest("answer", turn2, thread="t1")).decision
    assert (second.tier, second.model, second.pinned) == ("fast", "openai/fast-2", False)
    assert "deployment 'openai/fast-2' first (it served this conversation last)" in second.reason
    down.add("openai/fast-2")  # the warm one fails: the tier's order, and the pin moves
    inside = r.complete(StepRequest("answer", tool_loop(*turn2), thread="t1")).decision
    assert (inside.model, inside.repinned) == ("openai/fast-1", True)
    down.clear()
    turn3 = [*turn2, {"role": "assistant", "content": "fine"}, user("bye")]
    third = r.complete(StepRequest("answer", turn3, thread="t1")).decision
    assert third.model == "openai/fast-1"
    assert [c.model for c in transport.calls] == ["openai/fast-1", "openai/fast-2", "openai/fast-2",
                                                  "openai/fast-2", "openai/fast-1", "openai/fast-1"]


def test_keeper_follow_reads_the_turn_from_the_request():
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    p = StepPlan("chat", FixedPolicy("fast"), False, 0, 2, None, TURN, None)
    turn1 = [user("hi")]
    keeper.follow(p, decided("fast"), StepRequest("answer", turn1, thread="t1"))
    assert store.get("t1", "answer").turn == turn_of(turn1)
    d, _ = asyncio.run(keeper.afollow(p, decided("advanced"), StepRequest("answer", tool_loop(*turn1), thread="t1")))
    assert (d.tier, d.pinned) == ("fast", True)
    d, _ = keeper.follow(p, decided("advanced"), StepRequest("answer", [*turn1, user("more")], thread="t1"))
    assert (d.tier, d.pinned) == ("advanced", False) and store.get("t1", "answer").tier == "advanced"


def test_a_pin_decided_again_onto_its_tiers_first_deployment_says_nothing_more():
    pin = Pin("fast", MODELS["fast"], "d-0", 0.0, turn="aaaa")
    d = decided("fast")
    out, action = apply_pin(d, pin, TURN, "t1", RANK, 0, 2, 5.0, turn="bbbb")
    assert out.reason == f"{d.reason}; new turn" and action.carried and action.held.model == MODELS["fast"]


def test_a_cascade_move_without_a_held_pin_writes_the_pin_as_it_is():
    store = InMemoryPinStore()
    up = Pin("advanced", MODELS["advanced"], "d-1", 1.0)
    PinKeeper(store, RANK).move(PinAction("t1", TURN, None), up)
    assert store.get("t1", "answer") == up


# -- review 21: a trimmed history (a window of the last messages) -----------------------------


def test_a_trimmed_window_with_one_user_message_still_tells_turns_apart():
    """An app keeping the last 2 messages sends [assistant "part i", user "continue"] each time:
    the user count and the last user text stay the same, the message before it does not."""
    turns = [turn_of([{"role": "assistant", "content": f"part {i}"}, user("continue")]) for i in range(3)]
    assert len(set(turns)) == 3
    # within a turn only messages after the last user message are added: the fingerprint holds
    opening = [{"role": "assistant", "content": "part 0"}, user("continue")]
    assert turn_of(opening) == turn_of(tool_loop(*opening)) == turn_of([*tool_loop(*opening),
                                                                        {"role": "assistant", "content": "x"}])
    request = StepRequest("answer", tool_loop(*opening))
    assert request_turn(request) == turn_of(opening)
    # the message before is hashed with the rest: its text is never stored
    secret = "my card is 4111 1111 1111 1111"
    key = turn_of([{"role": "assistant", "content": secret}, user("continue")])
    assert len(key) == 16 and secret not in key


def test_through_the_router_each_new_user_message_of_a_trimmed_window_is_a_new_turn():
    transport = FunctionTransport(lambda call: "ok")
    config = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}},
                          default="fast",
                          steps={"a": {"policy": "rules", "fallback": "strong", "pinning": {"mode": "turn"},
                                       "rules": [{"when": {"min_turns": 1, "keywords": ["continue"]}, "tier": "fast"}]}})
    r = StepRouter(config, transport=transport)
    for i in range(3):
        window = [{"role": "assistant", "content": f"part {i}"}, user("continue")]
        d = r.complete(StepRequest("a", window, thread="t")).decision
        assert not d.pinned and d.policy == "rules", (i, d.reason)
        assert i == 0 or d.reason.endswith("; new turn")
        inside = r.complete(StepRequest("a", tool_loop(*window), thread="t")).decision
        assert inside.pinned and inside.reason.endswith(f"by {d.id}")


# -- review 21: the warm deployment cannot serve the call (a capability skip is no re-pin) ----


def _vision_router():
    down: set[str] = set()

    def answer(call: TierCall):
        if call.model in down:
            raise TimeoutError("down")
        return Reply(f"from {call.model}")

    transport = FunctionTransport(answer)
    tiers = {"fast": {"models": ["openai/gpt-3.5-turbo"]},
             "standard": {"models": ["openai/gpt-4o-mini", "openai/gpt-3.5-turbo-16k", "openai/gpt-4.1-mini"]}}
    config = RouterConfig(tiers=tiers, default="fast",
                          steps={"st": {"policy": "fixed", "tier": "standard", "pinning": {"mode": "turn"}}})
    return StepRouter(config, transport=transport), transport, down


IMAGE = {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_warm_deployment_skipped_for_a_capability_is_not_first_and_not_a_repin(asynchronous):
    r, transport, down = _vision_router()

    def call(messages):
        request = StepRequest("st", messages, thread="w1")
        return (asyncio.run(r.acomplete(request)) if asynchronous else r.complete(request)).decision

    down.add("openai/gpt-4o-mini")
    turn1 = [user("hi")]
    assert call(turn1).model == "openai/gpt-3.5-turbo-16k"  # the warm deployment is now the 16k one
    down.clear()
    before = r.pin_store.get("w1", "st")
    assert before.model == "openai/gpt-3.5-turbo-16k"
    turn2 = [*turn1, {"role": "assistant", "content": "x"}, IMAGE]  # the 16k deployment cannot see
    d = call(turn2)
    assert d.model == "openai/gpt-4o-mini" and not d.repinned
    assert "first (it served this conversation last)" not in d.reason
    assert "needs vision: skipped openai/gpt-3.5-turbo-16k of 'standard'" in d.reason
    after = r.pin_store.get("w1", "st")
    assert (after.model, after.repins) == ("openai/gpt-3.5-turbo-16k", before.repins)
    # inside the turn (the image is still in the messages): the pin is followed, still no re-pin
    inside = call(tool_loop(*turn2))
    assert (inside.pinned, inside.model, inside.repinned) == (True, "openai/gpt-4o-mini", False)
    assert r.pin_store.get("w1", "st").repins == before.repins
    # a text-only turn: the warm deployment again
    turn3 = [user("hi"), {"role": "assistant", "content": "x"}, user("again"), {"role": "assistant", "content": "y"},
             user("text only")]
    d3 = call(turn3)
    assert d3.model == "openai/gpt-3.5-turbo-16k" and "first (it served this conversation last)" in d3.reason
    assert [c.model for c in transport.calls][-3:] == ["openai/gpt-4o-mini", "openai/gpt-4o-mini",
                                                       "openai/gpt-3.5-turbo-16k"]


def test_a_warm_deployment_that_fails_is_still_a_repin_when_the_call_needs_a_capability():
    r, _transport, down = _vision_router()
    r.complete(StepRequest("st", [user("hi")], thread="w1"))
    assert r.pin_store.get("w1", "st").model == "openai/gpt-4o-mini"
    down.add("openai/gpt-4o-mini")  # the warm one can see, but fails: the tier's order, and a re-pin
    d = r.complete(StepRequest("st", [user("hi"), {"role": "assistant", "content": "x"}, IMAGE], thread="w1")).decision
    assert (d.model, d.repinned) == ("openai/gpt-4.1-mini", True)
    pin = r.pin_store.get("w1", "st")
    assert (pin.model, pin.repins) == ("openai/gpt-4.1-mini", 1)


# -- review 21: a pinned decision names a deployment of its own tier --------------------------


def _sticky_router(fast=("openai/gpt-4o-mini",), strong=("openai/gpt-4o",)):
    config = RouterConfig(tiers={"fast": {"models": list(fast)}, "strong": {"models": list(strong)}}, default="fast",
                          steps={"a": {"policy": "rules", "rules": [{"when": {"keywords": ["hard"]}, "tier": "strong"}],
                                       "fallback": "fast"}})
    return StepRouter(config, transport=FunctionTransport(lambda call: "ok"))


def test_route_on_a_pinned_thread_names_the_pinned_tiers_model():
    r = _sticky_router()
    r.complete(StepRequest("a", [user("hard")], thread="x"))
    d, _ = r.route(StepRequest("a", [user("easy")], thread="x"))
    assert (d.tier, d.model, d.pinned) == ("strong", "openai/gpt-4o", True)
    d, _ = asyncio.run(r.aroute(StepRequest("a", [user("easy")], thread="x")))
    assert (d.tier, d.model) == ("strong", "openai/gpt-4o")
    done = r.complete(StepRequest("a", [user("easy")], thread="x")).decision
    assert (done.tier, done.model) == ("strong", "openai/gpt-4o")


def test_route_names_the_pins_deployment_when_it_is_not_the_tiers_first():
    r = _sticky_router(strong=("openai/gpt-4o", "openai/gpt-4.1"))
    r.pin_store.put("x", "a", Pin("strong", "openai/gpt-4.1", "d-0", 0.0))
    d, _ = r.route(StepRequest("a", [user("easy")], thread="x"))
    assert (d.tier, d.model) == ("strong", "openai/gpt-4.1")
    # a stored pin whose deployment is no longer one of its tier's: the tier's first deployment
    r.pin_store.put("y", "a", Pin("strong", "openai/gone", "d-0", 0.0))
    d, _ = r.route(StepRequest("a", [user("easy")], thread="y"))
    assert (d.tier, d.model) == ("strong", "openai/gpt-4o")
