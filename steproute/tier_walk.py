"""The tier walk: which tier a call tries next, and when it stops. Pure: no I/O, no clock.

One call may use several tiers. Cross-tier fallback and the cascade are the same walk under one
rule set (:func:`walk_rules`):

- **The chain** is the tiers the call may use, in order: the decided tier, then each stronger
  one up to the step's ``max_tier`` (a ``cascade`` step: its cascade tiers only). A call whose
  tier is fixed — by a ``tier`` hint, or by a guard (personal data, a budget's cap) — has a
  chain of one.
- **A rejected answer** moves the walk on (a ``cascade`` judges every answer but its chain's
  last; other steps judge none).
- **An error** (every deployment of the tier failed) moves the walk on while ``tier_fallback``
  allows: ``none`` never, ``next`` once per call, ``stronger`` as far as the chain goes.
  Unset, a step's ``tier_fallback`` is ``next``, a ``cascade`` step's ``stronger`` (a cascade
  walks its tiers). A provider's refusal moves it on only when ``fallback_on`` lists its kind.
  When the walk cannot go on, the call's error is raised, naming every tier that failed.

The rejected attempts' cost is carried forward: the step's cost is the answer's plus everything
:attr:`TierWalk.carried_usd` holds. The drivers (:mod:`steproute._walk_drivers`) make the calls
and feed the outcomes in.

Example:
    >>> rules = walk_rules("fast", ("fast", "standard", "strong"), 2, fallback="next")
    >>> walk = TierWalk(rules, ("fast", "standard", "strong"))
    >>> walk.tier, walk.is_last
    ('fast', False)
    >>> walk.failed_over(DispatchError("plan", "fast", ()), "openai/gpt-4o-mini")
    'standard'
    >>> walk.failed_over(DispatchError("plan", "standard", ()), "openai/gpt-4o")
    Traceback (most recent call last):
    ...
    steproute.errors.DispatchError: ...
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from steproute.errors import Attempt, DispatchError, ProviderError, escalates, failure_note
from steproute.types import CascadeAttempt, Decision

__all__ = ["TierWalk", "WalkRules", "walk_rules"]


@dataclass(frozen=True)
class WalkRules:
    """What one call's walk may do (see the module's rules)."""

    chain: tuple[str, ...]
    """The tiers the call may use, in order; the first is the decided tier."""
    judged: bool = False
    """Answers before the chain's last tier are judged (a cascade)."""
    error_moves: int = 1
    """How many times an error may move the walk on (``tier_fallback``)."""
    fallback_on: tuple[str, ...] = ()
    """Provider refusal kinds that may move it on too."""
    pool: tuple[str, ...] = ()
    """The tiers a chain may be built from (up to ``max_tier``; a cascade's tiers), weakest
    first: :meth:`TierWalk.restart_at` rebuilds the chain from them."""


def walk_rules(tier: str, tiers: Sequence[str], high: int, *, fallback: str | None = None,
               cascade: Sequence[str] | None = None, fixed: bool = False,
               fallback_on: Sequence[str] = (), skip: Collection[str] = ()) -> WalkRules:
    """The rules of one call's walk: decided at ``tier``, ``tiers`` all tiers weakest first,
    ``high`` the rank of the step's ``max_tier``; ``fallback`` the step's ``tier_fallback``
    (``None``: unset), ``cascade`` a cascade step's tiers, ``fixed`` a tier set by a hint or a
    guard; ``skip`` tiers that cannot serve the call (see :mod:`steproute.capabilities`).

    Example:
        >>> walk_rules("fast", ("fast", "standard", "strong"), 1).chain
        ('fast', 'standard')
        >>> walk_rules("fast", ("fast", "standard", "strong"), 2, cascade=("fast", "strong")).chain
        ('fast', 'strong')
    """
    order = tuple(tiers)
    pool = order[:high + 1] if cascade is None else tuple(t for t in order[:high + 1] if t in cascade)
    if skip:
        pool = tuple(t for t in pool if t not in skip)
    mode = fallback or ("stronger" if cascade is not None else "next")
    chain = (tier,) if fixed else _chain_from(tier, order, pool)
    moves = 0 if fixed else {"none": 0, "next": 1, "stronger": len(chain)}[mode]
    if cascade is None:  # nothing judged: the chain ends where errors can no longer take it
        chain = chain[:moves + 1]
    return WalkRules(chain, cascade is not None, moves, tuple(fallback_on), pool)


def _chain_from(tier: str, order: Sequence[str], pool: Sequence[str]) -> tuple[str, ...]:
    rank = order.index(tier)
    return (tier, *(t for t in pool if order.index(t) > rank))


