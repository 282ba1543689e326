"""``steproute check``: every problem of a configuration file in one run, and where each step goes.

:func:`check_file` loads a file the way :class:`~steproute.router.StepRouter` would and adds
what loading alone lets through:

- **Errors**: everything :class:`~steproute.errors.ConfigError` lists (unknown keys and tiers
  with a "did you mean", wrong types, contradictory bounds, a ``fixed`` tier outside its own
  bounds) and policies that cannot be built (an artefact that does not load); a baseline
  model without a price, which would make every saving figure meaningless.
- **Warnings**: other models that neither LiteLLM's price map nor the file prices (a misspelled
  model, usually: "did you mean"), rules whose tier the step's bounds move, bounds that leave a
  step no tier with a capability another tier has (vision, audio input, function calling, a
  JSON-schema response format: such calls would raise ``CapabilityError``), and ``${VAR}``s
  checked with a placeholder.
- **Routes**: for ``default`` and each ``steps:`` entry, its policy and the tiers its calls can
  reach within its bounds.

Unset ``${VAR}``s: give their values with ``env`` (``--env FILE``, ``KEY=VALUE`` lines) or check
the file with placeholders (``--placeholders``).

Example:
    >>> report = check_file("examples/steproute.yaml", placeholders=True)
    >>> report.ok, [(r.entry, r.tiers) for r in report.routes][:2]
    (True, [('rewrite', ('fast',)), ('extract', ('fast', 'strong'))])
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steproute._config_checks import did_you_mean
from steproute._config_read import ENVIRONMENT, EnvironmentOverride, shown_config_value
from steproute._text_table import text_table
from steproute.capabilities import CapabilityFilter, filter_of
from steproute.config import RouterConfig, load_config
from steproute.errors import ConfigError, ConfigProblem, shown
from steproute.policy_config import ChainPolicyConfig, FixedPolicyConfig, LLMPolicyConfig, RulesPolicyConfig

__all__ = ["CheckReport", "StepRoute", "check_file", "read_env_file"]

_UNSET = re.compile(r"environment variable \S+ is not set$")
ENV_HINT = ("set the variables, or check the file with their values from a file (`steproute check FILE --env .env`) "
            "or with placeholders (`steproute check FILE --placeholders`)")


@dataclass(frozen=True)
class StepRoute:
    """Where one ``steps:`` entry (or ``default``) sends its calls."""

    entry: str
    """The ``steps:`` key, or ``(default)``."""
    kind: str | None
    policy: str
    tiers: tuple[str, ...]
    """The tiers its calls can reach, cheap to strong, within its ``min_tier``/``max_tier``."""


@dataclass(frozen=True)
class DeploymentLine:
    tier: str
    model: str
    price: str
    baseline: bool


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_file` found."""

    source: str
    errors: tuple[ConfigProblem, ...]
    warnings: tuple[ConfigProblem, ...] = ()
    routes: tuple[StepRoute, ...] = ()
    deployments: tuple[DeploymentLine, ...] = ()
    hint: str = ""
    """What to do about the errors, when one thing fixes several (unset variables)."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        """The report as the terminal shows it."""
        out: list[str] = []
        if self.errors:  # on stderr: one line for one problem, then one line per problem
            n = len(self.errors)
            if n == 1:
                out.append(f"steproute check: {self.source}: {self.errors[0]}")
            else:
                out.append(f"steproute check: {self.source}: {n} problems")
                out += [f"  - {p}" for p in self.errors]
            if self.hint:
                out.append(f"  hint: {self.hint}")
            return "\n".join(out)
        out.append(f"{self.source}: valid")
        if self.deployments:
            out += ["", text_table(["tier", "model", "price (USD per million tokens)"],
                                   [[d.tier + (" (baseline)" if d.baseline else ""), d.model, d.price]
                                    for d in self.deployments])]
        if self.routes:
            out += ["", text_table(["step", "kind", "policy", "tiers it can reach"],
                                   [[r.entry, r.kind or "-", r.policy, ", ".join(r.tiers)] for r in self.routes])]
        if self.warnings:
            out += ["", f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}:"]
            out += [f"  - {p}" for p in self.warnings]
        return "\n".join(out)


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines and an ``export`` prefix allowed; values
    may be quoted). A bad line is a :class:`ValueError` naming its number, never its text.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / ".env"
        >>> _ = p.write_text("# local servers\\nexport FAST_URL='http://127.0.0.1:8080/v1'\\n")
        >>> read_env_file(p)
        {'FAST_URL': 'http://127.0.0.1:8080/v1'}
    """
    values: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{path}: line {number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def check_file(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
               placeholders: bool = False) -> CheckReport:
    """Check a configuration file: every problem at once, warnings, and each step's tiers.

    ``env`` replaces the process environment for ``${VAR}`` references; with ``placeholders``,
    an unset variable is a warning instead of an error.
    """
    source = str(path)
    override = EnvironmentOverride(os.environ if env is None else env, placeholders)
    token = ENVIRONMENT.set(override)
    try:
        config = load_config(path)
    except ConfigError as exc:
        unset = any(_UNSET.search(p.message) for p in exc.problems)
        return CheckReport(source, exc.problems, tuple(override.unset), hint=ENV_HINT if unset else "")
    finally:
        ENVIRONMENT.reset(token)
    from steproute.router import StepRouter

    quiet = logging.getLogger("steproute")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the price warnings are this report's own
    try:
        router = StepRouter(config)
    except ConfigError as exc:
        return CheckReport(source, exc.problems, tuple(override.unset))
    finally:
        quiet.setLevel(level)
    errors: list[ConfigProblem] = []
    warnings: list[ConfigProblem] = list(override.unset)
    lines: list[DeploymentLine] = []
    for tier in router.tiers:
        for d in router.deployments(tier):
            where = f"tiers.{tier}.models[{d.index}]"
            if d.price.known:
                price = f"${d.price.input * 1e6:.2f} in, ${d.price.output * 1e6:.2f} out"
            else:
                price = "unknown (counted as $0)"
                unpriced = (f"model {shown_config_value(d.model)} is not in LiteLLM's price map and the file gives no "
                            "input_cost_per_token/output_cost_per_token")
                suggestion = _model_suggestion(d.model)
                if tier == router.baseline and d.index == 0:
                    errors.append(ConfigProblem(where, f"{unpriced}: it prices the baseline, so every saving figure "
                                                       f"would be meaningless{suggestion}"))
                else:
                    warnings.append(ConfigProblem(where, f"{unpriced}: its calls count as $0{suggestion}"))
            lines.append(DeploymentLine(tier, d.model if shown(d.model) == repr(d.model) else shown(d.model), price,
                                        tier == router.baseline))
    routes = []
    capable = filter_of(config)
    for name, tier_config in config.tiers.items():
        for i in range(len(tier_config.models)):
            if unknown := capable.unknown(name, i):
                warnings.append(ConfigProblem(f"tiers.{name}.models[{i}]", (
                    f"LiteLLM has no model information for it: its {', '.join(unknown)} are unknown and counted as "
                    "capable; say what it can serve with capabilities:")))
    for entry, policy in [*config.steps.items(), ("(default)", config.default)]:
        prefix = "default" if entry == "(default)" else f"steps.{entry}"
        tiers, moved = _reach(config, policy)
        for what, tier, to in moved:
            warnings.append(ConfigProblem(f"{prefix}.{what}", f"tier {tier!r} is outside the step's bounds: its calls "
                                                              f"go to {to!r}"))
        routes.append(StepRoute(entry, policy.kind, policy.policy, tiers))
        warnings.extend(_unreachable(config, capable, policy, prefix))
    return CheckReport(source, tuple(errors), tuple(warnings), tuple(routes), tuple(lines))


_CAN = {"vision": "vision (calls with images)", "audio": "audio input (calls with audio)",
        "tools": "function calling (calls with tools)", "response_schema": "a JSON-schema response format"}


def _unreachable(config: RouterConfig, capable: CapabilityFilter, policy: Any, prefix: str) -> list[ConfigProblem]:
    """A capability some tier has but none within the entry's ``min_tier``/``max_tier``: its
    calls that need it raise ``CapabilityError``."""
    names = config.tier_names()
    low = names.index(policy.min_tier) if policy.min_tier else 0
    high = names.index(policy.max_tier) if policy.max_tier else len(names) - 1
    allowed = names[low:high + 1]
    out = []
    for capability, what in _CAN.items():
        having = capable.tiers_having(capability)
        if having and not set(having) & set(allowed):
            field = "max_tier" if policy.max_tier else "min_tier"
            out.append(ConfigProblem(f"{prefix}.{field}", f"no tier within the step's bounds "
                                     f"({', '.join(repr(t) for t in allowed)}) has {what}: such calls raise "
                                     f"CapabilityError ({_have(having)})"))
    return out


def _have(tiers: tuple[str, ...]) -> str:
    """``tier 'strong' has it``, ``tiers 'mid', 'strong' have it``."""
    named = ", ".join(repr(t) for t in tiers)
    return f"tier {named} has it" if len(tiers) == 1 else f"tiers {named} have it"


def _price_map() -> dict[str, Any]:
    from steproute._litellm import litellm

    return litellm().model_cost  # type: ignore[no-any-return]


def _model_suggestion(model: str) -> str:
    provider, _, bare = model.rpartition("/")
    names = [k for k in _price_map() if "/" not in k]
    close = difflib.get_close_matches(bare, names, n=1, cutoff=0.85)
    if not close or close[0] == bare:
        return ""
    return did_you_mean(model, [f"{provider}/{close[0]}" if provider else close[0]])


def _reach(config: RouterConfig, policy: Any) -> tuple[tuple[str, ...], list[tuple[str, str, str]]]:
    """The tiers a policy entry can send calls to, within its bounds, and the named tiers its
    bounds move (``(field, tier, where it goes)``)."""
    names = config.tier_names()
    low = names.index(policy.min_tier) if policy.min_tier else 0
    high = names.index(policy.max_tier) if policy.max_tier else len(names) - 1
    named: list[tuple[str, str]] = []

    def collect(p: Any, prefix: str) -> None:
        if isinstance(p, FixedPolicyConfig):
            named.append((f"{prefix}tier", p.tier))
        elif isinstance(p, RulesPolicyConfig):
            named.extend((f"{prefix}rules[{i}].tier", r.tier) for i, r in enumerate(p.rules))
            if p.fallback:
                named.append((f"{prefix}fallback", p.fallback))
        elif isinstance(p, ChainPolicyConfig):
            for j, link in enumerate(p.policies):
                collect(link, f"{prefix}policies[{j}].")
        elif isinstance(p, LLMPolicyConfig):
            named.extend((f"{prefix}choices", t) for t in (p.choices or names))
        else:  # learned and cascade policies: their tiers, else every tier
            named.extend((f"{prefix}tiers", t) for t in (getattr(p, "tiers", None) or names))

    collect(policy, "")
    reach: set[int] = set()
    moved = []
    for what, tier in named:
        rank = min(max(names.index(tier), low), high)
        reach.add(rank)
        if names[rank] != tier and not what.endswith("tiers") and what != "choices":
            moved.append((what, tier, names[rank]))
    if isinstance(policy, RulesPolicyConfig) and not policy.fallback:
        reach.add(low)  # no rule matched: the cheapest allowed tier
    return tuple(names[r] for r in sorted(reach)), moved
