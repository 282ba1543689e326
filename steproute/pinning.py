"""Conversation pins: a stored decision per (thread, pin group) that later calls reuse.

A pin keeps a conversation on one tier and model. Pins live behind :class:`PinStore`:
:class:`InMemoryPinStore` (bounded: LRU and TTL, the default) or :class:`BaseStorePinStore`
over any LangGraph ``BaseStore`` (SQLite, Postgres, ...), so replicas share pins through the
store the application already runs.

Example:
    >>> store = InMemoryPinStore(max_entries=2)
    >>> pin = Pin(tier="fast", model="openai/gpt-4o-mini", decision_id="d-1", created=0.0)
    >>> store.put_if_absent("thread-1", "answer", pin).tier
    'fast'
    >>> store.put_if_absent("thread-1", "answer", Pin("strong", "openai/gpt-4o", "d-2", 1.0)).tier
    'fast'
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "PIN_MODES", "BaseStorePinStore", "InMemoryPinStore", "KeyedLocks", "Pin", "PinAction", "PinSettings", "PinStore",
    "apply_pin", "decode_store_label", "encode_store_label", "pin_after", "warm_note",
]

PIN_MODES = ("sticky", "upgrade_only", "reevaluate", "turn", "off")
"""``sticky``: the first decision holds for the thread. ``upgrade_only``: the policy runs on every
call and may move the pin to a stronger tier, never back down. ``reevaluate``: like sticky,
but the policy decides afresh after N turns or T seconds. ``turn``: the decision of a turn's
first call holds through the agent's tool loop; the next user message is decided afresh
(:mod:`steproute.turns`). ``off``: no pin."""


@dataclass(frozen=True)
class Pin:
    """The tier and model a (thread, pin group) is held to."""

    tier: str
    model: str
    """The deployment that answered when the pin was made (or last re-pinned)."""
    decision_id: str
    created: float
    """When the pin was made or last re-evaluated (``time.time()``)."""
    turns: int = 0
    """Calls served from the pin since then (counted for ``reevaluate`` after N turns)."""
    repins: int = 0
    """Times the pin moved to another deployment of its tier because its model failed."""
    turn: str | None = None
    """``turn`` mode: the fingerprint of the turn that made the pin (:func:`steproute.turns.turn_of`:
    a hash, never the message's text); ``None`` in the other modes."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.turn is None:  # stored as before ``turn`` existed
            del data["turn"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Pin | None:
        try:
            turn = data.get("turn")
            return cls(tier=str(data["tier"]), model=str(data["model"]), decision_id=str(data["decision_id"]),
                       created=float(data["created"]), turns=int(data.get("turns", 0)),
                       repins=int(data.get("repins", 0)), turn=None if turn is None else str(turn))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None  # a malformed stored value is no pin: the policy decides again


@runtime_checkable
class PinStore(Protocol):
    """Where pins live. ``put_if_absent`` returns the pin that holds after the call, so
    concurrent first decisions on one thread converge on one pin."""

    def get(self, thread: str, group: str) -> Pin | None: ...

    def put(self, thread: str, group: str, pin: Pin) -> None: ...

    def put_if_absent(self, thread: str, group: str, pin: Pin) -> Pin: ...

    async def aget(self, thread: str, group: str) -> Pin | None: ...

    async def aput(self, thread: str, group: str, pin: Pin) -> None: ...

    async def aput_if_absent(self, thread: str, group: str, pin: Pin) -> Pin: ...


_FORBIDDEN = re.compile(r"[%.\x00]")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
_EMPTY = "%"
"""The label of the empty string: a lone ``%`` is no escape, so no other text encodes to it."""


def encode_store_label(text: str) -> str:
    """``text`` as a LangGraph ``BaseStore`` namespace label or key, for any id: ``%``, ``.``
    and NUL become ``%25``, ``%2E`` and ``%00``, and the empty string becomes ``%``. The encoding
    is reversible (:func:`decode_store_label`) and one-to-one; ids without those characters
    keep their name, so pins stored before it existed are still found.

    Example:
        >>> encode_store_label("user@x.com"), encode_store_label("t-1"), encode_store_label("")
        ('user@x%2Ecom', 't-1', '%')
        >>> decode_store_label(encode_store_label("a.b%c"))
        'a.b%c'
    """
    if not text:
        return _EMPTY
    return _FORBIDDEN.sub(lambda m: f"%{ord(m.group()):02X}", text)


def decode_store_label(label: str) -> str:
    """The id :func:`encode_store_label` turned into ``label``."""
    if label == _EMPTY:
        return ""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), label)


