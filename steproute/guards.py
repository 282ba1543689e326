"""Guards: checks that run before any policy (``guards:`` in the configuration).

- :class:`PiiGuard`: a request that carries personal data (e-mail addresses, phone numbers,
  card numbers that pass the Luhn check, IBANs that pass their checksum, or patterns of your
  own) goes to one configured tier. The decision records which detectors fired, never the
  text they matched.
- :class:`BudgetGuard`: per-tenant spend limits in USD per window. Over the limit, a call is
  refused (:class:`~steproute.errors.BudgetExceeded`) or held to a cheap tier. The counters
  live in a :class:`BudgetStore`: in memory, or in the LangGraph ``BaseStore`` the pins use,
  made atomic across replicas with the same lock (e.g. a PostgreSQL advisory lock).

A call reserves an upper estimate of its cost before it is dispatched and settles the real
cost afterwards; a call is admitted only while spent + reserved is under the limit. So
replicas spending at once overshoot a limit by at most the one call that crossed it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from steproute.types import StepRequest, _text_of

__all__ = [
    "BaseStoreBudgetStore",
    "BudgetGuard",
    "BudgetHold",
    "BudgetStore",
    "InMemoryBudgetStore",
    "PiiGuard",
    "estimate_cost",
    "iban_ok",
    "luhn_ok",
]

# -- personal data -----------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]\(?\d{2,4}\)?){2,5}(?![\w])")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only).

    Example:
        >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
        (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN (spaces allowed).

    Example:
        >>> iban_ok("GB82 WEST 1234 5698 7654 32"), iban_ok("GB82 WEST 1234 5698 7654 33")
        (True, False)
    """
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _cards(text: str) -> bool:
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return True
    return False


_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{4}$")


def _phones(text: str) -> bool:
    # an IBAN's or a card number's digit groups are not a phone number
    text = _IBAN.sub(lambda m: " " if iban_ok(m.group()) else m.group(), text)
    text = _CARD.sub(lambda m: " " if luhn_ok(re.sub(r"\D", "", m.group())) else m.group(), text)
    for match in _PHONE.finditer(text):
        found = match.group()
        digits = re.sub(r"\D", "", found)
        if 9 <= len(digits) <= 15 and not _DATE.match(found.strip()):
            return True
    return False


DETECTORS: dict[str, Callable[[str], bool]] = {
    "email": lambda text: _EMAIL.search(text) is not None,
    "phone": _phones,
    "card": _cards,
    "iban": lambda text: any(iban_ok(m.group()) for m in _IBAN.finditer(text)),
}


