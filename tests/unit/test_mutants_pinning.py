"""Tests that kill mutmut mutants of steproute/pinning.py and steproute/_pin_keeper.py (see
docs/architecture.md, "Mutation testing").

They assert what a call follows and what the pin store holds afterwards, through the pin
keeper (the one writer of pins) and the pure pin rules.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from steproute._pin_keeper import PinKeeper, preferred_model, without_warm
from steproute._plan import StepPlan
from steproute.pinning import InMemoryPinStore, Pin, PinAction, PinSettings, apply_pin, pin_after, warm_note
from steproute.policies import FixedPolicy
from steproute.turns import request_turn
from steproute.types import Decision, StepRequest

RANK = {"fast": 0, "standard": 1, "advanced": 2}
MODELS = {"fast": "openai/fast-1", "standard": "openai/standard-1", "advanced": "openai/advanced-1"}


def plan(mode: str | None = "sticky", low: int = 0, high: int = 2, **settings) -> StepPlan:
    pinning = None if mode is None else PinSettings(mode, "answer", **settings)
    return StepPlan("chat", FixedPolicy("fast"), False, low, high, None, pinning, None)


def decided(tier: str = "fast", thread: str | None = "t1", **kw) -> Decision:
    return Decision(step="answer", kind="chat", tier=tier, model=MODELS[tier], policy="fixed",
                    reason=f"fixed tier {tier!r}", thread=thread, **kw)


class RacingStore(InMemoryPinStore):
    """Another replica makes the thread's first pin between this call's read and its write."""

    def __init__(self, other: Pin) -> None:
        super().__init__()
        self.other = other

    def get(self, thread: str, group: str) -> Pin | None:
        if self.other is not None:
            self.put(thread, group, self.other)
            self.other = None
            return None
        return super().get(thread, group)


# -- PinKeeper.follow / afollow --------------------------------------------------------------------


@pytest.mark.parametrize("sync", [True, False])
def test_no_pinning_or_no_thread_follows_the_decision_and_writes_nothing(sync):
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    for p, d in ((plan(None), decided()), (plan(), decided(thread=None))):
        out = keeper.follow(p, d) if sync else asyncio.run(keeper.afollow(p, d))
        assert out == (d, None)
    assert len(store) == 0


@pytest.mark.parametrize("sync", [True, False])
def test_the_first_call_makes_the_pin_and_the_next_follows_it(sync):
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    follow = keeper.follow if sync else (lambda p, d: asyncio.run(keeper.afollow(p, d)))
    first = decided("standard")
    decision, action = follow(plan(), first)
    assert (decision.tier, decision.pinned, decision.pin_group) == ("standard", False, "answer")
    assert action is not None and action.made and action.write == "absent"
    assert store.get("t1", "answer") == Pin("standard", MODELS["standard"], first.id, action.held.created)
    assert preferred_model(action) is None  # it made the pin: nothing to prefer
    second, followed = follow(plan(), decided("advanced"))
    assert (second.tier, second.pinned, second.policy) == ("standard", True, "pin")
    assert followed is not None and not followed.made and followed.held == store.get("t1", "answer")
    assert preferred_model(followed) == MODELS["standard"]


@pytest.mark.parametrize("sync", [True, False])
def test_a_racing_first_pin_wins_and_the_call_follows_it(sync):
    other = Pin("advanced", MODELS["advanced"], "d-other", 1.0)
    store = RacingStore(other)
    keeper = PinKeeper(store, RANK)
    d = decided("fast")
    decision, action = keeper.follow(plan(), d) if sync else asyncio.run(keeper.afollow(plan(), d))
    assert (decision.tier, decision.pinned) == ("advanced", True)
    assert action is not None and action.held == other and not action.made
    assert store.get("t1", "answer") == other


@pytest.mark.parametrize("sync", [True, False])
def test_an_upgrade_replaces_the_pin(sync):
    store = InMemoryPinStore()
    store.put("t1", "answer", Pin("fast", MODELS["fast"], "d-0", 0.0))
    keeper = PinKeeper(store, RANK)
    d = decided("advanced")
    p = plan("upgrade_only")
    decision, action = keeper.follow(p, d) if sync else asyncio.run(keeper.afollow(p, d))
    assert (decision.tier, decision.pinned) == ("advanced", False) and action is not None and action.made
    assert store.get("t1", "answer").tier == "advanced" and store.get("t1", "answer").decision_id == d.id


class CountingStore(InMemoryPinStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def put(self, thread: str, group: str, pin: Pin) -> None:
        self.writes += 1
        super().put(thread, group, pin)


@pytest.mark.parametrize("sync", [True, False])
def test_following_a_pin_never_writes_it_back(sync):
    """A followed pin is read, not re-written: writing back the pin this call read would undo a
    re-pin another call stored in between (and costs a write per call on a database store)."""
    store = CountingStore()
    store.put("t1", "answer", Pin("standard", MODELS["standard"], "d-0", 0.0))
    keeper = PinKeeper(store, RANK)
    for mode in ("sticky", "upgrade_only"):
        p = plan(mode)
        decision, action = keeper.follow(p, decided("fast")) if sync else asyncio.run(keeper.afollow(p, decided("fast")))
        assert decision.pinned and action is not None and action.write == "none"
    assert store.writes == 1


# -- PinKeeper.settle / asettle -----------------------------------------------------------------------


def _settle(keeper: PinKeeper, sync: bool, action, decision):
    return keeper.settle(action, decision) if sync else asyncio.run(keeper.asettle(action, decision))


@pytest.mark.parametrize("sync", [True, False])
def test_settle_without_an_action_changes_nothing(sync):
    store = InMemoryPinStore()
    d = decided()
    assert _settle(PinKeeper(store, RANK), sync, None, d) is d and len(store) == 0


@pytest.mark.parametrize("sync", [True, False])
@pytest.mark.parametrize("made", [True, False])
def test_a_fallback_tier_never_moves_the_pin(sync, made):
    """Not redundant with ``pin_after``: a stronger tier's model differs from the pinned one, so
    without the ``fallback_from`` guard ``pin_after`` would write the pinned tier with the
    fallback tier's model (and, on a followed pin, count a re-pin)."""
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    pin = Pin("fast", MODELS["fast"], "d-0", 0.0)
    store.put("t1", "answer", pin)
    action = PinAction("t1", PinSettings("sticky", "answer"), pin, "absent" if made else "none", made=made)
    answered = decided("standard", fallback_from="fast")
    out = _settle(keeper, sync, action, answered)
    assert out is answered and out.repinned is False
    assert store.get("t1", "answer") == pin


