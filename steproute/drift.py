"""Routing drift, per step: has a step's tier mix, escalation rate, fallback rate, cost per call
or feedback quality moved?

Two ways in, one test (:mod:`steproute._drift_stats`, documented in docs/drift.md):

- offline, :func:`detect_drift` on a decision log read with
  :func:`~steproute.decision_log.read_log` (what ``steproute drift LOG`` prints): each step's
  last ``recent`` calls, in order of their timestamps, against the calls before them, Holm's
  correction over every figure of every step;
- in-process, :class:`DriftWatch`: given to the router as its decision log (it passes every
  entry on to the real log, if any), it keeps a bounded window of each step's calls, runs the
  same test every ``every`` calls of a step on a background thread, and calls
  ``on_drift(step, result)`` once per drift episode.

Not to be confused with ``steproute report --config``'s *config drift* (a configuration
against the tiers a log shows): this is the log against its own past.

Example:
    >>> from steproute.decision_log import LogContents
    >>> calls = [{"id": f"d{i}", "step": "plan", "tier": "fast" if i < 200 or i % 2 else "strong",
    ...           "cost_usd": 0.001, "ts": i} for i in range(400)]
    >>> report = detect_drift(LogContents(decisions=calls), recent=200)
    >>> report.drifted, [f.figure for f in report.steps[0].moved]
    (['plan'], ['tier_mix'])
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics

from steproute._drift_stats import (
    FIGURES,
    CallFacts,
    DriftThresholds,
    FigureChange,
    StepDrift,
    call_facts,
    compare,
    family_size,
    judge,
)
from steproute.decision_log import DecisionLog, JsonlDecisionLog, LogContents
from steproute.errors import shown

__all__ = ["FIGURES", "DriftReport", "DriftThresholds", "DriftWatch", "FigureChange", "StepDrift", "detect_drift",
           "in_time_order"]

logger = logging.getLogger("steproute")


@dataclass(frozen=True)
class DriftReport:
    """Every step's verdict over one decision log (:func:`detect_drift`)."""

    recent: int
    """The size of the recent window (the last ``recent`` calls of each step)."""
    thresholds: DriftThresholds
    steps: tuple[StepDrift, ...]
    tests: int
    """How many figures were tested: the size of Holm's family."""

    @property
    def drifted(self) -> list[str]:
        """The steps that drifted, in the log's order."""
        return [s.step for s in self.steps if s.drifted]

    def as_dict(self) -> dict[str, Any]:
        """One JSON-ready object: ``steps`` (each with ``step``, ``drifted`` and ``figures``) and the test's settings."""
        t = self.thresholds
        return {"recent": self.recent, "alpha": t.alpha, "correction": "holm", "tests": self.tests,
                "thresholds": {"min_calls": t.min_calls, "min_rated": t.min_rated, "tier_mix_tvd": t.tier_mix_tvd,
                               "rate_h": t.rate_h, "rank_a": t.rank_a, "cost_change": t.cost_change,
                               "quality_change": t.quality_change},
                "drifted": self.drifted, "steps": [s.as_dict() for s in self.steps]}


