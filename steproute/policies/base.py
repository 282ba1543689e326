"""The policy protocol: one per-step decision procedure, turning a request into a tier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from steproute.types import StepRequest

__all__ = ["Choice", "Policy"]


@dataclass(frozen=True)
class Choice:
    """What a policy chose, before hints clamp it."""

    tier: str
    reason: str
    """Why, in words: names the rule, threshold or signal that decided."""
    score: float | None = None


@runtime_checkable
class Policy(Protocol):
    """A routing policy.

    ``choose`` returns a :class:`Choice`, or ``None`` when the policy has no opinion (a
    ``rules`` policy whose rules all missed): the router then asks its ``default`` policy.
    Policies are pure with respect to the request: no I/O on the hot path.
    """

    name: str

    def choose(self, request: StepRequest) -> Choice | None: ...
