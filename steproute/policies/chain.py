"""``chain``: policies asked in order; the first with an opinion decides.

Typically rules first (cheap, explicit: "tool calls go to strong"), then a learned policy for
everything the rules leave open. The decision's reason records every link asked, in order,
e.g. ``rules: no match → classifier: estimated quality fast=0.81, strong=0.84; threshold 0.05``.

Example:
    >>> from steproute.policies.fixed import FixedPolicy
    >>> from steproute.types import StepRequest
    >>> ChainPolicy([FixedPolicy("fast")]).choose(StepRequest("s", [])).reason
    "fixed: fixed tier 'fast'"
"""

from __future__ import annotations

from collections.abc import Sequence

from steproute.policies.base import Choice, Policy
from steproute.types import StepRequest

__all__ = ["ChainPolicy"]


class ChainPolicy:
    name = "chain"

    def __init__(self, links: Sequence[Policy]) -> None:
        if not links:
            raise ValueError("a chain needs at least one policy")
        self.links = tuple(links)
        self.blocking = any(getattr(link, "blocking", False) for link in self.links)

    def choose(self, request: StepRequest) -> Choice | None:
        asked: list[str] = []
        for link in self.links:
            choice = link.choose(request)
            if choice is None:
                asked.append(f"{link.name}: no match")
                continue
            said = choice.reason if choice.reason.startswith(f"{link.name}:") else f"{link.name}: {choice.reason}"
            return Choice(choice.tier, " → ".join([*asked, said]), choice.score)
        return None
