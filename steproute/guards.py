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

import functools
import logging
import math
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from steproute.errors import say_once
from steproute.pinning import encode_store_label
from steproute.types import StepRequest, text_of

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "PII_THREAD_CHARS",
    "BaseStoreBudgetStore",
    "BudgetGuard",
    "BudgetHold",
    "BudgetStore",
    "InMemoryBudgetStore",
    "PiiGuard",
    "estimate_cost",
    "iban_ok",
    "luhn_ok",
    "max_output_tokens",
    "normalise",
]

logger = logging.getLogger("steproute")

# -- personal data -----------------------------------------------------------------------------

PII_THREAD_CHARS = 16_384
"""Async calls scan requests with more text than this in a worker thread, off the event loop."""

# Every detector is linear in the text: no pattern has nested quantifiers over overlapping
# classes, and the e-mail check looks only at a bounded window around each "@".
_EMAIL_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_TLD = re.compile(r"[A-Za-z]{2}")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"))
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]\(?\d{2,4}\)?){2,5}(?![\w])")
_CARD = re.compile(r"(?<!\d)(?:\d[ ./-]?){12,18}\d(?!\d)")
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


def normalise(text: str) -> str:
    """The text the detectors read: NFKC (full-width ``＠`` and digits become ASCII) without
    zero-width characters (so ``U+200B`` cannot split an address or a card number).

    Example:
        >>> normalise("ann\u200b\uff20example.org 4\u200b111")
        'ann@example.org 4111'
    """
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text.translate(_ZERO_WIDTH)).translate(_ZERO_WIDTH)


def _emails(text: str) -> bool:
    # each "@" is checked once, against at most 64 characters before it and 255 after: linear
    at = text.find("@")
    while at != -1:
        if at > 0 and text[at - 1] in _EMAIL_LOCAL:
            domain = _EMAIL_DOMAIN.match(text, at + 1, at + 256)
            if domain is not None and any(_TLD.match(label) for label in domain.group().split(".")[1:]):
                return True
        at = text.find("@", at + 1)
    return False


_WINDOW, _OVERLAP = 65_536, 1_024  # every built-in detector's match is far shorter than the overlap


def _windows(text: str) -> list[str]:
    """Long text as overlapping windows cut at whitespace when there is some near the cut, so
    no regex call holds the interpreter long (an async call's scan runs in a thread)."""
    if len(text) <= _WINDOW + _OVERLAP:
        return [text]

    def after_space(p: int) -> int:  # the start of the word at or before p, if it starts near
        cut = max(text.rfind(" ", p - _OVERLAP, p), text.rfind("\n", p - _OVERLAP, p))
        return cut + 1 if cut != -1 else p

    windows, start = [], 0
    while True:
        end = start + _WINDOW + _OVERLAP
        if end >= len(text):
            windows.append(text[start:])
            return windows
        cut = max(text.rfind(" ", end - _OVERLAP, end), text.rfind("\n", end - _OVERLAP, end))
        windows.append(text[start:max(cut, end - _OVERLAP) if cut != -1 else end])
        start = after_space(start + _WINDOW - _OVERLAP)


