"""The configuration's checks that pydantic cannot make field by field, and its error messages.

:func:`reference_problems`: every tier a field names exists, bounds are in order, regular
expressions compile, a cascade's ``speculative`` has a ``start``. :func:`problems_from_pydantic`:
pydantic's errors as :class:`~steproute.errors.ConfigProblem`s with the path a user wrote
(``steps.plan.tier``), never the value.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from steproute._config_read import config_key, format_path, shown_config_value
from steproute.errors import ConfigProblem
from steproute.policy_config import (
    POLICY_NAMES,
    BanditPolicyConfig,
    CascadePolicyConfig,
    ChainPolicyConfig,
    FixedPolicyConfig,
    LearnedPolicyConfig,
    LLMPolicyConfig,
    RulesPolicyConfig,
)

__all__ = ["config_keys", "did_you_mean", "keys_at", "passthrough_problems", "problems_from_pydantic",
           "raw_reference_problems", "reference_problems", "where_key_belongs"]

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
            problems.append(ConfigProblem(path, f"unknown tier {shown_config_value(value)} (known: {known})"
                                                f"{did_you_mean(value, names)}"))
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
    if config.experiment is not None:  # an arm says what a steps: entry may say
        entries += [(f"experiment.arms.{config_key(n)}", p) for n, p in config.experiment.arms.items() if p is not None]
    for prefix, policy in entries:
        low = tier_ref(f"{prefix}.min_tier", policy.min_tier)
        high = tier_ref(f"{prefix}.max_tier", policy.max_tier)
        if low is not None and high is not None and low > high:
            problems.append(ConfigProblem(
                prefix, f"min_tier {shown_config_value(policy.min_tier)} is above max_tier "
                        f"{shown_config_value(policy.max_tier)}"))
        if isinstance(policy, FixedPolicyConfig):
            problems.extend(_fixed_out_of_bounds(prefix, policy.tier, policy.min_tier, policy.max_tier, names))
        links = policy.policies if isinstance(policy, ChainPolicyConfig) else [policy]
        for j, link in enumerate(links):
            where = f"{prefix}.policies[{j}]" if isinstance(policy, ChainPolicyConfig) else prefix
            _link_problems(where, link, tier_ref, problems)
        if policy.shadow is not None:  # the candidate's tiers and the judge's
            candidate = policy.shadow.candidate
            for j, link in enumerate(candidate.policies if isinstance(candidate, ChainPolicyConfig) else [candidate]):
                where = f"{prefix}.shadow.candidate" + (f".policies[{j}]" if isinstance(candidate, ChainPolicyConfig) else "")
                _link_problems(where, link, tier_ref, problems)
            tier_ref(f"{prefix}.shadow.judge_tier", policy.shadow.judge_tier)
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
    elif isinstance(policy, BanditPolicyConfig):
        for i, tier in enumerate(policy.tiers or ()):
            tier_ref(f"{prefix}.tiers[{i}]", tier)
        for tier in policy.costs or {}:
            tier_ref(f"{prefix}.costs.{config_key(tier)}", tier)
        tier_ref(f"{prefix}.prior", policy.prior)
    elif isinstance(policy, LLMPolicyConfig):
        tier_ref(f"{prefix}.router_tier", policy.router_tier)
        tier_ref(f"{prefix}.fallback", policy.fallback)
        for tier in policy.choices or {}:
            tier_ref(f"{prefix}.choices.{config_key(tier)}", tier)


def _fixed_out_of_bounds(prefix: str, tier: Any, min_tier: Any, max_tier: Any,
                         names: Sequence[str]) -> list[ConfigProblem]:
    """A ``fixed`` tier outside the same entry's ``min_tier``/``max_tier``: a contradiction."""
    ranks = {n: i for i, n in enumerate(names)}
    if not isinstance(tier, str) or tier not in ranks:
        return []
    below = isinstance(min_tier, str) and min_tier in ranks and ranks[tier] < ranks[min_tier]
    above = isinstance(max_tier, str) and max_tier in ranks and ranks[tier] > ranks[max_tier]
    if not (below or above):
        return []
    bound, name = ("min_tier", min_tier) if below else ("max_tier", max_tier)
    return [ConfigProblem(f"{prefix}.tier", f"tier {shown_config_value(tier)} is {'below' if below else 'above'} "
                                            f"the entry's {bound} {shown_config_value(name)}: the two contradict")]


