"""Forked workers and store keys: decision ids stay unique across ``fork``; pins in a LangGraph
``BaseStore`` work for any thread id; the per-key lock never blocks unrelated keys."""

from __future__ import annotations

import fcntl
import multiprocessing
import threading
import time
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.pinning import BaseStorePinStore, KeyedLocks, Pin, decode_store_label, encode_store_label
from steproute.types import new_decision_id
from tests.conftest import mock_tiers

ANSWER = {"policy": "rules", "fallback": "standard",
          "rules": [{"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"}]}
FORK = multiprocessing.get_context("fork")
CHILDREN = 4


def make_router(pin_store=None):
    return StepRouter(RouterConfig(tiers=mock_tiers(), default="fast", steps={"answer": ANSWER}), pin_store=pin_store)


def ask(router, text, thread):
    return router.complete(StepRequest("answer", [{"role": "user", "content": text}], thread=thread)).decision


def _ids_child(out):
    router = make_router()
    out.put([ask(router, "hello", None).id for _ in range(3)] + [new_decision_id() for _ in range(20)])


def _join(procs, out):
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_forked_workers_make_distinct_decision_ids():
    parent = [new_decision_id() for _ in range(3)]  # as a gunicorn --preload master would, before forking
    out = FORK.Queue()
    procs = [FORK.Process(target=_ids_child, args=(out,)) for _ in range(CHILDREN)]
    for p in procs:
        p.start()
    ids = [i for batch in _join(procs, out) for i in batch] + parent + [new_decision_id() for _ in range(3)]
    assert len(ids) == len(set(ids)) == CHILDREN * 23 + 6


class _ReadTogether(BaseStorePinStore):
    """A pin store whose first read waits until every worker has read: all of them find no pin
    and race to make the first one (the window forked workers hit under load)."""

    def __init__(self, store, barrier, lock):
        super().__init__(store, lock=lock)
        self.barrier, self.first = barrier, True

    def get(self, thread, group):
        held = super().get(thread, group)
        if self.first:
            self.first = False
            self.barrier.wait(timeout=60)
        return held


@contextmanager
def _file_lock(path):  # a lock shared by processes, as BaseStorePinStore's ``lock`` expects
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pin_child(db, text, barrier, out):
    with SqliteStore.from_conn_string(db) as store:
        pins = _ReadTogether(store, barrier, lambda thread, group: _file_lock(db + ".lock"))
        d = ask(make_router(pins), text, "shared")
        out.put({"tier": d.tier, "pinned": d.pinned, "id": d.id})


def test_forked_workers_sharing_a_sqlite_store_follow_the_one_stored_pin(tmp_path):
    db = str(tmp_path / "pins.sqlite")
    with SqliteStore.from_conn_string(db) as store:
        store.setup()
    new_decision_id()
    out, barrier = FORK.Queue(), FORK.Barrier(CHILDREN)
    procs = [FORK.Process(target=_pin_child, args=(db, "prove it" if i % 2 else "hello", barrier, out))
             for i in range(CHILDREN)]
    for p in procs:
        p.start()
    results = _join(procs, out)
    with SqliteStore.from_conn_string(db) as store:
        stored = BaseStorePinStore(store).get("shared", "answer")
    assert stored is not None
    assert {r["tier"] for r in results} == {stored.tier}  # every worker answered from the stored pin's tier
    assert [r["id"] for r in results if not r["pinned"]] == [stored.decision_id]  # one worker made it
    assert len({r["id"] for r in results}) == CHILDREN