@pytest.mark.parametrize("sync", [True, False])
def test_another_deployment_of_the_pinned_tier_moves_the_pin(sync):
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    pin = Pin("fast", MODELS["fast"], "d-0", 5.0, turns=2, repins=1)
    store.put("t1", "answer", pin)
    action = PinAction("t1", PinSettings("sticky", "answer"), pin)
    out = _settle(keeper, sync, action, replace(decided("fast"), model="openai/fast-2"))
    assert out.repinned is True
    assert store.get("t1", "answer") == Pin("fast", "openai/fast-2", "d-0", 5.0, turns=3, repins=2)


@pytest.mark.parametrize("sync", [True, False])
def test_the_pinned_model_answering_leaves_a_sticky_pin_as_it_is(sync):
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    pin = Pin("fast", MODELS["fast"], "d-0", 5.0)
    store.put("t1", "answer", pin)
    d = decided("fast")
    out = _settle(keeper, sync, PinAction("t1", PinSettings("sticky", "answer"), pin), d)
    assert out is d and store.get("t1", "answer") == pin


@pytest.mark.parametrize("sync", [True, False])
def test_move_writes_the_cascades_pin(sync):
    store = InMemoryPinStore()
    keeper = PinKeeper(store, RANK)
    action = PinAction("t1", PinSettings("sticky", "answer"), Pin("fast", MODELS["fast"], "d-0", 0.0))
    up = Pin("advanced", MODELS["advanced"], "d-1", 1.0)
    keeper.move(action, up) if sync else asyncio.run(keeper.amove(action, up))
    assert store.get("t1", "answer") == up


