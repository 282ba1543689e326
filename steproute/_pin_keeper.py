"""The one writer of conversation pins: what a call follows, and where the pin moves after it.

A call on a thread follows the thread's pin for its step group (``apply_pin``); the thread's
first pin is written before the call is dispatched, and when two calls race, the one stored
first wins and the other follows it. After the answer the pin may move: a re-pin
(``reevaluate``, ``upgrade_only``, a new ``turn``), or a cascade's escalation. A tier that
answered only as a fallback never moves the pin. The pin records the deployment that answered,
and the conversation's next call tries it first (``preferred_model``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from steproute._plan import StepPlan
from steproute.pinning import Pin, PinAction, PinStore, apply_pin, pin_after, warm_note
from steproute.turns import request_turn
from steproute.types import Decision, StepRequest

__all__ = ["PinKeeper", "preferred_model", "without_warm"]


class PinKeeper:
    """Reads and writes one router's pin store (sync and async)."""

    def __init__(self, store: PinStore, rank: dict[str, int],
                 deployments: Callable[[str], Sequence[Any]] | None = None) -> None:
        self.store = store
        self.rank = rank
        self.deployments = deployments
        """A tier's deployments (each with a ``model``), in order: a followed pin's decision names
        the pin's deployment when it is one of its tier's, else the tier's first."""

    def _pinned(self, plan: StepPlan, decision: Decision, held: Any, turn: str | None) -> tuple[Decision, PinAction]:
        assert plan.pinning is not None and decision.thread is not None
        decision, action = apply_pin(decision, held, plan.pinning, decision.thread, self.rank, plan.low, plan.high,
                                     time.time(), turn)
        if decision.pinned and self.deployments is not None:
            models = [d.model for d in self.deployments(decision.tier)]
            if models and decision.model not in models:
                decision = replace(decision, model=models[0])
        return decision, action

    @staticmethod
    def _turn(plan: StepPlan, request: StepRequest | None) -> str | None:
        """The call's turn, read only by the ``turn`` mode."""
        assert plan.pinning is not None
        return request_turn(request) if request is not None and plan.pinning.mode == "turn" else None

    def follow(self, plan: StepPlan, decided: Decision,
               request: StepRequest | None = None) -> tuple[Decision, PinAction | None]:
        """The decision a call follows on its thread, and the pin it follows or has just made
        (``None``: no thread, or the step is not pinned). ``request``: the call's messages, for
        the ``turn`` mode."""
        if plan.pinning is None or decided.thread is None:
            return decided, None
        group, thread, turn = plan.pinning.group, decided.thread, self._turn(plan, request)
        decision, action = self._pinned(plan, decided, self.store.get(thread, group), turn)
        if action.write == "absent" and action.held is not None:
            winner = self.store.put_if_absent(thread, group, action.held)
            if winner.decision_id != decision.id:  # another call made the thread's first pin: follow it
                decision, action = self._pinned(plan, decided, winner, turn)
        elif action.write == "replace" and action.held is not None:
            self.store.put(thread, group, action.held)
        return decision, action

    async def afollow(self, plan: StepPlan, decided: Decision,
                      request: StepRequest | None = None) -> tuple[Decision, PinAction | None]:
        """Async :meth:`follow` (the store's async API)."""
        if plan.pinning is None or decided.thread is None:
            return decided, None
        group, thread, turn = plan.pinning.group, decided.thread, self._turn(plan, request)
        decision, action = self._pinned(plan, decided, await self.store.aget(thread, group), turn)
        if action.write == "absent" and action.held is not None:
            winner = await self.store.aput_if_absent(thread, group, action.held)
            if winner.decision_id != decision.id:
                decision, action = self._pinned(plan, decided, winner, turn)
        elif action.write == "replace" and action.held is not None:
            await self.store.aput(thread, group, action.held)
        return decision, action

    @staticmethod
    def _after(action: PinAction, decision: Decision, held_unservable: bool) -> tuple[Pin | None, bool]:
        """``pin_after``, except that a deployment change the capability filter caused (the
        pinned deployment cannot serve this call) is no re-pin and leaves the pin's deployment."""
        if held_unservable and action.held is not None:
            return pin_after(action, replace(decision, model=action.held.model))
        return pin_after(action, decision)

    def settle(self, action: PinAction | None, decision: Decision, held_unservable: bool = False) -> Decision:
        """After the answer: re-pin when the pin's mode says so (a fallback tier never moves it,
        nor does a call whose pinned deployment cannot serve it: ``held_unservable``)."""
        if action is None or decision.fallback_from is not None:
            return decision
        pin, repinned = self._after(action, decision, held_unservable)
        if pin is not None:
            self.store.put(action.thread, action.settings.group, pin)
        return replace(decision, repinned=True) if repinned else decision

    async def asettle(self, action: PinAction | None, decision: Decision, held_unservable: bool = False) -> Decision:
        if action is None or decision.fallback_from is not None:
            return decision
        pin, repinned = self._after(action, decision, held_unservable)
        if pin is not None:
            await self.store.aput(action.thread, action.settings.group, pin)
        return replace(decision, repinned=True) if repinned else decision

    @staticmethod
    def _moved(action: PinAction, pin: Pin) -> Pin:
        """The cascade's pin, in the turn of the pin the call followed or made."""
        return replace(pin, turn=action.held.turn) if action.held is not None else pin

    def move(self, action: PinAction, pin: Pin) -> None:
        """A cascade escalated: the conversation moves to the tier that answered."""
        self.store.put(action.thread, action.settings.group, self._moved(action, pin))

    async def amove(self, action: PinAction, pin: Pin) -> None:
        await self.store.aput(action.thread, action.settings.group, self._moved(action, pin))


def preferred_model(action: PinAction | None) -> str | None:
    """The deployment that served the conversation last, for a call that follows its pin or
    re-decided it onto the same tier (dispatch tries it first, then the tier's order)."""
    if action is None or action.held is None or (action.made and not action.carried):
        return None
    return action.held.model


def without_warm(decision: Decision, action: PinAction | None) -> Decision:
    """``decision`` without the note that the pin's deployment goes first (for a call that
    deployment cannot serve: the capability filter's own note says it was skipped)."""
    if action is None or action.held is None:
        return decision
    return replace(decision, reason=decision.reason.replace(warm_note(action.held.model), ""))