ODD_THREADS = ["a.b", "user@x.com", "a/b", "with space", "", ".", "%", "%2E", "%25", "a\x00b", "langgraph",
               "ünïcode ✓", "x" * 500]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_store_backed_pins_work_for_any_thread_id(kind, tmp_path):
    def check(store):
        pins = BaseStorePinStore(store)
        for i, thread in enumerate(ODD_THREADS):
            pins.put(thread, "answer", Pin("fast", "m", f"d-{i}", 0.0))
        for i, thread in enumerate(ODD_THREADS):  # each thread has its own pin: no two ids share a key
            assert pins.get(thread, "answer").decision_id == f"d-{i}", repr(thread)
            assert pins.put_if_absent(thread, "answer", Pin("strong", "m", "other", 1.0)).decision_id == f"d-{i}"
            assert pins.put_if_absent(thread, "a.group@x", Pin("strong", "m", f"g-{i}", 1.0)).decision_id == f"g-{i}"
        found = {decode_store_label(item.namespace[-1]) for item in store.search(("steproute", "pins"), limit=100)}
        assert found == set(ODD_THREADS)  # the stored namespaces decode back to the thread ids

    if kind == "memory":
        check(InMemoryStore())
    else:
        with SqliteStore.from_conn_string(str(tmp_path / "pins.sqlite")) as store:
            store.setup()
            check(store)


def test_the_router_pins_threads_with_dots_and_at_signs_in_a_store():
    router = make_router(BaseStorePinStore(InMemoryStore()))
    for thread in ("user@x.com", "a/b", "with space", ""):
        first, second = ask(router, "hello", thread), ask(router, "prove it", thread)
        assert (first.tier, first.pinned) == ("standard", False)
        assert (second.tier, second.pinned) == ("standard", True), repr(thread)


def test_async_store_pins_take_any_thread_id():
    import asyncio

    async def run():
        pins = BaseStorePinStore(InMemoryStore())
        await pins.aput("a.b", "answer", Pin("fast", "m", "d-1", 0.0))
        return (await pins.aget("a.b", "answer")).decision_id, \
            (await pins.aput_if_absent("user@x.com", "answer", Pin("fast", "m", "d-2", 0.0))).decision_id

    assert asyncio.run(run()) == ("d-1", "d-2")


def test_plain_ids_keep_their_stored_names():
    # pins stored before the encoding existed stay where they were
    assert [encode_store_label(t) for t in ("thread-1", "a/b", "with space", "T_9")] == \
        ["thread-1", "a/b", "with space", "T_9"]


@settings(max_examples=300, deadline=None)
@given(thread=st.text(), group=st.text(), other=st.text())
def test_any_text_thread_id_round_trips_on_langgraphs_memory_store(thread, group, other):
    assert decode_store_label(encode_store_label(thread)) == thread
    assert (encode_store_label(thread) == encode_store_label(other)) == (thread == other)
    pins = BaseStorePinStore(InMemoryStore())
    pins.put(thread, group, Pin("fast", "m", "d-1", 0.0))
    assert pins.get(thread, group) == Pin("fast", "m", "d-1", 0.0)
    if other != thread:
        assert pins.get(other, group) is None


def test_holding_one_keys_lock_does_not_block_another_key():
    locks = KeyedLocks(max_keys=4)
    holding, release, took_other = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def hold_a():
        with locks.hold(("t1", "answer")):
            holding.set()
            order.append("a in")
            release.wait(10)
            order.append("a out")

    def take_b():
        with locks.hold(("t2", "answer")):
            took_other.set()

    def take_a_again():
        with locks.hold(("t1", "answer")):
            order.append("a2 in")

    a = threading.Thread(target=hold_a)
    a.start()
    assert holding.wait(10)
    b = threading.Thread(target=take_b)
    b.start()
    assert took_other.wait(5), "an unrelated key waited for another key's lock"
    a2 = threading.Thread(target=take_a_again)
    a2.start()
    time.sleep(0.2)
    assert "a2 in" not in order  # the same key waits
    release.set()
    for t in (a, b, a2):
        t.join(10)
    assert order == ["a in", "a out", "a2 in"]
    assert len(locks) == 0  # no entry outlives its holders: the table stays bounded


def test_keyed_locks_bound_how_many_keys_are_held_at_once():
    locks = KeyedLocks(max_keys=2)
    entered, release = threading.Semaphore(0), threading.Event()

    def hold(key):
        with locks.hold(key):
            entered.release()
            release.wait(10)

    threads = [threading.Thread(target=hold, args=((f"t{i}", "g"),)) for i in range(3)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
    assert not entered.acquire(timeout=0.3)  # a third key waits for a slot
    assert len(locks) <= 3
    release.set()
    assert entered.acquire(timeout=5)
    for t in threads:
        t.join(10)
    assert len(locks) == 0