class TierWalk:
    """One call's position on its chain, and what the walk has seen so far."""

    def __init__(self, rules: WalkRules, order: Sequence[str]) -> None:
        self.rules = rules
        self.chain = rules.chain
        self._order = tuple(order)
        """Every tier, weakest first."""
        self.index = 0
        self.error_moves = 0
        self.failed: list[str] = []
        """Tiers whose every deployment failed, in order."""
        self.errors: list[Attempt] = []
        """Every failed attempt of those tiers."""
        self.allowed: list[str] = []
        """The ``fallback_on`` kinds that moved the walk on."""
        self.attempts: list[CascadeAttempt] = []
        """A judged walk's attempts before the current one (rejected, failed, cancelled)."""
        self.carried_usd = 0.0
        """What rejected attempts (and the calls that judged them) cost."""
        self.notes: list[str] = []
        self._speculated = False

    @property
    def tier(self) -> str:
        return self.chain[self.index]

    @property
    def is_last(self) -> bool:
        return self.index == len(self.chain) - 1

    @property
    def judges(self) -> bool:
        """Whether the current attempt's answer is judged (it may still be rejected)."""
        return self.rules.judged and not self.is_last

    # -- outcomes ------------------------------------------------------------------------------

    def failed_over(self, error: DispatchError, model: str) -> str:
        """Every deployment of the current tier failed (``model``: its first). Returns the next
        tier; raises the call's error when the walk cannot go on — the tier's own error when it
        was the only one to fail, else one naming every tier that failed."""
        kind = error.kind if isinstance(error, ProviderError) else None
        self.failed.append(self.tier)
        self.errors.extend(error.attempts)
        if self.is_last or self.error_moves >= self.rules.error_moves or not escalates(kind, self.rules.fallback_on):
            if len(self.failed) == 1:
                raise error
            raise error.across(self.failed, self.errors) from error.__cause__
        self.error_moves += 1
        reason = f"failed: {failure_note(error.attempts)}"
        if kind is not None:
            self.allowed.append(kind)
            reason += f"; fallback_on lists '{kind}'"
        self.attempts.append(CascadeAttempt(self.tier, model, None, reason=reason))
        self.index += 1
        return self.tier

    def rejected(self, attempt: CascadeAttempt) -> str:
        """A judged answer was not good enough: its cost is carried forward; returns the next tier."""
        self.attempts.append(attempt)
        self.carried_usd += attempt.cost_usd
        self.index += 1
        return self.tier

    def cancelled(self, model: str, note: str) -> None:
        """A speculative call at the current tier was cancelled (see :meth:`restart_at`)."""
        self.attempts.append(CascadeAttempt(self.tier, model, None, reason="speculative call cancelled"))
        self._speculated = True
        self.notes.append(note)

    def restart_at(self, tier: str) -> None:
        """Begin the chain at ``tier`` instead (a speculative start picked a stronger tier)."""
        self.chain = _chain_from(tier, self._order, self.rules.pool)
        self.index = 0

    def note(self, text: str) -> None:
        self.notes.append(text)

    def gave_up(self, decision: Decision, model: str, error: DispatchError) -> Decision:
        """The decision of a call whose walk ended in ``error`` at the current tier (``model``: its
        first deployment), once :meth:`failed_over` raised it: at that tier, with the walk's notes
        and, when the walk had moved (cancelled, fell back, escalated), each tier tried and why
        none answered."""
        reason = self._noted(decision.reason)
        if not self.attempts:  # it failed where it was decided
            return replace(decision, reason=reason)
        last = CascadeAttempt(self.tier, model, None, reason=f"failed: {failure_note(error.attempts) or type(error).__name__}")
        chain = (*self.attempts, last)
        why = "; ".join(f"{a.tier}: {a.reason}" for a in chain)
        reason += f"; no tier answered: {' → '.join(a.tier for a in chain)} ({why})"
        fallback_from = self.failed[0] if self.error_moves else None
        if not self.rules.judged:
            return replace(decision, tier=self.tier, model=model, reason=reason, fallback_from=fallback_from)
        called = chain[1:] if self._speculated else chain
        return replace(decision, tier=self.tier, model=model, reason=reason, fallback_from=fallback_from,
                       escalated_from=called[0].tier if self.escalated else None, attempts=len(chain), cascade=chain)

    def _noted(self, reason: str) -> str:
        return reason + "".join(f"; {n}" for n in self.notes)

    # -- the answer ----------------------------------------------------------------------------

    @property
    def escalated(self) -> bool:
        """A verdict rejected an answer: the conversation needs the tier that answered."""
        return any(a.accepted is False for a in self.attempts)

    def answered(self, decision: Decision, model: str, last: CascadeAttempt | None = None) -> Decision:
        """The decision of the call, answered at the current tier by ``model``; ``last`` the
        answering attempt of a judged walk (its verdict, or unjudged at the chain's last tier)."""
        tier = self.tier
        reason = self._noted(decision.reason)
        fallback_from = self.failed[0] if self.failed else None
        if not self.rules.judged:
            if self.failed:
                why = ", ".join(sorted({a.error_type for a in self.errors}))
                allowed = "".join(f"; fallback_on lists '{k}'" for k in dict.fromkeys(self.allowed))
                reason += (f"; tier {' → '.join(repr(t) for t in self.failed)} failed ({why}), fell back to {tier!r} "
                           f"({failure_note(self.errors)}{allowed})")
            return replace(decision, tier=tier, model=model, reason=reason, fallback_from=fallback_from)
        last = last or CascadeAttempt(tier, model, None, reason="last tier: not judged")
        chain = (*self.attempts, last)
        called = chain[1:] if self._speculated else chain  # a cancelled speculative call is no escalation
        if len(chain) > 1:
            why = "; ".join(f"{a.tier}: {a.reason}" for a in self.attempts)
            reason += f"; escalated {' → '.join(a.tier for a in chain)} ({why})"
        elif last.accepted:
            reason += f"; accepted ({last.reason})"
        return replace(decision, tier=tier, model=model, reason=reason, fallback_from=fallback_from,
                       escalated_from=called[0].tier if len(called) > 1 else None, attempts=len(chain),
                       cascade=chain, score=last.confidence if last.confidence is not None else decision.score)
