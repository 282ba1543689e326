"""``bandit``: a step's tier learned online from ``feedback()``, within guard rails.

Thompson sampling over the step's tiers, one Beta posterior of quality per (step, tier): a
feedback of quality ``q`` in [0, 1] adds ``q`` to the tier's successes and ``1 - q`` to its
failures. Each call draws a quality from every tier's posterior and takes the tier with the best
draw minus ``cost_weight`` times the tier's cost (``costs``, USD a call); the tier with the best
posterior *mean* reward is the one it *exploits*, any other draw is *exploration*. Guard rails:

* only the tiers between the step's ``min_tier`` and ``max_tier`` (and the call's hint bounds)
  are arms, so the bandit never leaves the step's bounds;
* exploration is taken only while the explored share of the step's calls (in this process)
  stays at or under ``explore``, and while the extra cost of exploring today (UTC, in this
  process) stays under ``budget_usd_per_day``; when either stops it, the reason says so (and
  the log, once);
* every reason says ``explore`` or ``exploit`` with the posterior means;
* feedback goes to the tier that answered the call (after a cross-tier fallback, not the tier
  decided; not learnt when that tier is not an arm), said on the reason and once in the log.

The state lives in a LangGraph ``BaseStore`` (:class:`BanditStore`; default: an
``InMemoryStore`` of the router's own), one item per (step, replica) holding that replica's
sums: each replica writes only its own item, so no update is ever lost without a lock, and a
replica's view is the sum of every item. Deciding reads no store: the sums are cached and
refreshed off the hot path (a background read when older than ``refresh_seconds``, and after
each feedback). Share the store across replicas with :func:`share_bandit_store`.

Example:
    >>> from steproute.types import StepRequest
    >>> bandit = BanditPolicy(("fast", "strong"), seed=0)
    >>> choice = bandit.choose(StepRequest("answer", []))
    >>> choice.tier, choice.reason.split(":")[0]
    ('fast', "bandit exploit 'fast'")
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from steproute.errors import say_once
from steproute.pinning import encode_store_label
from steproute.policies.base import Choice
from steproute.types import Hint, StepRequest

__all__ = ["BanditPolicy", "BanditStore", "share_bandit_store"]

log = logging.getLogger("steproute")

Sums = dict[str, tuple[float, float]]
"""Tier → (quality sum, feedback count)."""


class BanditStore:
    """A bandit's sums in a LangGraph ``BaseStore`` (``InMemoryStore``, ``PostgresStore``, ...),
    under ``(*prefix, step)``, key = the replica, value ``{"tiers": {tier: [quality_sum, n]}}``.

    Example:
        >>> from langgraph.store.memory import InMemoryStore
        >>> shared = BanditStore(InMemoryStore())
        >>> shared.write("answer", "replica-a", {"fast": (3.0, 4.0)})
        >>> shared.write("answer", "replica-b", {"fast": (1.0, 1.0), "strong": (0.5, 1.0)})
        >>> shared.read("answer")
        {'fast': (4.0, 5.0), 'strong': (0.5, 1.0)}
    """

    def __init__(self, store: Any = None, *, prefix: tuple[str, ...] = ("steproute", "bandit")) -> None:
        if store is None:
            from langgraph.store.memory import InMemoryStore

            store = InMemoryStore()
        self.store, self.prefix = store, prefix

    def _namespace(self, step: str) -> tuple[str, ...]:
        return (*(encode_store_label(label) for label in self.prefix), encode_store_label(step))

    def write(self, step: str, replica: str, sums: Mapping[str, tuple[float, float]]) -> None:
        """Replace ``replica``'s sums for ``step`` (only that replica writes its item)."""
        self.store.put(self._namespace(step), encode_store_label(replica),
                       {"tiers": {tier: [q, n] for tier, (q, n) in sums.items()}, "at": time.time()})

    def read(self, step: str, *, skip: str | None = None) -> Sums:
        """Every replica's sums for ``step`` added up (``skip``: leave that replica's item out).
        A malformed item counts as nothing."""
        namespace, skipped = self._namespace(step), encode_store_label(skip) if skip is not None else None
        total: dict[str, tuple[float, float]] = {}
        for item in self.store.search(namespace, limit=100_000):
            if tuple(item.namespace) != namespace or item.key == skipped:
                continue
            tiers = item.value.get("tiers") if isinstance(item.value, dict) else None
            for tier, pair in (tiers or {}).items():
                try:
                    q, n = float(pair[0]), float(pair[1])
                except (TypeError, ValueError, IndexError):
                    continue
                if 0 <= q <= n:
                    held = total.get(tier, (0.0, 0.0))
                    total[tier] = (held[0] + q, held[1] + n)
        return total