def _holds_card(run: str) -> bool:
    """Whether a run of digit groups holds a card number: the whole run, or consecutive groups
    of it ("EMP-123 4111 1111 1111 1111" holds one after its "123"), of 13 to 19 digits that
    pass the Luhn check."""
    groups = re.findall(r"\d+", run)
    for first in range(len(groups)):
        digits = ""
        for group in groups[first:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_ok(digits):
                return True
    return False


def _cards(text: str) -> bool:
    return any(_holds_card(match.group()) for match in _CARD.finditer(text))


_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{4}$")


def _phones(text: str) -> bool:
    # an IBAN's or a card number's digit groups are not a phone number
    text = _IBAN.sub(lambda m: " " if iban_ok(m.group()) else m.group(), text)
    text = _CARD.sub(lambda m: " " if _holds_card(m.group()) else m.group(), text)
    for match in _PHONE.finditer(text):
        found = match.group()
        digits = re.sub(r"\D", "", found)
        if 9 <= len(digits) <= 15 and not _DATE.match(found.strip()):
            return True
    return False


DETECTORS: dict[str, Callable[[str], bool]] = {
    "email": _emails,
    "phone": _phones,
    "card": _cards,
    "iban": lambda text: any(iban_ok(m.group()) for m in _IBAN.finditer(text)),
}


def request_text(request: StepRequest) -> str:
    """Every text the request would send: messages (any role) and tool-call arguments."""
    parts = []
    for message in request.messages:
        parts.append(text_of(message.get("content")))
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
        text = normalise(request_text(request))
        if not text:
            return ()
        windows = _windows(text)
        fired = [name for name in self.detectors if any(DETECTORS[name](w) for w in windows)]
        fired += [name for name, pattern in self.patterns if pattern.search(text)]
        return tuple(fired)

    def redact(self, text: str) -> str:
        """``text``, or in its place the names of the detectors that fire on it (never a match):
        what a span may record of a prompt or an answer.

        Example:
            >>> PiiGuard("onprem").redact("Mail me at ann@example.org")
            '[redacted by the PII guard: email]'
        """
        fired = self.detect(StepRequest("redact", [{"role": "user", "content": text}]))
        return f"[redacted by the PII guard: {', '.join(fired)}]" if fired else text


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
    uses), under ``(*prefix, tenant)``, key = the window. Each label is encoded by
    :func:`~steproute.pinning.encode_store_label`, so any tenant id works (``"user@x.com"``,
    ``"a.b"``, ``""``), although LangGraph forbids ``.``, NUL and empty labels; ids without
    those characters keep their name. LangGraph's stores have no atomic
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

    def _namespace(self, tenant: str) -> tuple[str, ...]:
        return (*(encode_store_label(label) for label in self.prefix), encode_store_label(tenant))

    def _read(self, tenant: str, window: int) -> tuple[float, float]:
        item = self.store.get(self._namespace(tenant), str(window))
        value = item.value if item is not None else {}
        try:
            return float(value.get("spent", 0.0)), float(value.get("reserved", 0.0))
        except (TypeError, ValueError, AttributeError):
            return 0.0, 0.0  # a malformed stored value counts as nothing spent; the next write repairs it

    def _write(self, tenant: str, window: int, spent: float, reserved: float) -> None:
        self.store.put(self._namespace(tenant), str(window), {"spent": spent, "reserved": reserved})

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

    def settle(self, cost_usd: float, *, usage_known: bool | None = None) -> None:
        """Release the reservation and count ``cost_usd``.

        ``usage_known`` says whether the provider reported the call's usage (the router always
        says, from the answer's token counts). A call whose usage is unknown is counted at the
        reservation (or at ``cost_usd``, if more), never at $0. When it is not said, a call
        that reports $0 is taken as one without usage. Negative (or NaN) costs count as 0
        (logged once per budget store), never as a credit.

        Example:
            >>> store = InMemoryBudgetStore()
            >>> BudgetHold(store, "acme", 1, 0.5).settle(0.0, usage_known=False)  # no usage from the provider
            >>> BudgetHold(store, "acme", 1, 0.5).settle(0.125, usage_known=True)
            >>> store.usage("acme", 1)
            (0.625, 0.0)
        """
        if self.settled:
            return
        self.settled = True
        if not cost_usd >= 0.0:  # negative, or NaN: the provider sent usage, but not a usable one
            say_once(self.store, ("negative usage",),
                     "steproute: a provider reported negative token usage; the budget counts it as $0")
            cost_usd = 0.0
        elif usage_known is None:
            usage_known = cost_usd > 0.0
        if usage_known is False:
            cost_usd = max(cost_usd, self.reserved)
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


DEFAULT_MAX_OUTPUT_TOKENS = 32_768
"""Output tokens reserved for a call without ``max_tokens`` to a model LiteLLM has no
``max_output_tokens`` for."""


@functools.lru_cache(maxsize=256)
def max_output_tokens(model: str) -> int:
    """The most a model can write in one choice: LiteLLM's ``max_output_tokens`` for it, else
    :data:`DEFAULT_MAX_OUTPUT_TOKENS`.

    Example:
        >>> max_output_tokens("openai/gpt-4o"), max_output_tokens("acme/unknown") == DEFAULT_MAX_OUTPUT_TOKENS
        (16384, True)
    """
    from steproute._litellm import litellm

    try:
        value = litellm().get_model_info(model).get("max_output_tokens")
    except Exception:  # LiteLLM raises a bare Exception for unmapped models
        return DEFAULT_MAX_OUTPUT_TOKENS
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_MAX_OUTPUT_TOKENS


def estimate_cost(price: Any, request: StepRequest, params: Mapping[str, Any],
                  output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS) -> float:
    """An upper estimate of a call's cost: its text at about 3 characters a token, plus
    ``max_tokens`` (else ``output_tokens``, the model's most) of output for each of the ``n``
    choices, at the tier's first deployment's price.

    Example:
        >>> from steproute.pricing import Price
        >>> estimate_cost(Price(0.0, 1e-6), StepRequest("s", []), {"max_tokens": 100, "n": 3})
        0.0003
    """
    input_tokens = request.input_chars // 3 + 16 * len(request.messages) + 1
    limits = [params.get(name) for name in ("max_tokens", "max_completion_tokens")]
    try:
        given = [int(v) for v in limits if v is not None and int(v) > 0]
        choices = max(1, int(params.get("n") or 1))
        max_tokens = min(given) if given else int(output_tokens)
        return float(input_tokens * price.input + max_tokens * choices * price.output)
    except (AttributeError, TypeError, ValueError):
        return 0.0
