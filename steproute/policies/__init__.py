"""Routing policies, one per module, behind the :class:`Policy` protocol."""

from __future__ import annotations

from steproute.config import FixedPolicyConfig, PolicyConfig, RulesPolicyConfig
from steproute.policies.base import Choice, Policy
from steproute.policies.fixed import FixedPolicy
from steproute.policies.rules import RulesPolicy

__all__ = ["Choice", "FixedPolicy", "Policy", "RulesPolicy", "build_policy"]


def build_policy(config: PolicyConfig) -> Policy:
    """The policy object for a validated policy configuration."""
    if isinstance(config, FixedPolicyConfig):
        return FixedPolicy.from_config(config)
    if isinstance(config, RulesPolicyConfig):
        return RulesPolicy.from_config(config)
    raise TypeError(f"no policy implementation for {type(config).__name__}")  # pragma: no cover
