"""Errors raised by steproute.

Every error names what went wrong in user terms (a config path, a step, a tier) and never
carries a secret: configuration values are not echoed back, only their paths.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BudgetExceeded", "ConfigError", "ConfigProblem", "DispatchError", "LocalModelError", "RoutingError",
           "StepRouteError"]


_NAME = re.compile(r"[\w.:/ -]{1,32}")
_KEY_LIKE = re.compile(r"(?i)^(sk|pk|rk|api|key|token|secret|ghp|gho|xox[abpr]|AKIA)[-_]?")


def shown(value: object) -> str:
    """A user-given name as an error may show it: quoted when it looks like a name, else only
    its length, so a credential pasted in the wrong field never reaches a log.

    Example:
        >>> shown("gold"), shown("sk-live-7f3c9a1b2d4e6f80"), shown(["x"])
        ("'gold'", 'a 24-character value', 'a list')
    """
    if value is None:
        return "null"
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    if _NAME.fullmatch(value) and not _KEY_LIKE.match(value):
        return repr(value)
    return f"a {len(value)}-character value"


class StepRouteError(Exception):
    """Base class of every error steproute raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration."""

    path: str
    """Dotted path of the offending key, e.g. ``steps.plan.tier``."""
    message: str
    """What is wrong and what was expected."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(StepRouteError, ValueError):
    """A configuration is invalid. Lists every problem found, each with its path.

    Example:
        >>> err = ConfigError([ConfigProblem("steps.plan.tier", "unknown tier 'gold'")])
        >>> print(err)
        invalid steproute configuration (1 problem):
          - steps.plan.tier: unknown tier 'gold'
    """

    def __init__(self, problems: Sequence[ConfigProblem], *, source: str | None = None) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        lines = [f"invalid steproute configuration{where} ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class RoutingError(StepRouteError, ValueError):
    """A step could not be routed: contradictory hints, an unknown tier in a hint, ..."""


@dataclass(frozen=True)
class Attempt:
    """One failed model call inside a dispatch."""

    model: str
    """The configured model string of the deployment that was tried."""
    error_type: str
    """The class name of the provider error (``RateLimitError``, ``Timeout``, ...)."""
    provider: str = ""
    started_ns: int | None = None
    """Start and end of the attempt, in ns since the epoch, when LiteLLM reported them."""
    ended_ns: int | None = None


class DispatchError(StepRouteError, RuntimeError):
    """Every deployment allowed for a step failed.

    Names the step, the tier and each attempt (model and error type); never the request
    content or a credential.
    """

    def __init__(self, step: str, tier: str, attempts: Sequence[Attempt], *, tiers: Sequence[str] = ()) -> None:
        self.step = step
        self.tier = tier
        """The tier the step was routed to."""
        self.tiers: tuple[str, ...] = tuple(tiers) or (tier,)
        """Every tier tried, in order (more than one after a cross-tier fallback)."""
        self.attempts: tuple[Attempt, ...] = tuple(attempts)
        tried = ", ".join(f"{a.model} ({a.error_type})" for a in self.attempts) or "none"
        which = f"tier '{tier}'" if len(self.tiers) == 1 else "tiers " + ", ".join(f"'{t}'" for t in self.tiers)
        super().__init__(f"step '{step}': every deployment of {which} failed; attempts: {tried}")


class BudgetExceeded(StepRouteError, RuntimeError):
    """A tenant has spent its limit for the current window (``guards.budgets``, ``on_exceed:
    refuse``). Raised before any model call: nothing is spent."""

    def __init__(self, step: str, tenant: str, limit_usd: float, spent_usd: float, window_ends: float,
                 reserved_usd: float = 0.0) -> None:
        self.step, self.tenant = step, tenant
        self.limit_usd, self.spent_usd, self.window_ends = limit_usd, spent_usd, window_ends
        self.reserved_usd = reserved_usd
        """Held by the tenant's calls still under way: they may spend it."""
        held = f" (and ${reserved_usd:.6g} is held by calls under way)" if reserved_usd else ""
        super().__init__(f"step '{step}': tenant {shown(tenant)} has spent ${spent_usd:.6g} of its ${limit_usd:.6g} "
                         f"budget for this window{held}; it resets at Unix time {window_ends:.0f}")


class LocalModelError(StepRouteError, RuntimeError):
    """A local model could not be set up or served: a failed build, a weights file whose
    checksum does not match, a server that did not come up. The message says which file or
    command, and where its log is."""
