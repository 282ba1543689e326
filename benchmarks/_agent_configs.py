"""The tiers, their prices, and the configurations the agent benchmark measures side by side.

Three local tiers under llama.cpp: ``tiny`` SmolLM2-135M, ``small`` Qwen2.5-Coder-0.5B,
``medium`` Qwen2.5-Coder-1.5B. Prices per token are proportional to parameter count: $1 per
million tokens (input and output alike) per billion parameters.

Example:
    >>> [c.name for c in configurations({"rewrite": "tiny", "plan": "medium"})][:4]
    ['always-tiny', 'always-small', 'always-medium', 'per-request-classifier']
    >>> PRICE_PER_TOKEN["medium"] / PRICE_PER_TOKEN["tiny"] == 1.5 / 0.135
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MODELS", "PARAMS_B", "PRICE_PER_TOKEN", "STRONGEST", "TIERS", "Configuration", "configurations",
           "litellm_complexity_available", "router_config", "tier_of_complexity"]

TIERS = ("tiny", "small", "medium")
"""Cheap to strong."""
STRONGEST = TIERS[-1]
MODELS = {"tiny": "smollm2-135m", "small": "qwen2.5-coder-0.5b", "medium": "qwen2.5-coder-1.5b"}
PARAMS_B = {"tiny": 0.135, "small": 0.5, "medium": 1.5}
PRICE_PER_TOKEN = {tier: b * 1e-6 for tier, b in PARAMS_B.items()}
"""USD per token, input and output: $1 per million tokens per billion parameters."""

CLASSIFIER_THRESHOLD = 0.05
"""Learned routers' threshold when too few rows to calibrate one by cross-validation."""


@dataclass(frozen=True)
class Configuration:
    """One way to route the workload. ``kind`` says how: ``fixed`` (one tier for everything),
    ``per-request`` (a router picks one tier per task from its whole request), ``static``,
    ``learned`` or ``cascade`` (per step)."""

    name: str
    family: str
    kind: str
    description: str
    tier: str | None = None
    router: str | None = None
    """``per-request``: ``classifier`` or ``litellm-complexity``."""
    steps: Mapping[str, Any] = field(default_factory=dict)


def configurations(static: Mapping[str, str] | None, *, complexity: bool = True) -> list[Configuration]:
    """Every configuration, in the order they run (the fixed tiers first: the others learn from them).

    ``static`` is the workload's per-step static configuration (a tier per step, written by hand);
    with none the per-step static configuration is left out.
    """
    out = [Configuration(f"always-{t}", "always", "fixed", f"every call on {t} ({MODELS[t]})", tier=t) for t in TIERS]
    out.append(Configuration("per-request-classifier", "per-request", "per-request",
                             "steproute's classifier over the whole request picks one tier per task "
                             "(cross-fitted on the other tasks' outcomes)", router="classifier"))
    if complexity:
        out.append(Configuration("per-request-litellm-complexity", "per-request", "per-request",
                                 "LiteLLM's complexity router (rule-based) picks one tier per task from the request "
                                 "(SIMPLE→tiny, MEDIUM→small, COMPLEX/REASONING→medium)", router="litellm-complexity"))
    if static:
        out.append(Configuration("per-step-static", "per-step", "static",
                                 "fixed tier per step, written by hand: " + ", ".join(f"{s}→{t}" for s, t in static.items()),
                                 steps=static))
    out.append(Configuration("per-step-measured", "per-step", "measured",
                             "one tier per step, the cheapest whose step success on the other tasks' per-step outcomes is "
                             "at least 95% of the best tier's (cross-fitted): the table a user writes after steproute eval"))
    out.append(Configuration("per-step-learned", "per-step", "learned",
                             "steproute's classifier on each step's messages, trained on per-step outcomes "
                             "(cross-fitted: trained on the other tasks)"))
    out.append(Configuration("per-step-cascade", "per-step", "cascade",
                             "each step tries tiny, then small, then medium while its confidence signals say no "
                             "(token probability ≥ 0.6; where the workload sets them, its checks too: a valid tool call, "
                             "arithmetic that holds)"))
    return out


def tiers_block(base_urls: Mapping[str, str]) -> dict[str, Any]:
    """The ``tiers:`` of a router config, each tier at ``base_urls[tier]`` (the caching proxy)."""
    return {tier: {"tool_calling": "json", "models": [{
        "model": f"openai/{MODELS[tier]}", "api_base": base_urls[tier], "api_key": "local",
        "input_cost_per_token": PRICE_PER_TOKEN[tier], "output_cost_per_token": PRICE_PER_TOKEN[tier],
        "capabilities": {"vision": False, "audio": False, "tools": False, "response_schema": True,
                         "max_input_tokens": 8192, "max_output_tokens": 8192}}]} for tier in TIERS}


def router_config(base_urls: Mapping[str, str], *, default: str, steps: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A whole router config: the three tiers, ``default`` for unnamed steps, ``steps`` as given."""
    return {"tiers": tiers_block(base_urls), "baseline": STRONGEST, "default": default,
            "dispatch": {"timeout": 600}, "steps": dict(steps or {})}


def cascade_steps(steps: Sequence[str], signals: Mapping[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Every step a cascade over the three tiers, with ``signals[step]`` (else the mean token
    probability at 0.6); a workload with no named steps cascades its default."""
    default = [{"signal": "logprob", "threshold": 0.6}]
    return {s: {"policy": "cascade", "tiers": list(TIERS), "signals": (signals or {}).get(s, default)}
            for s in (steps or ("default",))}


def litellm_complexity_available() -> bool:
    """Whether the installed LiteLLM has its complexity router."""
    try:
        from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter  # noqa: F401
    except ImportError:
        return False
    return True


_COMPLEXITY_TIERS = {"SIMPLE": "tiny", "MEDIUM": "small", "COMPLEX": "medium", "REASONING": "medium"}
_complexity_router: Any = None


def tier_of_complexity(text: str) -> tuple[str, str]:
    """The tier LiteLLM's complexity router picks for ``text`` and its label (no model call: its
    rule-based scorer)."""
    global _complexity_router
    if _complexity_router is None:
        import litellm
        from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter

        names = {label: f"bench-{tier}" for label, tier in _COMPLEXITY_TIERS.items()}
        model_list = [{"model_name": f"bench-{t}", "litellm_params": {"model": f"openai/{MODELS[t]}", "api_key": "x",
                                                                       "api_base": "http://127.0.0.1:9/v1"}}
                      for t in TIERS]
        _complexity_router = ComplexityRouter("bench-auto", litellm.Router(model_list=model_list),
                                              {"tiers": names}, derive_savings_baseline=False)
    tier, score, _ = _complexity_router.classify(text)
    label = getattr(tier, "value", str(tier))
    return _COMPLEXITY_TIERS.get(str(label).upper(), STRONGEST), f"{label} (score {score:.2f})"