def problems_from_pydantic(exc: ValidationError, keys: Iterable[str] = (),
                           root: type[BaseModel] | None = None) -> list[ConfigProblem]:
    """pydantic's errors as problems at the path a user wrote, without union tags or values; an
    unknown key that is close to one of ``keys`` gets a "did you mean" (given the ``root`` model,
    one of the keys valid at its place, or where the key belongs when it is valid elsewhere)."""
    keys = tuple(keys)
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        # Drop union tags and validator names pydantic inserts into the location.
        loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
        tag_at = {"default": 1, "steps": 2, "experiment": 3}.get(str(loc[0]) if loc else "")  # experiment.arms.<a>
        if tag_at is not None and len(loc) > tag_at and loc[tag_at] in POLICY_NAMES:
            loc = loc[:tag_at] + loc[tag_at + 1:]
        # ... and the tags of nested policies (a chain's links, a cascade's start)
        loc = tuple(p for i, p in enumerate(loc)
                    if not (p in POLICY_NAMES and i > 0 and (loc[i - 1] == "start" or isinstance(loc[i - 1], int))))
        kind = error["type"]
        if kind == "union_tag_invalid":
            tag = error.get("ctx", {}).get("tag")
            message = (f"unknown policy {shown_config_value(tag)} (known: {', '.join(POLICY_NAMES)})"
                       f"{did_you_mean(tag, POLICY_NAMES)}")
        elif kind == "union_tag_not_found":
            message = f"missing 'policy' (one of: {', '.join(POLICY_NAMES)})"
        elif kind == "extra_forbidden":
            message = "unknown key" + (_unknown_key_hint(loc, keys, root) if loc else "")
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "value_error" and error.get("ctx", {}).get("error") is not None:
            message = str(error["ctx"]["error"])
        else:
            message = error["msg"]
        problems.append(ConfigProblem(format_path(loc), message))
    return problems


_KEY_SYNONYMS = {
    # what LiteLLM and providers call a deployment's capabilities → the `capabilities:` keys
    "function_calling": "tools", "supports_function_calling": "tools", "tool_calling": "tools",
    "supports_tool_choice": "tools", "supports_vision": "vision", "images": "vision",
    "supports_audio_input": "audio", "supports_response_schema": "response_schema",
    "json_schema": "response_schema", "context_window": "max_input_tokens", "max_tokens": "max_output_tokens",
}


def _unknown_key_hint(loc: tuple[Any, ...], keys: tuple[str, ...], root: type[BaseModel] | None) -> str:
    """The "did you mean" of an unknown key: among the keys valid where it was written (all of
    the configuration's keys when the place cannot be told), or a synonym of one of them; a key
    valid elsewhere says where it belongs."""
    key = loc[-1]
    here = keys_at(root, loc[:-1]) if root is not None else None
    if here is None:
        return did_you_mean(key, keys)
    if isinstance(key, str) and _KEY_SYNONYMS.get(key) in here:
        return f" — did you mean {_KEY_SYNONYMS[key]!r}?"
    close = did_you_mean(key, here)
    if close or not isinstance(key, str) or root is None:
        return close
    place = where_key_belongs(root, key)
    return f" — {key!r} belongs under {place}" if place is not None else ""