def in_time_order(decisions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Decision entries sorted by ``ts`` (stable); an entry without a usable ``ts`` keeps its
    place after the entry before it.

    Example:
        >>> [d["id"] for d in in_time_order([{"id": "b", "ts": 2}, {"id": "x"}, {"id": "a", "ts": 1}])]
        ['a', 'b', 'x']
    """
    keyed = []
    last = float("-inf")
    for i, d in enumerate(decisions):
        ts = d.get("ts")
        if isinstance(ts, (int, float)) and not isinstance(ts, bool) and ts == ts:
            last = float(ts)
        keyed.append((last, i, d))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [d for _, _, d in keyed]


def detect_drift(contents: LogContents, *, recent: int = 500,
                 thresholds: DriftThresholds | None = None) -> DriftReport:
    """Compare each step's last ``recent`` calls with the calls before them (see the module).

    Feedback is joined by decision id from ``contents.feedback``.

    Raises:
        ValueError: ``recent`` is not an integer of at least 1.
        ImportError: scipy is not installed (``pip install 'steproute[drift]'``).
    """
    if isinstance(recent, bool) or not isinstance(recent, int) or recent < 1:
        raise ValueError("recent must be an integer of at least 1")
    thresholds = thresholds or DriftThresholds()
    by_step: dict[str, list[CallFacts]] = {}
    for d in in_time_order(contents.decisions):
        feedback = contents.feedback.get(d["id"]) if isinstance(d.get("id"), str) else None
        quality = float(feedback["quality"]) if feedback is not None else None
        by_step.setdefault(str(d.get("step")), []).append(call_facts(d, quality))
    compared = [compare(step, calls[:-recent], calls[-recent:], thresholds) for step, calls in by_step.items()]
    return DriftReport(recent, thresholds, tuple(judge(compared, thresholds.alpha)), family_size(compared))


def describe(result: StepDrift) -> str:
    """What moved, in one line: ``escalation rate 5.0% → 25.0% (p=1.2e-12)``.

    Example:
        >>> describe(StepDrift("plan", 100, 100, True, (FigureChange("escalation_rate", 0.05, 0.25, 100, 100,
        ...     p_value=1e-6, p_adjusted=3e-6, moved=True),), drifted=True))
        'escalation rate 5.0% → 25.0% (p=3e-06)'
    """
    return "; ".join(f"{f.figure.replace('_', ' ')} {_value(f.figure, f.before)} → {_value(f.figure, f.after)} "
                     f"(p={f.p_adjusted:.2g})" for f in result.moved)


def _value(figure: str, value: float | dict[str, float] | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{t} {s:.0%}" for t, s in value.items())
    if figure == "cost_per_call":
        return f"${value:.6g}"
    if figure == "quality":
        return f"{value:.2f}"
    return f"{value:.1%}"


class _Call:
    __slots__ = ("facts", "id", "quality")

    def __init__(self, facts: CallFacts, id: str | None) -> None:
        self.facts, self.id = facts, id
        self.quality: float | None = None


def _facts(calls: deque[_Call]) -> list[CallFacts]:
    return [CallFacts(c.facts.tier, c.facts.escalated, c.facts.fell_back, c.facts.cost_usd, c.quality) for c in calls]


class _Window:
    __slots__ = ("calls", "since")

    def __init__(self) -> None:
        self.calls: deque[_Call] = deque()
        self.since = 0


_STOP = object()


class DriftWatch:
    """Watch each step for drift while a router runs; call ``on_drift(step, result)`` once per episode.

    Give it to the router as its decision log; it passes every entry on to ``log`` (a path or a
    :class:`~steproute.decision_log.DecisionLog`; ``None``: no file), so a log keeps being written.

    - Bounded: per step, the last ``window + reference`` calls (``reference`` defaults to
      ``window``), at most ``max_steps`` steps (later steps are not watched; one warning).
    - Cheap on the call path: ``write`` appends to a deque under a lock; every ``every`` calls of
      a step it copies the window and hands it to one background thread (``background=False``:
      checks on the caller's thread), which runs :func:`~steproute._drift_stats.compare`. When
      checks pile up (more than 64 waiting), a check is skipped and counted in :attr:`skipped`.
    - An episode starts when a check finds the step drifted and ends when a later check finds it
      steady: ``on_drift`` runs once at the start (and a warning names what moved), never raises
      into the router (an exception is counted in :attr:`callback_errors`, logged once).
    - Feedback entries (``StepRouter.feedback``) fill in the quality of calls still in a window.

    ``thresholds`` default to :class:`DriftThresholds` with ``alpha=0.001``: the checks repeat, so
    each one must be rarer to alarm (docs/drift.md gives the false-episode rate measured).

    Example:
        >>> seen = []
        >>> watch = DriftWatch(lambda step, result: seen.append(step), window=100, every=50, background=False)
        >>> for i in range(300):
        ...     watch.write({"type": "decision", "id": f"d{i}", "step": "plan", "cost_usd": 0.001,
        ...                  "tier": "fast" if i < 200 or i % 2 else "strong"})
        >>> seen, watch.drifting
        (['plan'], frozenset({'plan'}))
        >>> # router = StepRouter(config, decision_log=DriftWatch(on_drift, log="decisions.jsonl"))
    """

    def __init__(self, on_drift: Callable[[str, StepDrift], object] | None = None, *,
                 log: DecisionLog | str | os.PathLike[str] | None = None, window: int = 500,
                 reference: int | None = None, every: int = 250, thresholds: DriftThresholds | None = None,
                 max_steps: int = 1000, background: bool = True, meter_provider: Any = None) -> None:
        for name, value in (("window", window), ("every", every), ("max_steps", max_steps),
                            ("reference", window if reference is None else reference)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DriftWatch: {name} must be an integer of at least 1")
        if log is not None and not isinstance(log, DecisionLog):
            log = JsonlDecisionLog(log)
        self.log: DecisionLog | None = log
        self.on_drift = on_drift
        self.window = window
        self.reference = window if reference is None else reference
        self.every = every
        self.thresholds = thresholds or DriftThresholds(alpha=0.001)
        self.max_steps = max_steps
        self.skipped = 0
        """Checks not run because too many were waiting for the background thread."""
        self.callback_errors = 0
        """Exceptions raised by ``on_drift`` (each swallowed; the first one logged)."""
        self.last: dict[str, StepDrift] = {}
        """Each step's latest check."""
        self._windows: dict[str, _Window] = {}
        self._by_id: dict[str, _Call] = {}
        self._drifting: set[str] = set()
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._episodes = metrics.get_meter("steproute", meter_provider=meter_provider).create_counter(
            "steproute.drift.episodes", unit="{episode}", description="Drift episodes found by a DriftWatch, by step")
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=64)
            self._thread = threading.Thread(target=self._run, name="steproute-drift-watch", daemon=True)
            self._thread.start()

    @property
    def include_prompts(self) -> bool:
        """The wrapped log's setting (``False`` without a log)."""
        return bool(self.log is not None and self.log.include_prompts)

    @include_prompts.setter
    def include_prompts(self, value: bool) -> None:
        if self.log is not None:
            self.log.include_prompts = value

    @property
    def held(self) -> int:
        """How many calls the windows hold, over every step (at most ``max_steps × (window + reference)``)."""
        with self._lock:
            return sum(len(w.calls) for w in self._windows.values())

    @property
    def drifting(self) -> frozenset[str]:
        """The steps in a drift episode now."""
        with self._lock:
            return frozenset(self._drifting)

    # -- the router's side ----------------------------------------------------------------------

    def write(self, entry: Mapping[str, Any]) -> None:
        """Pass ``entry`` on to the log, then note it (O(1); every ``every`` calls of a step, a copy
        of its window goes to the checker). Never raises."""
        if self.log is not None:
            self.log.write(entry)
        try:
            self._note(entry)
        except Exception as exc:  # a malformed entry must never fail the router's call
            self._warn_once("entry", "drift watch: an entry could not be read (%s); it is not counted", type(exc).__name__)

    def _note(self, entry: Mapping[str, Any]) -> None:
        kind, ident = entry.get("type"), entry.get("id")
        if kind == "feedback":
            with self._lock:
                call = self._by_id.get(ident) if isinstance(ident, str) else None
                if call is not None:
                    call.quality = float(entry["quality"])
            return
        if kind != "decision":
            return
        step = str(entry.get("step"))
        call = _Call(call_facts(entry), ident if isinstance(ident, str) else None)
        with self._lock:
            w = self._windows.get(step)
            if w is None and len(self._windows) < self.max_steps:
                w = self._windows[step] = _Window()
            snapshot = None if w is None else self._append(w, call)
        if w is None:
            self._warn_once("steps", "drift watch: more than %d steps; step %s and later new steps are not watched",
                            self.max_steps, shown(step))
        if snapshot is None:
            return
        if self._queue is None:
            self._safe_check(step, snapshot)
            return
        try:
            self._queue.put_nowait((step, snapshot))
        except queue.Full:
            with self._lock:
                self.skipped += 1

    def _append(self, w: _Window, call: _Call) -> list[CallFacts] | None:
        """Add ``call`` to its step's window (the lock held); a copy of the window when a check is due."""
        w.calls.append(call)
        if call.id is not None:
            self._by_id[call.id] = call
        if len(w.calls) > self.window + self.reference:
            old = w.calls.popleft()
            if old.id is not None and self._by_id.get(old.id) is old:
                del self._by_id[old.id]
        w.since += 1
        if w.since < self.every or len(w.calls) < self.window + self.thresholds.min_calls:
            return None
        w.since = 0
        return _facts(w.calls)

    def close(self) -> None:
        """Stop the checker (after the checks queued) and close the wrapped log."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=5)
            except queue.Full:
                pass
            self._thread.join(timeout=30)
        if self.log is not None:
            self.log.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the checks queued so far have run (and the wrapped log, when it can, has
        written its entries); whether that happened within ``timeout`` seconds."""
        done = True
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            event = threading.Event()
            try:
                self._queue.put(event, timeout=timeout)
                done = event.wait(timeout)
            except queue.Full:
                done = False
        flush = getattr(self.log, "flush", None)
        if callable(flush):
            done = bool(flush(timeout=timeout)) and done
        return done

    def check(self, step: str) -> StepDrift | None:
        """Run the test on ``step``'s window now, on this thread (``None``: the step was never seen).
        Starts or ends an episode as a background check would."""
        with self._lock:
            w = self._windows.get(step)
            snapshot = None if w is None else _facts(w.calls)
        return None if snapshot is None else self._check(step, snapshot)

    # -- the checker ----------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._safe_check(*item)

    def _safe_check(self, step: str, calls: list[CallFacts]) -> None:
        try:
            self._check(step, calls)
        except Exception as exc:  # scipy missing, a bug: the watch stops judging, the router goes on
            hint = ": pip install 'steproute[drift]'" if isinstance(exc, ImportError) else ""
            self._warn_once("check", "drift watch: a check failed (%s%s); drift is not being judged",
                            type(exc).__name__, hint)

    def _check(self, step: str, calls: list[CallFacts]) -> StepDrift:
        split = max(0, len(calls) - self.window)
        (result,) = judge([compare(step, calls[:split], calls[split:], self.thresholds)], self.thresholds.alpha)
        with self._lock:
            self.last[step] = result
            started = result.drifted and step not in self._drifting
            if started:
                self._drifting.add(step)
            ended = result.enough and not result.drifted and step in self._drifting
            if ended:
                self._drifting.discard(step)
        if ended:
            logger.info("drift watch: step %s is steady again", shown(step))
        if started:
            self._started(step, result)
        return result

    def _started(self, step: str, result: StepDrift) -> None:
        logger.warning("drift watch: step %s drifted: %s (the last %d calls against the %d before them)",
                       shown(step), describe(result), result.calls_recent, result.calls_before)
        try:
            self._episodes.add(1, {"steproute.step": step})
        except Exception:
            pass
        if self.on_drift is None:
            return
        try:
            self.on_drift(step, result)
        except Exception as exc:
            with self._lock:
                self.callback_errors += 1
            self._warn_once("callback", "drift watch: on_drift raised %s for step %s; the router goes on (further "
                            "errors of the callback are counted in .callback_errors, not logged)",
                            type(exc).__name__, shown(step))

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        logger.warning(message, *args)