def request_text(request: StepRequest) -> str:
    """Every text the request would send: messages (any role) and tool-call arguments."""
    parts = []
    for message in request.messages:
        parts.append(_text_of(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                parts.append(str(function.get("arguments") or ""))
    return "\n".join(parts)


@dataclass(frozen=True)
class PiiGuard:
    """Sends requests with personal data to ``tier``.

    Example:
        >>> guard = PiiGuard("onprem")
        >>> guard.detect(StepRequest("s", [{"role": "user", "content": "Mail me at ann@example.org"}]))
        ('email',)
        >>> guard.detect(StepRequest("s", [{"role": "user", "content": "What is 12 + 30?"}]))
        ()
    """

    tier: str
    detectors: tuple[str, ...] = tuple(DETECTORS)
    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> PiiGuard:
        return cls(config.tier, tuple(config.detectors), tuple((n, re.compile(p)) for n, p in config.patterns.items()))

    def detect(self, request: StepRequest) -> tuple[str, ...]:
        """The names of the detectors that fire (never the matched text)."""
        text = request_text(request)
        if not text:
            return ()
        fired = [name for name in self.detectors if DETECTORS[name](text)]
        fired += [name for name, pattern in self.patterns if pattern.search(text)]
        return tuple(fired)


# -- budgets -------------------------------------------------------------------------------------


@runtime_checkable
class BudgetStore(Protocol):
    """Where spend counters live: per (tenant, window), the USD spent and reserved."""

    def reserve(self, tenant: str, window: int, amount: float, limit: float) -> float | None:
        """Add ``amount`` to the reserved sum when spent + reserved is under ``limit``; return
        what was spent before, or ``None`` (nothing reserved) when it is not. Atomic."""
        ...

    def settle(self, tenant: str, window: int, reserved: float, spent: float) -> None:
        """Release a reservation and add what the call really cost. Atomic."""
        ...

    def usage(self, tenant: str, window: int) -> tuple[float, float]:
        """``(spent, reserved)``: settled spend, and reservations of calls under way."""
        ...


class InMemoryBudgetStore:
    """Counters in this process (one lock), the default. Old windows are dropped."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, int], list[float]] = {}
        self._lock = threading.Lock()

    def reserve(self, tenant: str, window: int, amount: float, limit: float) -> float | None:
        with self._lock:
            counter = self._counters.setdefault((tenant, window), [0.0, 0.0])
            if counter[0] + counter[1] >= limit:
                return None
            counter[1] += amount
            return counter[0]

    def settle(self, tenant: str, window: int, reserved: float, spent: float) -> None:
        with self._lock:
            counter = self._counters.setdefault((tenant, window), [0.0, 0.0])
            counter[0] += spent
            counter[1] = max(0.0, counter[1] - reserved)
            for key in [k for k in self._counters if k[1] < window - 1]:
                del self._counters[key]

    def usage(self, tenant: str, window: int) -> tuple[float, float]:
        with self._lock:
            spent, reserved = self._counters.get((tenant, window), [0.0, 0.0])
            return spent, reserved


class BaseStoreBudgetStore:
    """Counters in a LangGraph ``BaseStore`` (the one :class:`~steproute.pinning.BaseStorePinStore`
    uses), under ``(*prefix, tenant)``, key = the window. LangGraph's stores have no atomic
    update: pass ``lock`` (a function of ``(tenant, key)`` giving a context manager held
    across replicas, such as :class:`~steproute.pin_locks.PostgresAdvisoryLock`) so replicas
    never lose an update.

    Example:
        >>> from langgraph.store.memory import InMemoryStore
        >>> budgets = BaseStoreBudgetStore(InMemoryStore())
        >>> budgets.reserve("acme", 7, 0.5, limit=1.0), budgets.settle("acme", 7, 0.5, 0.25), budgets.usage("acme", 7)
        (0.0, None, (0.25, 0.0))
    """

    def __init__(self, store: Any, *, prefix: tuple[str, ...] = ("steproute", "budgets"),
                 lock: Callable[[str, str], AbstractContextManager[Any]] | None = None) -> None:
        self.store, self.prefix, self.lock = store, prefix, lock
        self._local = threading.Lock()  # the lock serialises replicas; this one, this process's threads

    def _read(self, tenant: str, window: int) -> tuple[float, float]:
        item = self.store.get((*self.prefix, tenant), str(window))
        value = item.value if item is not None else {}
        try:
            return float(value.get("spent", 0.0)), float(value.get("reserved", 0.0))
        except (TypeError, ValueError, AttributeError):
            return 0.0, 0.0  # a malformed stored value counts as nothing spent; the next write repairs it

    def _write(self, tenant: str, window: int, spent: float, reserved: float) -> None:
        self.store.put((*self.prefix, tenant), str(window), {"spent": spent, "reserved": reserved})

    def _locked(self, tenant: str, window: int) -> AbstractContextManager[Any]:
        return self.lock(tenant, f"budget:{window}") if self.lock is not None else nullcontext()

    def reserve(self, tenant: str, window: int, amount: float, limit: float) -> float | None:
        with self._local, self._locked(tenant, window):
            spent, reserved = self._read(tenant, window)
            if spent + reserved >= limit:
                return None
            self._write(tenant, window, spent, reserved + amount)
            return spent

    def settle(self, tenant: str, window: int, reserved: float, spent: float) -> None:
        with self._local, self._locked(tenant, window):
            total, held = self._read(tenant, window)
            self._write(tenant, window, total + spent, max(0.0, held - reserved))

    def usage(self, tenant: str, window: int) -> tuple[float, float]:
        return self._read(tenant, window)


@dataclass
class BudgetHold:
    """A call's reservation, settled once with what the call cost (or nothing, if it failed)."""

    store: BudgetStore
    tenant: str
    window: int
    reserved: float
    settled: bool = False

    def settle(self, cost_usd: float) -> None:
        if not self.settled:
            self.settled = True
            self.store.settle(self.tenant, self.window, self.reserved, cost_usd)


@dataclass(frozen=True)
class BudgetVerdict:
    hold: BudgetHold | None
    """The reservation to settle after the call (``None``: the tenant is not limited)."""
    cap_tier: str | None = None
    """Over the limit with ``on_exceed: cap``: the tier the call is held to."""
    spent_usd: float = 0.0
    limit_usd: float = math.inf


class BudgetGuard:
    """Per-tenant limits (see the module docstring)."""

    def __init__(self, limits: Mapping[str, float], window_seconds: float, store: BudgetStore, *,
                 on_exceed: str = "refuse", cap_tier: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limits, self.window_seconds, self.store = dict(limits), window_seconds, store
        self.on_exceed, self.cap_tier, self.clock = on_exceed, cap_tier, clock

    @classmethod
    def from_config(cls, config: Any, store: BudgetStore) -> BudgetGuard:
        return cls(config.limits, config.window_seconds, store, on_exceed=config.on_exceed, cap_tier=config.cap_tier)

    def limit_of(self, tenant: str | None) -> float | None:
        if tenant is None:
            return None
        return self.limits.get(tenant, self.limits.get("default"))

    def window(self) -> tuple[int, float]:
        """The current window's number and when it ends (Unix time)."""
        now = self.clock()
        number = int(now // self.window_seconds)
        return number, (number + 1) * self.window_seconds

    def admit(self, request: StepRequest, estimate_usd: float) -> BudgetVerdict:
        """Reserve ``estimate_usd`` for the call, or say it is over the limit.

        Raises:
            BudgetExceeded: over the limit, with ``on_exceed: refuse``.
        """
        from steproute.errors import BudgetExceeded

        limit = self.limit_of(request.tenant)
        if limit is None or request.tenant is None:
            return BudgetVerdict(None)
        window, ends = self.window()
        spent = self.store.reserve(request.tenant, window, estimate_usd, limit)
        if spent is not None:
            return BudgetVerdict(BudgetHold(self.store, request.tenant, window, estimate_usd), None, spent, limit)
        spent_now, reserved = self.store.usage(request.tenant, window)
        if self.on_exceed == "cap":
            # held to the cheap tier, and still counted (nothing reserved: the limit is already reached)
            return BudgetVerdict(BudgetHold(self.store, request.tenant, window, 0.0), self.cap_tier, spent_now, limit)
        raise BudgetExceeded(request.step, request.tenant, limit, spent_now, ends, reserved)


def estimate_cost(price: Any, request: StepRequest, params: Mapping[str, Any], output_tokens: int = 1024) -> float:
    """An upper estimate of a call's cost: its text at about 3 characters a token, plus
    ``max_tokens`` (else ``output_tokens``) of output, at the tier's first deployment's price."""
    input_tokens = request.input_chars // 3 + 16 * len(request.messages) + 1
    max_tokens = params.get("max_tokens") or output_tokens
    try:
        return float(input_tokens * price.input + int(max_tokens) * price.output)
    except (AttributeError, TypeError, ValueError):
        return 0.0