def _shapes(tp: Any) -> list[Any]:
    """``tp`` without Optional, unions and Annotated: model classes, ``dict``/``list`` types."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _shapes(typing.get_args(tp)[0])
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return [shape for arg in typing.get_args(tp) for shape in _shapes(arg)]
    return [tp]


def _step(tp: Any, part: Any) -> list[Any]:
    """The types one path part leads to from ``tp``: a model's field, a mapping's value, a list's item."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        fields = {field.alias or name: field for name, field in tp.model_fields.items()}
        return [fields[part].annotation] if isinstance(part, str) and part in fields else []
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (dict, Mapping, typing.Mapping) and len(args) == 2 and isinstance(part, str):
        return [args[1]]
    if origin in (list, tuple, Sequence) and args and isinstance(part, int):
        return [args[0]]
    return []


def keys_at(root: type[BaseModel], path: Sequence[Any]) -> frozenset[str] | None:
    """The keys valid at ``path`` under ``root`` (``None``: the place cannot be told).

    Example:
        >>> from steproute.config import RouterConfig
        >>> sorted(keys_at(RouterConfig, ("tiers", "fast", "models", 0, "capabilities")))[:3]
        ['audio', 'max_input_tokens', 'max_output_tokens']
    """
    current = _shapes(root)
    for part in path:
        current = [shape for tp in current for nxt in _step(tp, part) for shape in _shapes(nxt)]
    models = [tp for tp in current if isinstance(tp, type) and issubclass(tp, BaseModel)]
    if not models:
        return None
    return frozenset(field.alias or name for model in models for name, field in model.model_fields.items())


