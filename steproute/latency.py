"""Latency-aware routing: what each deployment's calls have taken, and the tier a step's
latency budget allows.

Every call a tier makes is timed where it ends (:mod:`steproute._latency_feed`, around each
tier's client): its total time, and a stream's time to first token, per deployment and per tier,
in a :class:`LatencyWindow` — the last ``latency.window`` observations, each weighted by its age
(halved every ``latency.half_life_s``) and forgotten after ``latency.max_age_s``. Memory is
bounded; the windows are thread-safe; nothing here reads a clock but :meth:`LatencyBook.check`
and the exported gauges (everything else takes ``now``).

A step with ``max_latency_ms``, or a call whose run metadata carries ``steproute_deadline``
(seconds since the epoch), has a budget: the least of the two. :func:`choose_tier` then keeps
the decided tier when its observed p95 fits, else takes the cheapest stronger tier (up to
``max_tier``) that fits; under a cascade, a tier is skipped too when its p95 and the next
tier's together exceed the budget (an escalation could not be absorbed). When no allowed tier
fits, or the budget is 0 or less (a passed deadline), the fastest observed tier is taken. A tier
with no observations counts as fitting a positive budget: with none at all, the configured order
stands and nothing is said. A deadline more than a year ahead (milliseconds since the epoch, a
common mistake) is ignored and said once, as one that is not a number is. Every move is on the decision's ``reason``,
on the ``route`` span (``steproute.latency.moved_from``) and, once, in the log — said once the
thread's pin is applied (:meth:`LatencyBook.settle`): a move the pin overrode is not said, and a
pin that keeps a call on a tier over its budget says so (``..., kept by the pin``).

Example:
    >>> book = LatencyBook(("fast", "strong"))
    >>> for ms in (900, 1000, 1100):
    ...     book.observe("fast", "openai/gpt-4o-mini", TOTAL, ms / 1000, now=0.0)
    >>> book.quantiles("fast", now=1.0)
    (1000.0, 1100.0)
    >>> choose_tier(("fast", "strong"), {"fast": 1100.0, "strong": None}, 500, "max_latency_ms 500", judged=False)
    ('strong', "latency: 'fast' p95 1100 ms > max_latency_ms 500, moved to 'strong' (no observations yet)")
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from steproute.errors import say_once, shown

__all__ = [
    "DEADLINE_KEY",
    "TOTAL",
    "TTFT",
    "LatencyBook",
    "LatencyStat",
    "LatencyWindow",
    "budget_of",
    "choose_tier",
]

DEADLINE_KEY = "steproute_deadline"
"""Run metadata key: the run's deadline, in seconds since the Unix epoch (``time.time() + 2.5``)."""
TOTAL = "total"
"""A call's whole time, from the request to the answer's last token."""
TTFT = "ttft"
"""A stream's time to its first chunk."""
_YEAR_S = 366 * 86400.0
"""A deadline further ahead than this is taken for milliseconds since the epoch and ignored."""
MAX_DEPLOYMENT_WINDOWS = 1024
"""Bound on the per-deployment windows of one router (deployments are the configuration's)."""

# metric attribute names (the same strings as steproute.telemetry's, which imports this module's book)
_TIER, _MODEL, _KIND = "steproute.tier", "gen_ai.request.model", "steproute.latency.kind"


