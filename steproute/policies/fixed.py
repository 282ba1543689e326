"""``fixed``: always the same tier."""

from __future__ import annotations

from steproute.policies.base import Choice
from steproute.policy_config import FixedPolicyConfig
from steproute.types import StepRequest

__all__ = ["FixedPolicy"]


class FixedPolicy:
    """Route every call of the step to one tier.

    Example:
        >>> from steproute.types import StepRequest
        >>> FixedPolicy("fast").choose(StepRequest("rewrite", [])).tier
        'fast'
    """

    name = "fixed"

    def __init__(self, tier: str) -> None:
        self._choice = Choice(tier=tier, reason=f"fixed tier {tier!r}")

    @classmethod
    def from_config(cls, config: FixedPolicyConfig) -> FixedPolicy:
        return cls(config.tier)

    def choose(self, request: StepRequest) -> Choice:
        return self._choice
