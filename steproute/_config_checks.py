"""The configuration's checks that pydantic cannot make field by field, and its error messages.

:func:`reference_problems`: every tier a field names exists, bounds are in order, regular
expressions compile, a cascade's ``speculative`` has a ``start``. :func:`problems_from_pydantic`:
pydantic's errors as :class:`~steproute.errors.ConfigProblem`s with the path a user wrote
(``steps.plan.tier``), never the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from steproute._config_read import config_key, format_path, shown_config_value
from steproute.errors import ConfigProblem
from steproute.policy_config import (
    POLICY_NAMES,
    CascadePolicyConfig,
    ChainPolicyConfig,
    FixedPolicyConfig,
    LearnedPolicyConfig,
    LLMPolicyConfig,
    RulesPolicyConfig,
)

__all__ = ["problems_from_pydantic", "reference_problems"]

TierRef = Callable[[str, "str | None"], "int | None"]


def reference_problems(config: Any) -> list[ConfigProblem]:
    """What a :class:`~steproute.config.RouterConfig` names that it does not have, or says
    twice over in contradiction: unknown tiers, ``min_tier`` above ``max_tier``, patterns that
    do not compile, ``speculative`` without ``start``."""
    names = config.tier_names()
    known = ", ".join(config_key(n) for n in names)
    problems: list[ConfigProblem] = []

    def tier_ref(path: str, value: str | None) -> int | None:
        if value is None:
            return None
        if value not in config.tiers:
            problems.append(ConfigProblem(path, f"unknown tier {shown_config_value(value)} (known: {known})"))
            return None
        return list(names).index(value)

    tier_ref("baseline", config.baseline)
    guards = config.guards
    if guards.pii is not None:
        tier_ref("guards.pii.tier", guards.pii.tier)
        for name, pattern in guards.pii.patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(ConfigProblem(f"guards.pii.patterns.{config_key(name)}",
                                              f"invalid regular expression: {exc}"))
    if guards.budgets is not None:
        tier_ref("guards.budgets.cap_tier", guards.budgets.cap_tier)
    entries = [("default", config.default)] + [(f"steps.{config_key(n)}", p) for n, p in config.steps.items()]
    for prefix, policy in entries:
        low = tier_ref(f"{prefix}.min_tier", policy.min_tier)
        high = tier_ref(f"{prefix}.max_tier", policy.max_tier)
        if low is not None and high is not None and low > high:
            problems.append(ConfigProblem(
                prefix, f"min_tier {shown_config_value(policy.min_tier)} is above max_tier "
                        f"{shown_config_value(policy.max_tier)}"))
        links = policy.policies if isinstance(policy, ChainPolicyConfig) else [policy]
        for j, link in enumerate(links):
            where = f"{prefix}.policies[{j}]" if isinstance(policy, ChainPolicyConfig) else prefix
            _link_problems(where, link, tier_ref, problems)
    return problems


def _link_problems(prefix: str, policy: Any, tier_ref: TierRef, problems: list[ConfigProblem]) -> None:
    """The tiers one policy (or one link of a chain, or a cascade's ``start``) names."""
    if isinstance(policy, FixedPolicyConfig):
        tier_ref(f"{prefix}.tier", policy.tier)
    elif isinstance(policy, RulesPolicyConfig):
        tier_ref(f"{prefix}.fallback", policy.fallback)
        for i, rule in enumerate(policy.rules):
            tier_ref(f"{prefix}.rules[{i}].tier", rule.tier)
            if rule.when.regex is not None:
                try:
                    re.compile(rule.when.regex)
                except re.error as exc:
                    problems.append(ConfigProblem(
                        f"{prefix}.rules[{i}].when.regex", f"invalid regular expression: {exc}"))
    elif isinstance(policy, LearnedPolicyConfig):
        for i, tier in enumerate(policy.tiers or ()):
            tier_ref(f"{prefix}.tiers[{i}]", tier)
    elif isinstance(policy, CascadePolicyConfig):
        for i, tier in enumerate(policy.tiers or ()):
            tier_ref(f"{prefix}.tiers[{i}]", tier)
        for i, sig in enumerate(policy.signals):
            tier_ref(f"{prefix}.signals[{i}].tier", sig.tier)
        if policy.start is not None:
            _link_problems(f"{prefix}.start", policy.start, tier_ref, problems)
        if policy.speculative and policy.start is None:
            problems.append(ConfigProblem(f"{prefix}.speculative", "speculative routing needs a 'start' policy"))
    elif isinstance(policy, LLMPolicyConfig):
        tier_ref(f"{prefix}.router_tier", policy.router_tier)
        tier_ref(f"{prefix}.fallback", policy.fallback)
        for tier in policy.choices or {}:
            tier_ref(f"{prefix}.choices.{config_key(tier)}", tier)


def problems_from_pydantic(exc: ValidationError) -> list[ConfigProblem]:
    """pydantic's errors as problems at the path a user wrote, without union tags or values."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        # Drop union tags and validator names pydantic inserts into the location.
        loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
        tag_at = {"default": 1, "steps": 2}.get(str(loc[0]) if loc else "")
        if tag_at is not None and len(loc) > tag_at and loc[tag_at] in POLICY_NAMES:
            loc = loc[:tag_at] + loc[tag_at + 1:]
        # ... and the tags of nested policies (a chain's links, a cascade's start)
        loc = tuple(p for i, p in enumerate(loc)
                    if not (p in POLICY_NAMES and i > 0 and (loc[i - 1] == "start" or isinstance(loc[i - 1], int))))
        kind = error["type"]
        if kind == "union_tag_invalid":
            tag = error.get("ctx", {}).get("tag")
            message = f"unknown policy {shown_config_value(tag)} (known: {', '.join(POLICY_NAMES)})"
        elif kind == "union_tag_not_found":
            message = f"missing 'policy' (one of: {', '.join(POLICY_NAMES)})"
        elif kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "value_error" and error.get("ctx", {}).get("error") is not None:
            message = str(error["ctx"]["error"])
        else:
            message = error["msg"]
        problems.append(ConfigProblem(format_path(loc), message))
    return problems