class LatencyWindow:
    """The last ``size`` observations (in ms) of one deployment or tier, weighted by age.

    An observation's weight halves every ``half_life_s``; it is dropped ``max_age_s`` after it was
    made. Since every weight decays at the same rate, the weighted p50/p95 change only when an
    observation comes or goes: they are cached until then, so reading them is a tuple lookup.

    Example:
        >>> w = LatencyWindow(size=3, half_life_s=10, max_age_s=60)
        >>> for t, ms in enumerate((100, 200, 300, 400)):
        ...     w.add(ms, now=float(t))
        >>> w.quantiles(now=4.0), w.count(now=4.0)
        ((300.0, 400.0), 3)
        >>> w.quantiles(now=63.5) is None    # all aged out
        True
    """

    __slots__ = ("_cache", "_lock", "_obs", "half_life_s", "max_age_s")

    def __init__(self, size: int = 64, half_life_s: float = 60.0, max_age_s: float = 300.0) -> None:
        self._obs: deque[tuple[float, float]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._cache: tuple[float, tuple[float, float] | None] = (math.inf, None)
        """``(valid until, (p50, p95) or None)``."""
        self.half_life_s = half_life_s
        self.max_age_s = max_age_s

    def add(self, ms: float, now: float) -> None:
        with self._lock:
            self._obs.append((now, float(ms)))
            self._cache = (-math.inf, None)

    def count(self, now: float) -> int:
        """Observations still counted at ``now``."""
        with self._lock:
            return sum(1 for t, _ in self._obs if t > now - self.max_age_s)

    def quantiles(self, now: float) -> tuple[float, float] | None:
        """``(p50, p95)`` in ms at ``now``; ``None`` with no observation younger than ``max_age_s``."""
        until, value = self._cache
        if now < until:
            return value
        with self._lock:
            horizon = now - self.max_age_s
            obs = self._obs
            while obs and obs[0][0] <= horizon:
                obs.popleft()
            live = [(t, ms) for t, ms in obs if t > horizon]
            if not live:
                self._cache = (math.inf, None)  # stays empty until the next add
                return None
            newest = max(t for t, _ in live)
            weighted = sorted((ms, 2.0 ** ((t - newest) / self.half_life_s)) for t, ms in live)
            value = (_quantile(weighted, 0.5), _quantile(weighted, 0.95))
            self._cache = (min(t for t, _ in live) + self.max_age_s, value)
            return value


def _quantile(weighted: Sequence[tuple[float, float]], q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total (``weighted`` sorted)."""
    total = sum(w for _, w in weighted)
    running = 0.0
    for value, w in weighted:
        running += w
        if running >= q * total - 1e-12:
            return value
    return weighted[-1][0]


@dataclass(frozen=True)
class LatencyStat:
    """One deployment's observed latency of one kind (:data:`TOTAL` or :data:`TTFT`), in ms."""

    tier: str
    model: str
    kind: str
    p50_ms: float
    p95_ms: float
    count: int


def budget_of(max_latency_ms: float | None, deadline: Any, wall_now: float) -> tuple[float, str] | None:
    """The call's latency budget in ms and how to name it: the step's ``max_latency_ms``, the time
    left before the run's ``deadline`` (seconds since the epoch), whichever is less. ``None``:
    no budget. Raises ``ValueError`` (a fixed message, never the value) for a deadline that is not
    a finite number, or is more than a year ahead (milliseconds since the epoch, by mistake).

    Example:
        >>> budget_of(1000, None, 0.0)
        (1000, 'max_latency_ms 1000')
        >>> budget_of(1000, 100.5, 100.0)
        (500.0, "the run's deadline (500 ms left)")
    """
    if deadline is None:
        return None if max_latency_ms is None else (max_latency_ms, f"max_latency_ms {max_latency_ms:g}")
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not math.isfinite(deadline):
        raise ValueError("is not a number of seconds since the epoch; the deadline is ignored")
    if deadline - wall_now > _YEAR_S:
        raise ValueError("is more than a year ahead (milliseconds since the epoch?); it is read as seconds since "
                         "the epoch, so the deadline is ignored")
    left = (deadline - wall_now) * 1000.0
    if max_latency_ms is not None and max_latency_ms <= left:
        return max_latency_ms, f"max_latency_ms {max_latency_ms:g}"
    return left, f"the run's deadline ({max(left, 0.0):.0f} ms left)"


def choose_tier(candidates: Sequence[str], p95: Mapping[str, float | None], budget_ms: float, label: str, *,
                judged: bool) -> tuple[str, str] | None:
    """The tier a budget allows: ``candidates`` are the decided tier then each stronger one the
    call may use; ``p95`` their observed p95 in ms (``None``: not observed, counts as fitting);
    ``judged``: a cascade (a tier is skipped too when it and the next cannot both fit). Returns
    ``None`` to keep the decided tier, else the tier and the reason's note. Pure.

    The rule: a tier fits when its p95 is at most a positive budget; a tier not observed yet fits
    any positive budget (it is tried, the configured order standing until it is known). A budget
    of 0 or less (a passed deadline) leaves no time: nothing fits. When nothing fits, the fastest
    *observed* candidate is taken (ties: the cheapest), never an unobserved one.

    Example:
        >>> choose_tier(("fast", "strong"), {"fast": 300.0, "strong": 900.0}, 1000, "max_latency_ms 1000", judged=True)
        ('strong', "latency: 'fast' p95 300 ms + an escalation to 'strong' p95 900 ms > max_latency_ms 1000, moved to 'strong'")
    """
    skipped: list[str] = []
    for i, tier in enumerate(candidates):
        own = p95.get(tier)
        if budget_ms <= 0.0:  # no time left: nothing fits, the fastest observed is taken below
            break
        if own is not None and own > budget_ms:
            skipped.append(f"{tier!r} p95 {own:.0f} ms")
            continue
        if judged and own is not None and i + 1 < len(candidates):
            after = candidates[i + 1]
            more = p95.get(after)
            if more is not None and own + more > budget_ms:
                skipped.append(f"{tier!r} p95 {own:.0f} ms + an escalation to {after!r} p95 {more:.0f} ms")
                continue
        if i == 0:
            return None
        unseen = " (no observations yet)" if own is None else ""
        return tier, f"latency: {', '.join(skipped)} > {label}, moved to {tier!r}{unseen}"
    observed = [t for t in candidates if p95.get(t) is not None]
    if not observed:
        return None
    fastest = min(observed, key=lambda t: p95[t] or 0.0)  # ties: the cheapest
    seen = ", ".join(f"{t!r} p95 {p95[t] or 0.0:.0f} ms" if p95.get(t) is not None else f"{t!r} not observed"
                     for t in candidates)
    kept = ", kept" if fastest == candidates[0] else ""
    which = "fastest" if len(observed) == len(candidates) else "fastest observed"
    return fastest, f"latency: no allowed tier fits {label} ({seen}); the {which} is {fastest!r}{kept}"


def _label(budget_ms: float, by_deadline: bool) -> str:
    return f"the run's deadline ({max(budget_ms, 0.0):.0f} ms left)" if by_deadline else f"max_latency_ms {budget_ms:g}"


class LatencyBook:
    """Observed latency of one router's tiers and deployments, and the latency check of its decisions.

    ``tiers`` are the configuration's, cheap to strong; the windows' settings are the
    configuration's ``latency:`` section. ``clock`` (default :func:`time.monotonic`) and
    ``wall_clock`` (default :func:`time.time`, for deadlines) are read by :meth:`check` only.

    Example:
        >>> book = LatencyBook(("fast", "strong"))
        >>> book.observe("fast", "openai/gpt-4o-mini", TOTAL, 2.3, now=0.0)
        >>> [(s.tier, s.kind, s.p95_ms) for s in book.stats(now=1.0)]
        [('fast', 'total', 2300.0)]
    """

    def __init__(self, tiers: Sequence[str], *, window: int = 64, half_life_s: float = 60.0, max_age_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self.tiers = tuple(tiers)
        self._rank = {t: i for i, t in enumerate(self.tiers)}
        self._settings = (window, half_life_s, max_age_s)
        self.clock = clock
        self.wall_clock = wall_clock
        self._tier_windows = {(t, k): LatencyWindow(*self._settings) for t in self.tiers for k in (TOTAL, TTFT)}
        self._deployments: dict[tuple[str, str, str], LatencyWindow] = {}
        self._lock = threading.Lock()
        self._histogram: Any = None
        self._chosen: dict[tuple[Any, ...], Any] = {}
        """Recent :func:`choose_tier` results, by their inputs (bounded)."""
        self._told: set[tuple[str, ...]] = set()

    @classmethod
    def from_config(cls, tiers: Sequence[str], config: Any) -> LatencyBook:
        """A book with a :class:`~steproute.config.LatencyConfig`'s window settings."""
        return cls(tiers, window=config.window, half_life_s=config.half_life_s, max_age_s=config.max_age_s)

    # -- observations --------------------------------------------------------------------------

    def observe(self, tier: str, model: str, kind: str, seconds: float, now: float) -> None:
        """One call of ``model`` (a deployment of ``tier``) took ``seconds`` (``kind``: :data:`TOTAL`
        or :data:`TTFT`) and ended at ``now``. Unknown tiers are ignored."""
        tier_window = self._tier_windows.get((tier, kind))
        if tier_window is None or not seconds >= 0.0:
            return
        ms = seconds * 1000.0
        tier_window.add(ms, now)
        key = (tier, model, kind)
        window = self._deployments.get(key)
        if window is None:
            with self._lock:
                window = self._deployments.get(key)
                if window is None and len(self._deployments) < MAX_DEPLOYMENT_WINDOWS:
                    window = self._deployments[key] = LatencyWindow(*self._settings)
        if window is not None:
            window.add(ms, now)
        histogram = self._histogram
        if histogram is not None:
            histogram.record(seconds, {_TIER: tier, _MODEL: model, _KIND: kind})

    def quantiles(self, tier: str, now: float, kind: str = TOTAL) -> tuple[float, float] | None:
        """The tier's ``(p50, p95)`` in ms over all its deployments' calls (``None``: no recent observation)."""
        window = self._tier_windows.get((tier, kind))
        return None if window is None else window.quantiles(now)

    def stats(self, now: float) -> list[LatencyStat]:
        """Every deployment's recent latency, one :class:`LatencyStat` per (deployment, kind) observed."""
        with self._lock:
            items = list(self._deployments.items())
        stats = []
        for (tier, model, kind), window in items:
            q = window.quantiles(now)
            if q is not None:
                stats.append(LatencyStat(tier, model, kind, q[0], q[1], window.count(now)))
        return stats

    # -- the decision ----------------------------------------------------------------------------

    def check(self, step: str, tier: str, metadata: Mapping[str, Any] | None, max_latency_ms: float | None,
              high: int, cascade: Sequence[str] | None) -> tuple[str, str] | None:
        """The tier a call of ``step`` decided at ``tier`` moves to for its latency budget, and the
        reason's note (see :func:`choose_tier`); ``None``: no move (no budget, the tier fits,
        nothing observed). ``high``: the rank of the step's ``max_tier``; ``cascade``: a cascade
        step's tiers. Reads the clocks. The move is not logged here: the thread's pin may still
        override it; :meth:`settle` says what the call follows.

        Example:
            >>> book = LatencyBook(("fast", "strong"), clock=lambda: 0.0)
            >>> book.observe("fast", "openai/gpt-4o-mini", TOTAL, 2.3, now=0.0)
            >>> book.check("answer", "fast", {}, 1000, 1, None)
            ('strong', "latency: 'fast' p95 2300 ms > max_latency_ms 1000, moved to 'strong' (no observations yet)")
        """
        budget = self._budget(step, metadata, max_latency_ms)
        if budget is None:
            return None
        budget_ms, by_deadline = budget
        rank = self._rank.get(tier)
        if rank is None:
            return None
        now = self.clock()
        own = self.quantiles(tier, now)
        if own is None or (own[1] <= budget_ms and cascade is None):  # the common case: it fits, or is not known
            return None
        candidates = (tier, *(t for t in self.tiers[rank + 1:high + 1] if cascade is None or t in cascade))
        p95 = {t: (q[1] if (q := self.quantiles(t, now)) is not None else None) for t in candidates}
        key = (budget_ms, by_deadline, *p95.items(), cascade is not None)
        chosen = self._chosen.get(key, self)
        if chosen is self:  # the same budget and observations choose the same: a slow tier's calls pay once
            chosen = choose_tier(candidates, p95, budget_ms, _label(budget_ms, by_deadline), judged=cascade is not None)
            if len(self._chosen) >= 256:
                self._chosen.clear()
            self._chosen[key] = chosen
        return chosen  # type: ignore[no-any-return]

    def _budget(self, step: str, metadata: Mapping[str, Any] | None,
                max_latency_ms: float | None) -> tuple[float, bool] | None:
        """The call's budget in ms and whether the run's deadline set it; ``None``: no budget. A
        deadline that cannot be one is said once (never its value) and ignored."""
        deadline = metadata.get(DEADLINE_KEY) if metadata else None
        if deadline is None:
            return None if max_latency_ms is None else (max_latency_ms, False)
        try:
            budget_ms = budget_of(max_latency_ms, deadline, self.wall_clock())[0]  # type: ignore[index]
        except ValueError as exc:  # the message is fixed text, never the value
            say_once(self, ("latency-deadline", step, str(exc)),
                     f"steproute: step {shown(step)}: run metadata {DEADLINE_KEY!r} {exc}")
            return None if max_latency_ms is None else (max_latency_ms, False)
        return budget_ms, max_latency_ms is None or budget_ms < max_latency_ms

    def settle(self, decision: Any, note: str | None, metadata: Mapping[str, Any] | None,
               max_latency_ms: float | None) -> Any:
        """The decision a call follows (after the thread's pin), with what its latency budget did
        said: ``note``, :meth:`check`'s move, is logged once only when ``decision`` still carries
        it (``latency_from``; a pin that kept the call elsewhere overrides it); a pinned decision
        whose tier's p95 is over the budget gets ``latency: ... kept by the pin`` on its reason,
        said once too. Returns the decision (a copy when its reason grows).

        Example:
            >>> from steproute.types import Decision
            >>> book = LatencyBook(("fast", "strong"), clock=lambda: 0.0)
            >>> book.observe("fast", "m", TOTAL, 0.3, now=0.0)
            >>> pinned = Decision("answer", None, "fast", "m", "pin", "pinned to tier 'fast'", pinned=True)
            >>> book.settle(pinned, None, {}, 200).reason
            "pinned to tier 'fast'; latency: 'fast' p95 300 ms > max_latency_ms 200, kept by the pin"
        """
        step = decision.step
        if decision.latency_from is not None:
            if note is not None:
                self._say((step, decision.latency_from, decision.tier), note)
            return decision
        if not decision.pinned or (max_latency_ms is None and not (metadata and DEADLINE_KEY in metadata)):
            return decision
        budget = self._budget(step, metadata, max_latency_ms)
        q = self.quantiles(decision.tier, self.clock()) if budget is not None else None
        if q is None or q[1] <= budget[0]:  # type: ignore[index]
            return decision
        budget_ms, by_deadline = budget  # type: ignore[misc]
        kept = f"latency: {decision.tier!r} p95 {q[1]:.0f} ms > {_label(budget_ms, by_deadline)}, kept by the pin"
        self._say((step, decision.tier), kept)  # a move's key is (step, from, to): no tier name can collide
        return replace(decision, reason=f"{decision.reason}; {kept}")

    def _say(self, told: tuple[str, ...], note: str) -> None:
        if told not in self._told:  # said once per step and move (a set lookup on the usual path)
            if len(self._told) >= 4096:
                self._told.clear()  # say_once still remembers what was said
            self._told.add(told)
            say_once(self, ("latency", *told), f"steproute: step {shown(told[0])}: {note}")

    # -- metrics ---------------------------------------------------------------------------------

    def export(self, meter: Any) -> None:
        """Record every observation on ``meter``'s histogram ``steproute.deployment.latency`` (s)
        and report each deployment's p50/p95 as the gauges ``steproute.deployment.latency.p50``
        and ``.p95`` (s), with the tier, the model and ``steproute.latency.kind`` (total, ttft)."""
        from opentelemetry.metrics import Observation

        self._histogram = meter.create_histogram(
            "steproute.deployment.latency", unit="s", description="Latency of each deployment's calls: total and, "
                                                                   "for streams, time to first token")

        def gauge(index: int) -> Callable[[Any], Iterator[Observation]]:
            def observe(_options: Any) -> Iterator[Observation]:
                for s in self.stats(self.clock()):
                    value = s.p50_ms if index == 0 else s.p95_ms
                    yield Observation(value / 1000.0, {_TIER: s.tier, _MODEL: s.model, _KIND: s.kind})
            return observe

        for index, name in enumerate(("p50", "p95")):
            meter.create_observable_gauge(f"steproute.deployment.latency.{name}", callbacks=[gauge(index)], unit="s",
                                          description=f"Observed {name} latency of each deployment (decayed window)")
