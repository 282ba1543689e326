"""``rules``: ordered rules over the request, first match wins.

Conditions look at the latest user message (keywords, regex), the conversation's size in
tokens (estimated at 4 characters a token: no tokenizer on the hot path) and turns, whether
tools or a response schema are present, the step kind, and run metadata by dotted path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from steproute.policies.base import Choice
from steproute.policy_config import RuleConfig, RulesPolicyConfig
from steproute.types import StepRequest

__all__ = ["CHARS_PER_TOKEN", "RulesPolicy"]

CHARS_PER_TOKEN = 4
"""Characters per token in the input-size estimate."""

_MISSING = object()

Check = Callable[[StepRequest], bool]


def _lookup(metadata: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metadata
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        else:
            value = getattr(value, part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _metadata_check(path: tuple[str, ...], allowed: tuple[Any, ...]) -> Check:
    return lambda r: _lookup(r.metadata, path) in allowed


def _compile(rule: RuleConfig) -> tuple[list[Check], str]:
    """Checks for one rule (cheapest first) and a short description of them."""
    when = rule.when
    checks: list[Check] = []
    parts: list[str] = []
    if when.kind is not None:
        kinds = frozenset(when.kind)
        checks.append(lambda r: r.kind in kinds)
        parts.append(f"kind in {sorted(kinds)}")
    if when.has_tools is not None:
        want = when.has_tools
        checks.append(lambda r: bool(r.tools) is want)
        parts.append(f"has_tools={want}")
    if when.has_schema is not None:
        want_schema = when.has_schema
        checks.append(lambda r: (r.response_schema is not None) is want_schema)
        parts.append(f"has_schema={want_schema}")
    if when.min_turns is not None:
        n = when.min_turns
        checks.append(lambda r: r.user_turns >= n)
        parts.append(f"turns>={n}")
    if when.max_turns is not None:
        m = when.max_turns
        checks.append(lambda r: r.user_turns <= m)
        parts.append(f"turns<={m}")
    if when.min_input_tokens is not None:
        lo = when.min_input_tokens * CHARS_PER_TOKEN
        checks.append(lambda r: r.input_chars >= lo)
        parts.append(f"input_tokens>={when.min_input_tokens}")
    if when.max_input_tokens is not None:
        hi = when.max_input_tokens * CHARS_PER_TOKEN
        checks.append(lambda r: r.input_chars <= hi)
        parts.append(f"input_tokens<={when.max_input_tokens}")
    if when.metadata:
        for key, expected in when.metadata.items():
            path = tuple(key.split("."))
            allowed = tuple(expected) if isinstance(expected, list) else (expected,)
            checks.append(_metadata_check(path, allowed))
            parts.append(f"{key} in {list(allowed)}" if len(allowed) > 1 else f"{key}=={allowed[0]!r}")
    if when.keywords:
        words = "|".join(re.escape(w) for w in when.keywords)
        pattern = re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)
        checks.append(lambda r: pattern.search(r.latest_user_text) is not None)
        parts.append(f"keywords {when.keywords}")
    if when.regex is not None:
        regex = re.compile(when.regex)
        checks.append(lambda r: regex.search(r.latest_user_text) is not None)
        parts.append(f"regex {when.regex!r}")
    return checks, ", ".join(parts) or "always"


class RulesPolicy:
    """Ordered rules; the first whose conditions all hold picks the tier.

    When no rule matches, ``fallback`` is used if set; otherwise the policy returns ``None``
    and the router asks its ``default`` policy.

    Example:
        >>> from steproute.policy_config import RulesPolicyConfig
        >>> from steproute.types import StepRequest
        >>> policy = RulesPolicy.from_config(RulesPolicyConfig(rules=[
        ...     {"name": "long", "when": {"min_input_tokens": 10}, "tier": "strong"}], fallback="fast"))
        >>> policy.choose(StepRequest("s", [{"role": "user", "content": "x" * 80}])).reason
        "rule 'long' matched (input_tokens>=10)"
        >>> policy.choose(StepRequest("s", [{"role": "user", "content": "hi"}])).tier
        'fast'
    """

    name = "rules"

    def __init__(self, rules: list[RuleConfig], fallback: str | None = None) -> None:
        self._rules: list[tuple[list[Check], Choice]] = []
        for i, rule in enumerate(rules):
            checks, described = _compile(rule)
            label = rule.name or f"rules[{i}]"
            self._rules.append((checks, Choice(rule.tier, f"rule {label!r} matched ({described})")))
        self._fallback = Choice(fallback, "no rule matched; fallback tier") if fallback else None

    @classmethod
    def from_config(cls, config: RulesPolicyConfig) -> RulesPolicy:
        return cls(list(config.rules), config.fallback)

    def choose(self, request: StepRequest) -> Choice | None:
        for checks, choice in self._rules:
            if all(check(request) for check in checks):
                return choice
        return self._fallback