def test_preferred_model_only_for_a_followed_pin():
    pin = Pin("fast", MODELS["fast"], "d-0", 0.0)
    settings = PinSettings("sticky", "answer")
    assert preferred_model(None) is None
    assert preferred_model(PinAction("t1", settings, None)) is None
    assert preferred_model(PinAction("t1", settings, pin, made=True)) is None
    assert preferred_model(PinAction("t1", settings, pin)) == MODELS["fast"]


# -- the pin rules ----------------------------------------------------------------------------------


def test_apply_pin_out_of_bounds_or_unknown_tier_is_not_followed():
    settings = PinSettings("sticky", "answer")
    d = decided("standard")
    for pin, low, high in ((Pin("advanced", "m", "d-0", 0.0), 0, 1), (Pin("fast", "m", "d-0", 0.0), 1, 2),
                           (Pin("gone", "m", "d-0", 0.0), 0, 2)):
        out, action = apply_pin(d, pin, settings, "t1", RANK, low, high, 10.0)
        assert (out.tier, out.pinned, out.pin_group) == ("standard", False, "answer")
        assert out.reason == f"fixed tier 'standard'; pinned tier {pin.tier!r} is out of bounds"
        assert action == PinAction("t1", settings, None)


def test_apply_pin_at_the_bounds_is_followed():
    settings = PinSettings("sticky", "answer")
    for tier, low, high in (("fast", 0, 0), ("advanced", 2, 2)):
        pin = Pin(tier, MODELS[tier], "d-0", 0.0)
        out, action = apply_pin(decided(tier), pin, settings, "t1", RANK, low, high, 10.0)
        assert out.pinned and action.held == pin


def test_apply_pin_follows_with_the_reason_and_no_score():
    settings = PinSettings("sticky", "g")
    pin = Pin("fast", MODELS["fast"], "d-0", 0.0)
    out, action = apply_pin(decided("advanced", score=0.7), pin, settings, "t1", RANK, 0, 2, 10.0)
    assert (out.tier, out.policy, out.pinned, out.pin_group, out.score) == ("fast", "pin", True, "g", None)
    assert out.reason == "pinned to tier 'fast' (sticky, group 'g') by d-0"
    assert action == PinAction("t1", settings, pin, "none", made=False)


def test_apply_pin_first_pin_is_made_at_now():
    settings = PinSettings("sticky", "g")
    d = decided("standard")
    out, action = apply_pin(d, None, settings, "t1", RANK, 0, 2, 42.0)
    assert out == replace(d, pin_group="g")
    assert action == PinAction("t1", settings, Pin("standard", MODELS["standard"], d.id, 42.0), "absent", made=True)


@pytest.mark.parametrize(("turns", "seconds", "pin_turns", "age", "due"), [
    (2, None, 1, 0.0, False), (2, None, 2, 0.0, True), (2, None, 3, 0.0, True),
    (None, 60.0, 0, 59.9, False), (None, 60.0, 0, 60.0, True), (None, None, 99, 1e9, False),
    (5, 60.0, 0, 60.0, True), (5, 60.0, 5, 0.0, True),
])
def test_reevaluate_is_due_after_n_turns_or_t_seconds(turns, seconds, pin_turns, age, due):
    settings = PinSettings("reevaluate", "g", after_turns=turns, after_seconds=seconds)
    pin = Pin("fast", MODELS["fast"], "d-0", 100.0, turns=pin_turns)
    d = decided("standard")
    out, action = apply_pin(d, pin, settings, "t1", RANK, 0, 2, 100.0 + age)
    if due:
        assert (out.tier, out.pinned, out.pin_group, out.reason) == (
            "standard", False, "g", "fixed tier 'standard'; pin re-evaluated")
        assert action == PinAction("t1", settings, Pin("standard", MODELS["standard"], d.id, 100.0 + age),
                                   "replace", made=True)
    else:
        assert (out.tier, out.pinned) == ("fast", True) and action.write == "none"


def test_due_only_matters_in_reevaluate_mode():
    settings = PinSettings("sticky", "g", after_turns=1, after_seconds=1.0)
    out, _ = apply_pin(decided("standard"), Pin("fast", "m", "d-0", 0.0, turns=9), settings, "t1", RANK, 0, 2, 1e6)
    assert out.pinned and out.tier == "fast"