class BanditPolicy:
    """Thompson sampling over ``tiers`` (cheap to strong) from feedback; see the module's text.

    ``prior``: a tier the bandit starts out believing in (``prior_strength`` successes ahead);
    ``seed``: a reproducible sequence of draws; ``replica``: this process's key in the store
    (default: a fresh id per router, so a restarted replica keeps what the old one learnt);
    ``remember``: decisions kept for their feedback to find their step and tier.
    """

    name = "bandit"

    def __init__(self, tiers: Sequence[str], *, explore: float = 0.1, costs: Mapping[str, float] | None = None,
                 cost_weight: float = 0.0, budget_usd_per_day: float | None = None, prior: str | None = None,
                 prior_strength: float = 2.0, store: BanditStore | None = None, refresh_seconds: float = 5.0,
                 seed: int | None = None, replica: str | None = None, remember: int = 100_000) -> None:
        self.tiers = tuple(tiers)
        if not self.tiers:
            raise ValueError("bandit: 'tiers' is empty (no tier between min_tier and max_tier?)")
        unknown = [t for t in [*(costs or {}), *([prior] if prior else [])] if t not in self.tiers]
        if unknown:
            raise ValueError(f"bandit: {'costs' if unknown[0] in (costs or {}) else 'prior'} names {unknown[0]!r}, "
                             f"not one of the bandit's tiers ({', '.join(self.tiers)})")
        if budget_usd_per_day is not None and costs is None:
            raise ValueError("bandit: 'budget_usd_per_day' needs 'costs' (what a call of each tier costs)")
        if budget_usd_per_day is not None and not budget_usd_per_day > 0:
            raise ValueError(f"bandit: 'budget_usd_per_day' must be more than 0 (got {budget_usd_per_day:g})")
        self.explore, self.cost_weight, self.budget = explore, cost_weight, budget_usd_per_day
        self.costs = {t: float((costs or {}).get(t, 0.0)) for t in self.tiers}
        self.prior, self.prior_strength = prior, prior_strength
        self.store = store if store is not None else BanditStore()
        self.refresh_seconds = refresh_seconds
        self.replica = replica or uuid.uuid4().hex
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._own: dict[str, dict[str, tuple[float, float]]] = {}
        self._others: dict[str, Sums] = {}
        self._loaded: dict[str, float] = {}
        self._loading: set[str] = set()
        self._calls: dict[str, list[int]] = {}  # step -> [calls, explored]
        self._spent: dict[int, float] = {}  # UTC day -> exploration's extra cost
        self._decisions: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._remember = remember

    # -- the state -------------------------------------------------------------------------

    def posterior(self, step: str) -> dict[str, tuple[float, float]]:
        """Tier → Beta (alpha, beta) of quality for ``step``: prior, this replica's feedback and the others'
        (as last read).

        Example:
            >>> BanditPolicy(("fast", "strong"), prior="strong").posterior("answer")
            {'fast': (1.0, 1.0), 'strong': (3.0, 1.0)}
        """
        own, others = self._own.get(step, {}), self._others.get(step, {})
        out = {}
        for tier in self.tiers:
            q = own.get(tier, (0.0, 0.0))[0] + others.get(tier, (0.0, 0.0))[0]
            n = own.get(tier, (0.0, 0.0))[1] + others.get(tier, (0.0, 0.0))[1]
            out[tier] = (1.0 + q + (self.prior_strength if tier == self.prior else 0.0), 1.0 + n - q)
        return out

    def use_store(self, store: BanditStore) -> None:
        """Keep the state in ``store`` from now on (the next decision of each step reads it)."""
        with self._lock:
            self.store = store
            self._loaded.clear()

    def refresh(self, step: str) -> None:
        """Read the other replicas' sums for ``step`` from the store (what deciding uses next)."""
        try:
            others = self.store.read(step, skip=self.replica)
        except Exception as exc:  # a store down: decide on what is cached, say it once
            say_once(self, ("bandit-read", step), f"bandit, step {step!r}: the store could not be read "
                     f"({type(exc).__name__}); deciding on the state last read")
            others = self._others.get(step, {})
        with self._lock:
            self._others[step] = others
            self._loaded[step] = time.monotonic()
            self._loading.discard(step)

    def _refresh_later(self, step: str) -> None:
        """A background read when ``step``'s cache is missing or stale: never on the hot path."""
        loaded = self._loaded.get(step)
        if (loaded is not None and time.monotonic() - loaded < self.refresh_seconds) or step in self._loading:
            return
        self._loading.add(step)
        threading.Thread(target=self.refresh, args=(step,), name="steproute-bandit-refresh", daemon=True).start()

    # -- deciding --------------------------------------------------------------------------

    def _arms(self, hint: Hint) -> tuple[str, ...]:
        low = self.tiers.index(hint.min_tier) if hint.min_tier in self.tiers else 0
        high = self.tiers.index(hint.max_tier) if hint.max_tier in self.tiers else len(self.tiers) - 1
        return self.tiers[low:high + 1] or self.tiers

    def _means(self, posterior: Mapping[str, tuple[float, float]]) -> dict[str, float]:
        return {t: a / (a + b) - self.cost_weight * self.costs[t] for t, (a, b) in posterior.items()}

    def choose(self, request: StepRequest) -> Choice:
        step = request.step
        arms = self._arms(request.hint)
        with self._lock:
            self._refresh_later(step)
            posterior = self.posterior(step)
            means = self._means(posterior)
            best = max(arms, key=lambda t: (means[t], -arms.index(t)))  # a tie goes to the cheaper tier
            drawn = {t: self._rng.betavariate(*posterior[t]) - self.cost_weight * self.costs[t] for t in arms}
            pick = max(arms, key=lambda t: (drawn[t], -arms.index(t)))
            counts = self._calls.setdefault(step, [0, 0])
            counts[0] += 1
            shown = ", ".join(f"{t} {means[t]:.3f} (n={posterior[t][0] + posterior[t][1] - 2:g})" for t in arms)
            if pick == best:
                return Choice(best, f"bandit exploit {best!r}: best posterior mean reward; means {shown}", means[best])
            stopped = self._stopped(step, counts, best, pick)
            if stopped is None:
                counts[1] += 1
                return Choice(pick, f"bandit explore {pick!r} (draw {drawn[pick]:.3f} over exploit {best!r}); "
                                    f"means {shown}", means[pick])
        say_once(self, ("bandit-stop", step, stopped.split(":")[0]), f"bandit, step {step!r}: {stopped}")
        return Choice(best, f"bandit exploit {best!r}: {stopped}; means {shown}", means[best])

    def _stopped(self, step: str, counts: list[int], best: str, pick: str) -> str | None:
        """Why exploring ``pick`` is not allowed (``None``: it is), and, when allowed, its cost booked."""
        calls, explored = counts
        if explored + 1 > self.explore * calls:
            return (f"exploration of {pick!r} stopped: exploring would make the explored share "
                    f"{(explored + 1) / calls:.1%}, over the cap {self.explore:.1%}")
        extra = max(0.0, self.costs[pick] - self.costs[best])
        if self.budget is not None and extra > 0:
            day = int(time.time() // 86_400)
            spent = self._spent.get(day, 0.0)
            if spent + extra > self.budget:
                return (f"exploration of {pick!r} stopped: budget ${self.budget:g}/day for exploration spent "
                        f"(${spent:.4f} today)")
            self._spent = {day: spent + extra}
        return None

    # -- learning --------------------------------------------------------------------------

    def decided(self, decision: Any) -> None:
        """Remember a decision this policy made (its id → step and the tier followed) for its feedback."""
        if decision.policy != self.name:
            return
        with self._lock:
            self._decisions[decision.id] = (decision.step, decision.tier)
            if len(self._decisions) > self._remember:
                self._decisions.popitem(last=False)

    def answered(self, decision: Any) -> str | None:
        """The call of a decision this policy made was answered at ``decision.tier`` (after the tier walk:
        a cross-tier fallback may have moved it): its feedback goes to that tier, or, when that tier is not
        one of the bandit's, is not learnt. Returns what to say when that differs from the tier decided.

        Example:
            >>> from steproute.types import Decision
            >>> bandit = BanditPolicy(("fast", "strong"))
            >>> decided = Decision(step="answer", kind=None, tier="fast", model="m", policy="bandit", reason="", id="d-1")
            >>> bandit.decided(decided)
            >>> from dataclasses import replace
            >>> bandit.answered(replace(decided, tier="strong"))
            "bandit: feedback on this call is learnt for tier 'strong', which answered (decided 'fast')"
            >>> bandit.learn({"type": "feedback", "id": "d-1", "quality": 1.0}), bandit.posterior("answer")["strong"]
            (True, (2.0, 1.0))
        """
        with self._lock:
            known = self._decisions.get(decision.id)
            if known is None or known[1] == decision.tier:
                return None
            step, decided = known
            if decision.tier in self.tiers:
                self._decisions[decision.id] = (step, decision.tier)
                return f"bandit: feedback on this call is learnt for tier {decision.tier!r}, which answered (decided {decided!r})"
            del self._decisions[decision.id]
        return (f"bandit: feedback on this call is not learnt: tier {decision.tier!r} answered, not one of the bandit's "
                f"tiers ({', '.join(self.tiers)}) (decided {decided!r})")

    def learn(self, entry: Mapping[str, Any]) -> bool:
        """Learn from a feedback entry (:func:`steproute._feedback.feedback_entry`'s shape): the quality
        goes to the decision's step and tier, in this replica's item of the store. ``False``: not a
        decision of this policy (one this replica does not remember; ``step=`` and ``tier=`` extras
        on the feedback name it instead).

        Example:
            >>> from steproute.types import Decision
            >>> bandit = BanditPolicy(("fast", "strong"))
            >>> bandit.decided(Decision(step="answer", kind=None, tier="fast", model="m", policy="bandit",
            ...                         reason="", id="d-1"))
            >>> bandit.learn({"type": "feedback", "id": "d-1", "quality": 1.0}), bandit.posterior("answer")["fast"]
            (True, (2.0, 1.0))
        """
        with self._lock:
            known = self._decisions.pop(str(entry.get("id")), None)
        if known is None and entry.get("step") is not None and entry.get("tier") in self.tiers:
            known = (str(entry["step"]), str(entry["tier"]))
        if known is None:
            return False
        step, tier = known
        quality = float(entry["quality"])
        with self._lock:
            own = self._own.setdefault(step, {})
            q, n = own.get(tier, (0.0, 0.0))
            own[tier] = (q + quality, n + 1.0)
            snapshot = dict(own)
        try:
            self.store.write(step, self.replica, snapshot)
        except Exception as exc:
            say_once(self, ("bandit-write", step), f"bandit, step {step!r}: the store could not be written "
                     f"({type(exc).__name__}); the feedback is learnt in this replica only until the next write")
        self.refresh(step)
        return True


def share_bandit_store(router: Any, store: BanditStore) -> int:
    """Put every bandit of ``router`` (its ``steps:`` entries and ``default``) on ``store``, so replicas on the same
    LangGraph store learn together; returns how many bandits there were.

    Example:
        >>> from langgraph.store.memory import InMemoryStore
        >>> share_bandit_store(router, BanditStore(InMemoryStore()))  # doctest: +SKIP
        1
    """
    unconfigured = next(f"default-{i}" for i in range(len(router.config.steps) + 1) if f"default-{i}" not in router.config.steps)
    policies = [router.policy_of(step) for step in router.config.steps] + [router.policy_of(unconfigured)]
    bandits = {id(p): p for p in policies if isinstance(p, BanditPolicy)}
    for bandit in bandits.values():
        bandit.use_store(store)
    return len(bandits)
