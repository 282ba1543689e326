"""Routing policies, one per module, behind the :class:`Policy` protocol.

``fixed`` and ``rules`` need nothing; ``classifier``, ``semantic``, ``knn``, ``ensemble`` and ``irt`` load a trained artefact
(the ``learn`` extra); ``llm`` asks a model through a tier the router lends it; ``chain``
asks several in order; ``cascade`` judges a cheap tier's answer and escalates; ``bandit`` learns
a step's tier online from feedback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steproute.policies.bandit import BanditPolicy
from steproute.policies.base import Choice, Policy, learn_extra_missing
from steproute.policies.cascade import CascadePolicy
from steproute.policies.chain import ChainPolicy
from steproute.policies.confidence import (
    ConsistencySignal,
    HedgingSignal,
    JudgeSignal,
    LogprobSignal,
    SchemaSignal,
    Signal,
    ToolCallSignal,
)
from steproute.policies.fixed import FixedPolicy
from steproute.policies.llm_judge import Ask, LLMRouterPolicy
from steproute.policies.rules import RulesPolicy
from steproute.policy_config import (
    BanditPolicyConfig,
    CascadePolicyConfig,
    ChainPolicyConfig,
    ClassifierPolicyConfig,
    EnsemblePolicyConfig,
    FixedPolicyConfig,
    IrtPolicyConfig,
    KnnPolicyConfig,
    LLMPolicyConfig,
    PolicyConfig,
    RulesPolicyConfig,
    SemanticPolicyConfig,
    SignalConfig,
)

__all__ = ["BanditPolicy", "CascadePolicy", "ChainPolicy", "Choice", "FixedPolicy", "LLMRouterPolicy", "Policy",
           "PolicyContext", "RulesPolicy", "build_policy"]


@dataclass(frozen=True)
class PolicyContext:
    """What the router lends the policies it builds."""

    tiers: tuple[str, ...] = ()
    """The configuration's tiers, cheap to strong."""
    base_dir: Path = Path(".")
    """Folder that relative artefact paths are read from (the configuration file's)."""
    ask: Ask | None = None
    """A model call through a tier, for the ``llm`` policy."""


def _path(artefact: str, context: PolicyContext) -> Path:
    path = Path(os.path.expanduser(artefact))
    return path if path.is_absolute() else context.base_dir / path


def _signal(config: SignalConfig, first_tier: str, context: PolicyContext) -> Signal:
    weight, threshold = config.weight, config.threshold
    given: dict[str, Any] = {} if threshold is None else {"threshold": threshold}
    if config.signal == "logprob":
        return LogprobSignal(weight=weight, statistic=config.statistic, **given)
    if config.signal == "hedging":
        return HedgingSignal(tuple(config.phrases), weight=weight, **given)
    if config.signal == "arithmetic":
        from steproute.policies.answer_scorer import ArithmeticSignal

        return ArithmeticSignal(weight=weight, **given)
    if config.signal == "schema":
        return SchemaSignal(weight=weight, **given)
    if config.signal == "tools":
        return ToolCallSignal(weight=weight, **given)
    if config.signal == "consistency":
        return ConsistencySignal(config.samples, weight=weight, **given)
    if config.signal == "judge":
        return JudgeSignal(config.tier or first_tier, weight=weight, **given)
    from steproute.policies.answer_scorer import AnswerScorer, ScorerSignal

    assert config.artefact is not None  # the config checks it
    scorer = AnswerScorer.load(_path(config.artefact, context))
    return ScorerSignal(scorer, scorer.threshold if threshold is None else threshold, weight)


def _routing(config: CascadePolicyConfig, tiers: tuple[str, ...], context: PolicyContext) -> CascadePolicy | None:
    """A cascade routing, when the artefact is one (``None``: a plain trained cascade)."""
    assert config.artefact is not None
    path = _path(config.artefact, context)
    try:
        from steproute.policies._artefact import built, load_artefact
        from steproute.policies.cascade_value import CascadeRoutingPolicy
    except ImportError as exc:  # a plain install: the artefact's arrays need numpy
        raise learn_extra_missing("policy 'cascade' with an artefact", exc) from None
    artefact = load_artefact(path)
    if artefact.policy != "cascade_routing":
        if config.lam is not None:
            raise ValueError("'lambda' is for a cascade-routing artefact (steproute train --policy cascade_routing)")
        return None
    if config.start is not None:
        raise ValueError("a cascade-routing artefact chooses the start tier itself: remove 'start'")
    signals = [_signal(s, tiers[0], context) for s in config.signals] if "signals" in config.model_fields_set else []
    return built(path, lambda: CascadeRoutingPolicy.of(artefact, tiers or None, lam=config.lam,
                                                       signals=signals, combine=config.combine))