def where_key_belongs(root: type[BaseModel], key: str) -> str | None:
    """The first place (breadth first) where ``key`` is a key, as a path pattern, or ``None``.

    Example:
        >>> from steproute.config import RouterConfig
        >>> where_key_belongs(RouterConfig, "capabilities")
        'tiers.<name>.models[i]'
    """
    queue: list[tuple[str, Any]] = [("", root)]
    seen: set[Any] = set()
    while queue:
        path, tp = queue.pop(0)
        for shape in _shapes(tp):
            if isinstance(shape, type) and issubclass(shape, BaseModel):
                if shape in seen:
                    continue
                seen.add(shape)
                fields = {field.alias or name: field for name, field in shape.model_fields.items()}
                if key in fields:
                    return path or "the top level"
                queue.extend((f"{path}.{name}".lstrip("."), field.annotation) for name, field in fields.items())
                continue
            origin, args = typing.get_origin(shape), typing.get_args(shape)
            if origin in (dict, Mapping, typing.Mapping) and len(args) == 2:
                queue.append((f"{path}.<name>", args[1]))
            elif origin in (list, tuple, Sequence) and args:
                queue.append((f"{path}[i]", args[0]))
    return None


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``" — did you mean 'x'?"`` when ``value`` is a plain name close to one of ``choices`` (never
    for a value that could be a secret), else ``""``.

    Example:
        >>> did_you_mean("strnog", ["fast", "strong"])
        " — did you mean 'strong'?"
    """
    if not isinstance(value, str) or config_key(value) != value:
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.7)
    return f" — did you mean {close[0]!r}?" if close else ""


def config_keys(model: type[BaseModel]) -> frozenset[str]:
    """Every field name of ``model`` and of the models its fields hold, at any depth: the
    vocabulary an unknown key is compared against."""
    seen: set[type] = set()
    names: set[str] = set()

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                return
            seen.add(tp)
            for name, field in tp.model_fields.items():
                names.add(field.alias or name)
                visit(field.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(model)
    return frozenset(names)


_NUMBERS: dict[str, tuple[float, float | None, bool]] = {
    # LiteLLM parameters a deployment passes through: (lowest, highest, whole numbers only)
    "timeout": (0.0, None, False), "stream_timeout": (0.0, None, False), "max_tokens": (1, None, True),
    "max_completion_tokens": (1, None, True), "temperature": (0.0, 2.0, False), "top_p": (0.0, 1.0, False),
    "num_retries": (0, 20, True), "rpm": (0, None, True), "tpm": (0, None, True),
    "max_parallel_requests": (1, None, True), "order": (1, None, True), "weight": (0.0, None, False),
}
_STRINGS = ("api_base", "base_url", "api_version", "organization", "region_name", "vertex_location")


def passthrough_problems(params: Mapping[str, Any]) -> list[str]:
    """What is wrong with the LiteLLM parameters a deployment passes through, for the ones whose
    type is known (``timeout: "sixty"``, ``max_tokens: 0``); values are never shown.

    Example:
        >>> passthrough_problems({"timeout": "sixty", "api_base": "http://127.0.0.1:8080/v1"})
        ['timeout must be a number above 0']
    """
    out = []
    for name, value in params.items():
        if name in _NUMBERS:
            low, high, whole = _NUMBERS[name]
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
            if whole and number and not float(value).is_integer():
                number = False
            in_range = number and (value > low if name in ("timeout", "stream_timeout", "weight") else value >= low)
            in_range = in_range and (high is None or value <= high)
            if not in_range:
                what = "a whole number" if whole else "a number"
                bound = (f"above {low:g}" if name in ("timeout", "stream_timeout", "weight") else f"at least {low:g}")
                bound += f" and at most {high:g}" if high is not None else ""
                out.append(f"{name} must be {what} {bound}")
        elif name in _STRINGS and not isinstance(value, str):
            out.append(f"{name} must be a string")
    return out


_TIER_KEYS = ("tier", "min_tier", "max_tier", "fallback", "router_tier")


def raw_reference_problems(data: Mapping[str, Any]) -> list[ConfigProblem]:
    """The unknown tiers of a configuration that did not validate, read from its raw data, so
    that one unknown key does not hide them (``steproute check`` reports every problem at once)."""
    tiers = data.get("tiers")
    if not isinstance(tiers, Mapping):
        return []
    names = [k for k in tiers if isinstance(k, str)]
    known = ", ".join(config_key(n) for n in names)
    problems: list[ConfigProblem] = []

    def check(path: str, value: Any) -> None:
        if isinstance(value, str) and value not in names:
            problems.append(ConfigProblem(path, f"unknown tier {shown_config_value(value)} (known: {known})"
                                                f"{did_you_mean(value, names)}"))

    def entry(prefix: str, value: Any, depth: int = 0) -> None:
        if isinstance(value, str):
            check(f"{prefix}.tier", value)
            return
        if not isinstance(value, Mapping) or depth > 8:
            return
        for key in _TIER_KEYS:
            if key in value:
                check(f"{prefix}.{key}", value[key])
        for key in ("tiers",):
            if isinstance(value.get(key), list):
                for i, tier in enumerate(value[key]):
                    check(f"{prefix}.{key}[{i}]", tier)
        for key in ("rules", "signals"):
            if isinstance(value.get(key), list):
                for i, item in enumerate(value[key]):
                    if isinstance(item, Mapping) and "tier" in item:
                        check(f"{prefix}.{key}[{i}].tier", item["tier"])
        if value.get("policy", "fixed") == "fixed":
            problems.extend(_fixed_out_of_bounds(prefix, value.get("tier"), value.get("min_tier"), value.get("max_tier"),
                                                 names))
        if "start" in value:
            entry(f"{prefix}.start", value["start"], depth + 1)
        if isinstance(value.get("policies"), list):
            for j, link in enumerate(value["policies"]):
                entry(f"{prefix}.policies[{j}]", link, depth + 1)
        if isinstance(value.get("choices"), Mapping):
            for tier in value["choices"]:
                check(f"{prefix}.choices.{config_key(tier)}", tier)

    check("baseline", data.get("baseline"))
    guards = data.get("guards")
    if isinstance(guards, Mapping):
        if isinstance(guards.get("pii"), Mapping):
            check("guards.pii.tier", guards["pii"].get("tier"))
        if isinstance(guards.get("budgets"), Mapping):
            check("guards.budgets.cap_tier", guards["budgets"].get("cap_tier"))
    if "default" in data:
        entry("default", data["default"])
    if isinstance(data.get("steps"), Mapping):
        for name, value in data["steps"].items():
            entry(f"steps.{config_key(name)}", value)
    return problems