@pytest.mark.parametrize(("pinned", "chosen", "upgraded"), [
    ("fast", "standard", True), ("standard", "standard", False), ("advanced", "standard", False)])
def test_upgrade_only_moves_only_to_a_stronger_tier(pinned, chosen, upgraded):
    settings = PinSettings("upgrade_only", "g")
    pin = Pin(pinned, MODELS[pinned], "d-0", 0.0)
    d = decided(chosen)
    out, action = apply_pin(d, pin, settings, "t1", RANK, 0, 2, 7.0)
    if upgraded:
        assert out.reason == f"fixed tier {chosen!r}; upgraded from pinned tier {pinned!r}" and not out.pinned
        assert out.pin_group == "g"
        assert action == PinAction("t1", settings, Pin(chosen, MODELS[chosen], d.id, 7.0), "replace", made=True)
    else:
        assert (out.tier, out.pinned) == (pinned, True) and action.write == "none"


def test_pin_after_counts_turns_only_for_a_followed_reevaluate_pin_by_turns():
    pin = Pin("fast", MODELS["fast"], "d-0", 3.0, turns=4, repins=2)
    turns = PinSettings("reevaluate", "g", after_turns=9)
    assert pin_after(PinAction("t", turns, pin), decided("fast")) == (Pin("fast", MODELS["fast"], "d-0", 3.0, 5, 2),
                                                                       False)
    assert pin_after(PinAction("t", turns, pin, made=True), decided("fast")) == (None, False)
    assert pin_after(PinAction("t", PinSettings("reevaluate", "g", after_seconds=9.0), pin), decided("fast")) == (
        None, False)
    assert pin_after(PinAction("t", PinSettings("sticky", "g"), pin), decided("fast")) == (None, False)
    assert pin_after(PinAction("t", turns, None), decided("fast")) == (None, False)


def test_pin_after_a_made_pin_answered_by_another_deployment_is_no_repin():
    pin = Pin("fast", MODELS["fast"], "d-0", 3.0, turns=4, repins=2)
    other = replace(decided("fast"), model="openai/fast-2")
    assert pin_after(PinAction("t", PinSettings("sticky", "g"), pin, made=True), other) == (
        Pin("fast", "openai/fast-2", "d-0", 3.0, 4, 2), False)
    assert pin_after(PinAction("t", PinSettings("sticky", "g"), pin), other) == (
        Pin("fast", "openai/fast-2", "d-0", 3.0, 5, 3), True)


# -- stored pins ------------------------------------------------------------------------------------


def test_a_pin_round_trips_through_a_dict_and_a_malformed_one_is_no_pin():
    pin = Pin("fast", "openai/fast-1", "d-1", 2.5, turns=3, repins=1)
    assert pin.to_dict() == {"tier": "fast", "model": "openai/fast-1", "decision_id": "d-1", "created": 2.5,
                             "turns": 3, "repins": 1}
    assert Pin.from_dict(pin.to_dict()) == pin
    old = {"tier": "fast", "model": "m", "decision_id": "d", "created": "1.5"}  # stored before turns/repins
    assert Pin.from_dict(old) == Pin("fast", "m", "d", 1.5, 0, 0)
    for bad in (None, {}, {**old, "created": "soon"}, {**old, "turns": None}, {"tier": "fast"}, [1, 2],
                {**old, "repins": "x"}):
        assert Pin.from_dict(bad) is None


@pytest.mark.parametrize(("text", "label"), [
    ("user@x.com", "user@x%2Ecom"), ("t-1", "t-1"), ("", "%"), ("a%b", "a%25b"), ("a\x00b", "a%00b"),
    ("%", "%25"), ("..", "%2E%2E"),
])
def test_store_labels_encode_and_decode_one_to_one(text, label):
    from steproute.pinning import decode_store_label, encode_store_label

    assert encode_store_label(text) == label
    assert decode_store_label(label) == text


def test_a_decoded_label_leaves_other_percent_text_alone():
    from steproute.pinning import decode_store_label

    assert decode_store_label("a%2e%zz%4") == "a%2e%zz%4"  # only upper-case two-digit escapes