def _cascade(config: CascadePolicyConfig, context: PolicyContext) -> CascadePolicy:
    tiers = tuple(config.tiers or context.tiers)
    if config.artefact is not None:
        routing = _routing(config, tiers, context)
        if routing is not None:
            return routing
    signals_config = list(config.signals)
    if config.artefact is not None:
        scorer = SignalConfig(signal="scorer", artefact=config.artefact)
        signals_config = [*signals_config, scorer] if "signals" in config.model_fields_set else [scorer]
    signals = [_signal(s, tiers[0], context) for s in signals_config]
    start = build_policy(config.start, context) if config.start is not None else None
    return CascadePolicy(tiers, signals, combine=config.combine, threshold=config.threshold, start=start,
                         speculative=config.speculative, max_concurrency=config.max_concurrency)


_Learned = ClassifierPolicyConfig | SemanticPolicyConfig | KnnPolicyConfig | EnsemblePolicyConfig | IrtPolicyConfig


def _learned(config: _Learned, context: PolicyContext) -> Policy:
    path = _path(config.artefact, context)
    try:
        if isinstance(config, ClassifierPolicyConfig):
            from steproute.policies.classifier import ClassifierPolicy as cls
        elif isinstance(config, KnnPolicyConfig):
            from steproute.policies.knn import KnnPolicy as cls  # type: ignore[assignment]
        elif isinstance(config, EnsemblePolicyConfig):
            from steproute.policies.ensemble import EnsemblePolicy as cls  # type: ignore[assignment]
        elif isinstance(config, IrtPolicyConfig):
            from steproute.policies.irt import IrtPolicy as cls  # type: ignore[assignment]
        else:
            from steproute.policies.semantic import SemanticPolicy as cls  # type: ignore[assignment]
    except ImportError as exc:  # a plain install: numpy and the encoders come with the 'learn' extra
        raise learn_extra_missing(f"policy {config.policy!r}", exc) from None
    tiers = config.tiers
    if tiers is None:
        from steproute.policies._artefact import built, load_artefact

        artefact = load_artefact(path, config.policy)
        if len(artefact.labels) != len(context.tiers):
            raise ValueError(f"the artefact estimates {len(artefact.labels)} tiers ({', '.join(artefact.labels)}) and the "
                             f"configuration has {len(context.tiers)}: say which tier is which with 'tiers:'")
        return built(path, lambda: cls(artefact, context.tiers, config.threshold))
    return cls.load(path, tiers, config.threshold)


def _bandit(config: BanditPolicyConfig, context: PolicyContext) -> BanditPolicy:
    tiers = list(config.tiers or context.tiers)
    known = set(context.tiers) if context.tiers else set(tiers)
    unknown = [t for t in tiers if t not in known]
    if unknown:
        raise ValueError(f"bandit: 'tiers' names {unknown[0]!r}, not a tier of the configuration")
    low = tiers.index(config.min_tier) if config.min_tier in tiers else 0
    high = tiers.index(config.max_tier) if config.max_tier in tiers else len(tiers) - 1
    return BanditPolicy(tiers[low:high + 1], explore=config.explore, costs=config.costs, cost_weight=config.cost_weight,
                        budget_usd_per_day=config.budget_usd_per_day, prior=config.prior,
                        prior_strength=config.prior_strength, refresh_seconds=config.refresh_seconds, seed=config.seed)


def build_policy(config: PolicyConfig, context: PolicyContext | None = None) -> Policy:
    """The policy object for a validated policy configuration.

    Raises ``ValueError`` (an :class:`~steproute.policies._artefact.ArtefactError` for a bad
    artefact) when the policy cannot be built; the router reports it against the config path.
    """
    context = context or PolicyContext()
    if isinstance(config, FixedPolicyConfig):
        return FixedPolicy.from_config(config)
    if isinstance(config, RulesPolicyConfig):
        return RulesPolicy.from_config(config)
    if isinstance(config, (ClassifierPolicyConfig, SemanticPolicyConfig, KnnPolicyConfig, EnsemblePolicyConfig, IrtPolicyConfig)):
        return _learned(config, context)
    if isinstance(config, LLMPolicyConfig):
        if context.ask is None:
            raise ValueError("the llm policy needs a router to make its calls")
        choices: dict[str, Any] = config.choices or dict.fromkeys(context.tiers, "")
        return LLMRouterPolicy(context.ask, config.router_tier, choices, config.fallback,
                               instructions=config.instructions, max_tokens=config.max_tokens)
    if isinstance(config, CascadePolicyConfig):
        return _cascade(config, context)
    if isinstance(config, BanditPolicyConfig):
        return _bandit(config, context)
    if isinstance(config, ChainPolicyConfig):
        return ChainPolicy([build_policy(link, context) for link in config.policies])
    raise TypeError(f"no policy implementation for {type(config).__name__}")  # pragma: no cover