class KeyedLocks:
    """A lock per key, made on first use and dropped when no thread holds or waits for it, so
    holding one key never blocks another; at most ``max_keys`` keys are held at once (the rest
    wait for a slot), which bounds both the table and whatever each holder uses (a connection).

    Example:
        >>> locks = KeyedLocks(max_keys=8)
        >>> with locks.hold(("thread-1", "answer")):
        ...     len(locks)
        1
        >>> len(locks)
        0
    """

    def __init__(self, *, max_keys: int = 32) -> None:
        if max_keys < 1:
            raise ValueError("KeyedLocks: max_keys must be at least 1")
        self.max_keys = max_keys
        self._slots = threading.BoundedSemaphore(max_keys)
        self._guard = threading.Lock()
        self._locks: dict[Any, list[Any]] = {}  # key -> [lock, holders and waiters]

    def __len__(self) -> int:
        return len(self._locks)

    @contextmanager
    def hold(self, key: Any) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0], self._slots:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]


class InMemoryPinStore:
    """Pins in this process: at most ``max_entries`` (least recently used dropped first), each
    forgotten ``ttl_seconds`` after its last use. Thread-safe; ``put_if_absent`` is atomic."""

    def __init__(self, *, max_entries: int = 100_000, ttl_seconds: float | None = 24 * 3600) -> None:
        if max_entries < 1:
            raise ValueError("InMemoryPinStore: max_entries must be at least 1")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError("InMemoryPinStore: ttl_seconds must be positive (or None for no expiry)")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._pins: OrderedDict[tuple[str, str], tuple[Pin, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pins)

    def _live(self, key: tuple[str, str], now: float) -> Pin | None:
        entry = self._pins.get(key)
        if entry is None:
            return None
        pin, used = entry
        if self.ttl_seconds is not None and now - used > self.ttl_seconds:
            del self._pins[key]
            return None
        self._pins[key] = (pin, now)
        self._pins.move_to_end(key)
        return pin

    def _store(self, key: tuple[str, str], pin: Pin, now: float) -> None:
        self._pins[key] = (pin, now)
        self._pins.move_to_end(key)
        while len(self._pins) > self.max_entries:
            self._pins.popitem(last=False)

    def get(self, thread: str, group: str) -> Pin | None:
        with self._lock:
            return self._live((thread, group), time.monotonic())

    def put(self, thread: str, group: str, pin: Pin) -> None:
        with self._lock:
            self._store((thread, group), pin, time.monotonic())

    def put_if_absent(self, thread: str, group: str, pin: Pin) -> Pin:
        with self._lock:
            now = time.monotonic()
            held = self._live((thread, group), now)
            if held is not None:
                return held
            self._store((thread, group), pin, now)
            return pin

    async def aget(self, thread: str, group: str) -> Pin | None:
        return self.get(thread, group)

    async def aput(self, thread: str, group: str, pin: Pin) -> None:
        self.put(thread, group, pin)

    async def aput_if_absent(self, thread: str, group: str, pin: Pin) -> Pin:
        return self.put_if_absent(thread, group, pin)


class BaseStorePinStore:
    """Pins in a LangGraph ``BaseStore``, under the namespace ``(*prefix, thread)``, key = group,
    each label encoded by :func:`encode_store_label`, so any thread id works (``"user@x.com"``,
    ``"a.b"``, ``""``), although LangGraph forbids ``.``, NUL and empty namespace labels.

    ``put_if_absent`` reads, writes when nothing is there, and reads back. LangGraph's stores
    have no compare-and-set, so two replicas making a thread's first decision at the same
    instant could both write; pass ``lock`` (a function of ``(thread, group)`` returning a
    context manager held across replicas, such as
    :class:`~steproute.pin_locks.PostgresAdvisoryLock`) to make the first pin atomic.

    Example:
        >>> from langgraph.store.memory import InMemoryStore
        >>> pins = BaseStorePinStore(InMemoryStore())
        >>> pins.put("t-1", "answer", Pin("fast", "openai/gpt-4o-mini", "d-1", 0.0))
        >>> pins.get("t-1", "answer").model
        'openai/gpt-4o-mini'
    """

    def __init__(self, store: Any, *, prefix: tuple[str, ...] = ("steproute", "pins"),
                 lock: Callable[[str, str], AbstractContextManager[Any]] | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.lock = lock

    def _namespace(self, thread: str) -> tuple[str, ...]:
        return (*(encode_store_label(label) for label in self.prefix), encode_store_label(thread))

    def get(self, thread: str, group: str) -> Pin | None:
        item = self.store.get(self._namespace(thread), encode_store_label(group))
        return Pin.from_dict(item.value) if item is not None else None

    def put(self, thread: str, group: str, pin: Pin) -> None:
        self.store.put(self._namespace(thread), encode_store_label(group), pin.to_dict())

    def put_if_absent(self, thread: str, group: str, pin: Pin) -> Pin:
        held = self.get(thread, group)
        if held is not None:
            return held
        with self.lock(thread, group) if self.lock is not None else nullcontext():
            held = self.get(thread, group)  # again, now that no other writer can be between
            if held is not None:
                return held
            self.put(thread, group, pin)
        return self.get(thread, group) or pin

    async def aget(self, thread: str, group: str) -> Pin | None:
        item = await self.store.aget(self._namespace(thread), encode_store_label(group))
        return Pin.from_dict(item.value) if item is not None else None

    async def aput(self, thread: str, group: str, pin: Pin) -> None:
        await self.store.aput(self._namespace(thread), encode_store_label(group), pin.to_dict())

    async def aput_if_absent(self, thread: str, group: str, pin: Pin) -> Pin:
        held = await self.aget(thread, group)
        if held is not None:
            return held
        if self.lock is not None:  # the lock is synchronous: hold it off the event loop
            return await asyncio.to_thread(self.put_if_absent, thread, group, pin)
        await self.aput(thread, group, pin)
        return await self.aget(thread, group) or pin


# -- the pin rules: pure functions the router applies around a call --------------------------


@dataclass(frozen=True)
class PinSettings:
    """A step's resolved pinning: mode, group and re-evaluation triggers."""

    mode: str
    group: str
    after_turns: int | None = None
    after_seconds: float | None = None


@dataclass(frozen=True)
class PinAction:
    """What the call does with the store: before dispatch (``write``), and after the answer."""

    thread: str
    settings: PinSettings
    held: Pin | None
    """The pin the call follows, or the one it is making."""
    write: str = "none"
    """Before dispatch: ``absent`` (make the first pin, unless another writer made one),
    ``replace`` (a re-evaluated or upgraded pin), or ``none`` (follow ``held``)."""
    made: bool = False
    """This call made ``held`` (a new, re-evaluated or upgraded pin)."""
    carried: bool = False
    """``held`` was decided again onto the tier of the pin it replaces and keeps that pin's
    deployment (the one that served the conversation last): the call tries it first."""


def _due(pin: Pin, settings: PinSettings, now: float) -> bool:
    if settings.after_turns is not None and pin.turns >= settings.after_turns:
        return True
    return settings.after_seconds is not None and now - pin.created >= settings.after_seconds


def warm_note(model: str) -> str:
    """The reason's note for a call that tries the deployment that served its conversation last
    before its tier's first one.

    Example:
        >>> warm_note("openai/gpt-4.1-nano")
        "; deployment 'openai/gpt-4.1-nano' first (it served this conversation last)"
    """
    return f"; deployment {model!r} first (it served this conversation last)"


def _afresh(decision: Any, pin: Pin, mine: Pin, settings: PinSettings, thread: str, why: str) -> tuple[Any, PinAction]:
    """The policy's decision replaces ``pin``; on the same tier it keeps the pin's deployment
    (the one that served the conversation last: its prompt cache is warm)."""
    reason = f"{decision.reason}; {why}"
    carried = decision.tier == pin.tier
    if carried:
        if pin.model != decision.model:
            reason += warm_note(pin.model)
        mine = replace(mine, model=pin.model)
    return (replace(decision, pin_group=settings.group, reason=reason),
            PinAction(thread, settings, mine, "replace", made=True, carried=carried))


def apply_pin(decision: Any, pin: Pin | None, settings: PinSettings, thread: str, rank: dict[str, int],
              low: int, high: int, now: float, turn: str | None = None) -> tuple[Any, PinAction]:
    """The decision once the conversation's pin is taken into account, and what to write.

    ``decision`` is the policy's (already clamped to ``low``..``high``). A pin outside those
    bounds, or of an unknown tier, is not followed; a due ``reevaluate`` pin, or a ``turn`` pin
    of another turn than ``turn`` (the call's, :func:`steproute.turns.request_turn`), lets the
    policy decide, and a choice of the pin's tier keeps the pin's deployment; ``upgrade_only``
    follows the policy only when it chose a stronger tier. A followed pin's decision names the
    pin's tier and deployment (``model``).
    """
    group = settings.group
    mine = Pin(decision.tier, decision.model, decision.id, now, turn=turn if settings.mode == "turn" else None)
    if pin is None:
        return replace(decision, pin_group=group), PinAction(thread, settings, mine, "absent", made=True)
    if pin.tier not in rank or not low <= rank[pin.tier] <= high:  # this call's bounds hold; the pin stays
        return (replace(decision, pin_group=group, reason=f"{decision.reason}; pinned tier {pin.tier!r} is out of bounds"),
                PinAction(thread, settings, None))
    if settings.mode == "reevaluate" and _due(pin, settings, now):
        return _afresh(decision, pin, mine, settings, thread, "pin re-evaluated")
    if settings.mode == "turn" and pin.turn != turn:
        return _afresh(decision, pin, mine, settings, thread, "new turn")
    if settings.mode == "upgrade_only" and rank[decision.tier] > rank[pin.tier]:
        return (replace(decision, pin_group=group, reason=f"{decision.reason}; upgraded from pinned tier {pin.tier!r}"),
                PinAction(thread, settings, mine, "replace", made=True))
    held = "pinned for this turn: tier" if settings.mode == "turn" else "pinned to tier"
    pinned = replace(decision, tier=pin.tier, model=pin.model, policy="pin", pinned=True, pin_group=group, score=None,
                     latency_from=None,
                     reason=f"{held} {pin.tier!r} ({settings.mode}, group {group!r}) by {pin.decision_id}")
    return pinned, PinAction(thread, settings, pin)


def pin_after(action: PinAction, decision: Any) -> tuple[Pin | None, bool]:
    """The pin to write once the call has answered (``None``: no change), and whether that is a
    re-pin. ``decision.model`` is the deployment that answered."""
    held = action.held
    if held is None:
        return None, False
    if decision.model != held.model:  # another deployment of the tier answered
        repinned = not action.made or action.carried  # the conversation had seen the pinned model: it moves
        return replace(held, model=decision.model, turns=held.turns + (not action.made),
                       repins=held.repins + repinned), repinned
    if not action.made and action.settings.mode == "reevaluate" and action.settings.after_turns is not None:
        return replace(held, turns=held.turns + 1), False
    return None, False