def test_keyed_locks_hold_one_key_at_a_time_and_drop_it_after():
    import threading

    from steproute.pinning import KeyedLocks

    with pytest.raises(ValueError, match=r"^KeyedLocks: max_keys must be at least 1$"):
        KeyedLocks(max_keys=0)
    assert KeyedLocks().max_keys == 32 and KeyedLocks(max_keys=1).max_keys == 1
    locks = KeyedLocks(max_keys=2)
    entered = threading.Event()
    with locks.hold("a"):
        with locks.hold("b"):  # another key: not blocked
            assert len(locks) == 2
        assert len(locks) == 1

        def other():
            with locks.hold("a"):
                entered.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.2)  # the same key waits
    thread.join(5)
    assert entered.is_set() and len(locks) == 0


def test_keyed_locks_bound_the_keys_held_at_once():
    import threading

    from steproute.pinning import KeyedLocks

    locks = KeyedLocks(max_keys=1)
    entered = threading.Event()

    def other():
        with locks.hold("b"):
            entered.set()

    with locks.hold("a"):
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.2)  # a second key waits for the one slot
    thread.join(5)
    assert entered.is_set()


def test_the_memory_store_refuses_bad_bounds():
    for kwargs, message in (({"max_entries": 0}, "InMemoryPinStore: max_entries must be at least 1"),
                            ({"ttl_seconds": 0}, "InMemoryPinStore: ttl_seconds must be positive (or None for no expiry)"),
                            ({"ttl_seconds": -1.0}, "InMemoryPinStore: ttl_seconds must be positive (or None for no expiry)")):
        with pytest.raises(ValueError) as excinfo:
            InMemoryPinStore(**kwargs)
        assert str(excinfo.value) == message
    store = InMemoryPinStore()
    assert (store.max_entries, store.ttl_seconds) == (100_000, 24 * 3600)
    assert InMemoryPinStore(max_entries=1, ttl_seconds=None).ttl_seconds is None


def test_the_memory_store_drops_the_least_recently_used_pin():
    store = InMemoryPinStore(max_entries=2)
    a, b, c = (Pin(t, "m", f"d-{t}", 0.0) for t in ("a", "b", "c"))
    store.put("t1", "g", a)
    store.put("t2", "g", b)
    assert store.get("t1", "g") == a  # t1 used last: t2 is the least recently used
    store.put("t3", "g", c)
    assert (store.get("t1", "g"), store.get("t2", "g"), store.get("t3", "g")) == (a, None, c)
    assert len(store) == 2
    assert store.put_if_absent("t3", "g", a) == c and store.put_if_absent("t4", "g", a) == a
    assert store.get("t1", "g") is None  # t1 was the least recently used when t4 came


def test_the_memory_store_forgets_a_pin_after_its_ttl_since_last_use():
    import time

    store = InMemoryPinStore(ttl_seconds=0.3)
    pin = Pin("fast", "m", "d", 0.0)
    store.put("t", "g", pin)
    time.sleep(0.2)
    assert store.get("t", "g") == pin  # used: its clock restarts
    time.sleep(0.2)
    assert store.get("t", "g") == pin
    time.sleep(0.4)
    assert store.get("t", "g") is None and len(store) == 0
    assert asyncio.run(store.aput_if_absent("t", "g", pin)) == pin
    assert asyncio.run(store.aget("t", "g")) == pin


def test_the_basestore_keeps_pins_under_encoded_labels():
    from langgraph.store.memory import InMemoryStore

    from steproute.pinning import BaseStorePinStore

    backing = InMemoryStore()
    pins = BaseStorePinStore(backing)
    assert (pins.prefix, pins.lock, pins.store) == (("steproute", "pins"), None, backing)
    pin = Pin("fast", "m", "d-1", 1.0)
    pins.put("user@x.com", "a.b", pin)
    item = backing.get(("steproute", "pins", "user@x%2Ecom"), "a%2Eb")
    assert item is not None and item.value == pin.to_dict()
    assert pins.get("user@x.com", "a.b") == pin and pins.get("user@x.com", "other") is None
    custom = BaseStorePinStore(backing, prefix=("my.app",))
    custom.put("", "g", pin)
    assert backing.get(("my%2Eapp", "%"), "g").value == pin.to_dict()
    asyncio.run(custom.aput("t", "g", pin))
    assert asyncio.run(custom.aget("t", "g")) == pin and asyncio.run(custom.aget("t", "h")) is None


class CountingLock:
    """A lock factory that records each (thread, group) it is asked for, and whether it was held
    when the store wrote."""

    def __init__(self, before_enter=None) -> None:
        self.asked: list[tuple[str, str]] = []
        self.held = False
        self.before_enter = before_enter

    def __call__(self, thread: str, group: str):
        import contextlib

        self.asked.append((thread, group))

        @contextlib.contextmanager
        def hold():
            if self.before_enter is not None:
                self.before_enter()
            self.held = True
            try:
                yield
            finally:
                self.held = False

        return hold()


@pytest.mark.parametrize("sync", [True, False])
def test_basestore_put_if_absent_takes_the_lock_only_to_make_the_first_pin(sync):
    from langgraph.store.memory import InMemoryStore

    from steproute.pinning import BaseStorePinStore

    lock = CountingLock()
    pins = BaseStorePinStore(InMemoryStore(), lock=lock)
    first, second = Pin("fast", "m", "d-1", 1.0), Pin("advanced", "m2", "d-2", 2.0)
    put = pins.put_if_absent if sync else (lambda *a: asyncio.run(pins.aput_if_absent(*a)))
    assert put("t", "g", first) == first
    assert lock.asked == [("t", "g")]
    assert put("t", "g", second) == first  # already there: no lock
    assert lock.asked == [("t", "g")] and pins.get("t", "g") == first


@pytest.mark.parametrize("sync", [True, False])
def test_basestore_put_if_absent_rereads_under_the_lock(sync):
    """Another replica wrote between the first read and taking the lock: its pin wins."""
    from langgraph.store.memory import InMemoryStore

    from steproute.pinning import BaseStorePinStore

    backing = InMemoryStore()
    theirs = Pin("advanced", "m2", "d-2", 2.0)
    pins = BaseStorePinStore(backing)
    pins.lock = CountingLock(before_enter=lambda: pins.put("t", "g", theirs))
    mine = Pin("fast", "m", "d-1", 1.0)
    out = pins.put_if_absent("t", "g", mine) if sync else asyncio.run(pins.aput_if_absent("t", "g", mine))
    assert out == theirs and pins.get("t", "g") == theirs


def test_basestore_async_put_if_absent_without_a_lock_writes_and_reads_back():
    from langgraph.store.memory import InMemoryStore

    from steproute.pinning import BaseStorePinStore

    pins = BaseStorePinStore(InMemoryStore())
    pin = Pin("fast", "m", "d-1", 1.0)
    assert asyncio.run(pins.aput_if_absent("t", "g", pin)) == pin
    assert asyncio.run(pins.aput_if_absent("t", "g", Pin("x", "y", "z", 0.0))) == pin


@pytest.mark.parametrize("mode", ["sticky", "upgrade_only"])
def test_through_the_router_a_fallback_answer_leaves_the_pin_on_its_own_tiers_model(mode):
    """The same through the public router: the pin keeps the fast tier *and* its model (without
    the keeper's ``fallback_from`` guard the pin kept tier 'fast' with the standard tier's model,
    which tests/unit/test_fallback.py, reading only the pin's tier, let through)."""
    from steproute import RouterConfig, StepRequest, StepRouter
    from tests.conftest import mock_tiers

    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = "litellm.InternalServerError"
    fast_model = tiers["fast"]["models"][0]["model"]
    router = StepRouter(RouterConfig(tiers=tiers, default="fast", pinning={"mode": mode}))
    request = StepRequest("s", [{"role": "user", "content": "hi"}], thread="t")
    first = router.complete(request).decision
    assert first.fallback_from == "fast"
    pin = router.pin_store.get("t", "s")
    assert (pin.tier, pin.model, pin.decision_id, pin.repins) == ("fast", fast_model, first.id, 0)
    second = asyncio.run(router.acomplete(request)).decision
    assert (second.fallback_from, second.repinned) == ("fast", False)
    assert router.pin_store.get("t", "s") == pin


@pytest.mark.parametrize("sync", [True, False])
def test_basestore_put_if_absent_returns_what_the_store_holds_after_the_write(sync):
    """Without a lock two replicas may both write the first pin; each call returns the pin read
    back after its write (the last writer's), so both follow the one the store keeps."""
    from langgraph.store.memory import InMemoryStore

    from steproute.pinning import BaseStorePinStore

    theirs = Pin("advanced", "m2", "d-2", 2.0)

    class Raced(InMemoryStore):
        """Another replica's write lands right after this call's."""

        def put(self, namespace, key, value, *args, **kwargs):
            super().put(namespace, key, value, *args, **kwargs)
            if value != theirs.to_dict():
                super().put(namespace, key, theirs.to_dict())

        async def aput(self, namespace, key, value, *args, **kwargs):
            self.put(namespace, key, value, *args, **kwargs)

    pins = BaseStorePinStore(Raced())
    mine = Pin("fast", "m", "d-1", 1.0)
    out = pins.put_if_absent("t", "g", mine) if sync else asyncio.run(pins.aput_if_absent("t", "g", mine))
    assert out == theirs


# -- the warm deployment (the pin's deployment tried first) ---------------------------------------------


def test_a_re_evaluated_pin_on_its_tier_adds_the_warm_note_to_the_decisions_reason():
    d = decided("fast")
    settings = PinSettings("reevaluate", "answer", after_seconds=1.0)
    out, _ = apply_pin(d, Pin("fast", "openai/fast-2", "d-0", 0.0), settings, "t1", RANK, 0, 2, 5.0)
    assert out.reason == ("fixed tier 'fast'; pin re-evaluated; "
                          "deployment 'openai/fast-2' first (it served this conversation last)")
    same, _ = apply_pin(d, Pin("fast", MODELS["fast"], "d-0", 0.0), settings, "t1", RANK, 0, 2, 5.0)
    assert same.reason == "fixed tier 'fast'; pin re-evaluated"  # the tier's first deployment: nothing to say


def test_without_warm_takes_only_the_pins_warm_note_off_the_reason():
    held = Pin("fast", "openai/fast-2", "d-0", 0.0)
    d = decided("fast")
    warm = replace(d, reason=f"{d.reason}{warm_note('openai/fast-2')}; needs vision")
    action = PinAction("t1", PinSettings("reevaluate", "answer", after_seconds=1.0), held, "replace", made=True, carried=True)
    assert without_warm(warm, action).reason == "fixed tier 'fast'; needs vision"
    assert without_warm(warm, None) is warm
    assert without_warm(warm, replace(action, held=None)) is warm


@pytest.mark.parametrize("sync", [True, False])
def test_a_turn_pin_followed_without_the_calls_messages_is_made_with_no_turn(sync):
    keeper = PinKeeper(InMemoryPinStore(), RANK)
    turn_plan = plan("turn")
    d = decided("fast")
    out, action = keeper.follow(turn_plan, d) if sync else asyncio.run(keeper.afollow(turn_plan, d))
    assert (out.tier, action.made, action.held.turn) == ("fast", True, None)
    assert keeper.store.get("t1", "answer").turn is None


@pytest.mark.parametrize("sync", [True, False])
def test_a_racing_first_turn_pin_of_the_same_turn_wins_and_the_call_follows_it(sync):
    request = StepRequest("answer", [{"role": "user", "content": "book a table"}], thread="t1")
    other = Pin("advanced", MODELS["advanced"], "d-other", 1.0, turn=request_turn(request))
    store = RacingStore(other)
    keeper = PinKeeper(store, RANK)
    d = decided("fast")
    turn_plan = plan("turn")
    decision, action = (keeper.follow(turn_plan, d, request) if sync
                        else asyncio.run(keeper.afollow(turn_plan, d, request)))
    assert (decision.tier, decision.pinned, decision.reason) == (
        "advanced", True, "pinned for this turn: tier 'advanced' (turn, group 'answer') by d-other")
    assert action is not None and action.held == other and not action.made
    assert store.get("t1", "answer") == other
