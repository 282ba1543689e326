"""The configuration's policy entries: what ``default:`` and each ``steps:`` entry may say.

One pydantic model per policy (``policy: fixed``, ``rules``, ``classifier``, ``semantic``,
``knn``, ``ensemble``, ``irt``, ``llm``, ``chain``, ``cascade``, ``bandit``), tagged by ``policy``, over the
settings every step shares
(:class:`StepSettings`: kind, tier bounds, pinning, style, fallback). :mod:`steproute.config`
assembles them into :class:`~steproute.config.RouterConfig` and re-exports them.

Example:
    >>> FixedPolicyConfig(tier="fast", max_tier="fast").policy
    'fixed'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "POLICY_NAMES",
    "BanditPolicyConfig",
    "CascadePolicyConfig",
    "ChainPolicyConfig",
    "ClassifierPolicyConfig",
    "EnsemblePolicyConfig",
    "FixedPolicyConfig",
    "FrozenConfig",
    "IrtPolicyConfig",
    "KnnPolicyConfig",
    "LLMPolicyConfig",
    "LearnedPolicyConfig",
    "PinningConfig",
    "PolicyConfig",
    "RuleCondition",
    "RuleConfig",
    "RulesPolicyConfig",
    "SemanticPolicyConfig",
    "ShadowConfig",
    "SignalConfig",
    "StepSettings",
    "StyleConfig",
]

POLICY_NAMES = ("fixed", "rules", "classifier", "semantic", "knn", "ensemble", "irt", "llm", "chain", "cascade", "bandit")


class FrozenConfig(BaseModel):
    """A configuration section: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StyleConfig(FrozenConfig):
    """What makes answers from different tiers look alike when a conversation moves between them:
    an addition to the system prompt and output settings, per tier and per step."""

    system_prompt: str | None = Field(default=None, min_length=1)
    """Appended to the call's system message (a system message is added when there is none);
    a tier's comes first, then the step's."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Output length cap, unless the call sets its own (the step's wins over the tier's)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature, unless the call sets its own (the step's wins over the tier's)."""


class RuleCondition(FrozenConfig):
    """Conditions of a rule; all given ones must hold (logical AND)."""

    keywords: list[str] | None = None
    """Any of these words or phrases appears in the latest user message (case-insensitive)."""
    regex: str | None = None
    """This regular expression matches the latest user message (``re.search``)."""
    min_input_tokens: int | None = Field(default=None, ge=0)
    """The conversation is at least this many tokens (estimated at 4 characters a token)."""
    max_input_tokens: int | None = Field(default=None, ge=0)
    min_turns: int | None = Field(default=None, ge=0)
    """At least this many user messages."""
    max_turns: int | None = Field(default=None, ge=0)
    has_tools: bool | None = None
    """The call offers tools (``bind_tools``)."""
    has_schema: bool | None = None
    """The call asks for structured output (``with_structured_output``)."""
    kind: list[str] | None = None
    """The step's kind is one of these."""
    metadata: dict[str, Any] | None = None
    """Run metadata equals these values; keys are dotted paths (``tenant.plan``); a list
    value means 'one of'."""

    @model_validator(mode="before")
    @classmethod
    def _single_to_list(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            value = dict(value)
            for key in ("keywords", "kind"):
                if isinstance(value.get(key), str):
                    value[key] = [value[key]]
        return value


class RuleConfig(FrozenConfig):
    """One rule: when its conditions hold, route to its tier."""

    name: str | None = None
    """Name shown in the decision reason (default: ``rules[i]``)."""
    when: RuleCondition = Field(default_factory=RuleCondition)
    tier: str


class PinningConfig(FrozenConfig):
    """How a conversation is kept on one tier and model (see ``docs/pinning.md``)."""

    mode: Literal["sticky", "upgrade_only", "reevaluate", "turn", "off"] | None = None
    """``sticky`` (default), ``upgrade_only``, ``reevaluate``, ``turn`` (a user message through
    the agent's tool loop stays on one model; the next one is routed afresh) or ``off``."""
    group: str | None = Field(default=None, min_length=1)
    """Pin group: steps sharing a group share a pin (default: the step's name)."""
    after_turns: int | None = Field(default=None, ge=1)
    """``reevaluate``: let the policy decide again after this many calls from the pin."""
    after_seconds: float | None = Field(default=None, gt=0)
    """``reevaluate``: ... or this long after the pin was made."""
    max_threads: int = Field(default=100_000, ge=1)
    """Bound of the default in-memory pin store (least recently used pins are dropped)."""
    ttl_seconds: float | None = Field(default=24 * 3600, gt=0)
    """The in-memory store forgets a pin this long after its last use."""

    @model_validator(mode="after")
    def _reevaluate_needs_a_trigger(self) -> PinningConfig:
        if self.mode == "reevaluate" and self.after_turns is None and self.after_seconds is None:
            raise ValueError("mode 'reevaluate' needs after_turns or after_seconds")
        return self


class StepSettings(FrozenConfig):
    kind: str | None = None
    """Step kind (rewrite, extract, plan, tool_use, synthesis, or any name)."""
    min_tier: str | None = None
    max_tier: str | None = None
    pinning: PinningConfig | None = None
    """This step's pinning (fields given here override the global ``pinning``)."""
    style: StyleConfig | None = None
    """This step's system-prompt addition and output settings, after the tier's."""
    tier_fallback: Literal["next", "stronger", "none"] | None = None
    """When every deployment of the chosen tier fails: try the ``next`` stronger tier (the
    default), every ``stronger`` tier in turn, or ``none``. Never above the step's
    ``max_tier``; a ``tier`` hint fixes the tier, so it never falls back. On a ``cascade``
    step it counts the escalations errors may cause: ``none`` (an error ends the call; rejected
    answers still escalate), ``next`` (one), ``stronger`` (the default there: any)."""
    fallback_on: list[Literal["auth", "bad_request", "context_window"]] = Field(default_factory=list)
    """Errors from providers that, besides transient ones (429, 5xx, timeouts, connection
    errors), move the call to a stronger tier (``tier_fallback``) or up a cascade: ``auth``
    (401, 403, no credentials), ``bad_request`` (400, 404, 422; covers ``context_window``),
    ``context_window`` (the request is too long). Default: none, those errors are raised."""
    max_latency_ms: float | None = Field(default=None, gt=0)
    """The step's latency budget: the call goes to the cheapest tier, from the decided one up to
    ``max_tier``, whose observed p95 fits (the fastest when none does); a ``cascade`` also skips
    a tier whose p95 and the next's together exceed it. Not observed yet: the configured order.
    A run's ``steproute_deadline`` metadata can shorten it (see ``docs/configuration.md``)."""
    shadow: ShadowConfig | None = None
    """A candidate judged beside this step's live policy on sampled calls (``docs/shadow.md``)."""


class FixedPolicyConfig(StepSettings):
    """Always the same tier."""

    policy: Literal["fixed"] = "fixed"
    tier: str


class RulesPolicyConfig(StepSettings):
    """Ordered rules, first match wins; then ``fallback``, else the router's ``default``."""

    policy: Literal["rules"] = "rules"
    rules: list[RuleConfig] = Field(min_length=1)
    fallback: str | None = None
    """Tier when no rule matches (default: defer to the ``default`` policy)."""


class LearnedPolicyConfig(StepSettings):
    artefact: str
    """Path of the trained artefact (``steproute train``); relative paths are read from the
    configuration file's folder."""
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Expected quality a call may give up to use a cheaper tier (default: the artefact's
    calibrated one; ``steproute calibrate`` writes it here)."""
    tiers: list[str] | None = None
    """The router tier of each tier the artefact estimates, cheap to strong (default: the
    configuration's tiers, when there are as many)."""


class ClassifierPolicyConfig(LearnedPolicyConfig):
    """A trained per-tier quality estimate; the cheapest tier within ``threshold`` of the best."""

    policy: Literal["classifier"] = "classifier"


class SemanticPolicyConfig(LearnedPolicyConfig):
    """Quality per tier estimated from the nearest reference queries."""

    policy: Literal["semantic"] = "semantic"


class KnnPolicyConfig(LearnedPolicyConfig):
    """Quality per tier: the mean outcome of the k nearest training queries, shrunk to the step's mean."""

    policy: Literal["knn"] = "knn"


class EnsemblePolicyConfig(LearnedPolicyConfig):
    """A weighted average of the bundled learned policies' estimates (``steproute train --policy ensemble``)."""

    policy: Literal["ensemble"] = "ensemble"
class IrtPolicyConfig(LearnedPolicyConfig):
    """Each tier's latent ability against the request's latent difficulty (item response theory)."""

    policy: Literal["irt"] = "irt"


class LLMPolicyConfig(StepSettings):
    """Ask a model (through a cheap tier) which tier a request needs; strict parsing."""

    policy: Literal["llm"] = "llm"
    router_tier: str
    """Tier that answers the routing question."""
    fallback: str
    """Tier used when the router's answer cannot be parsed (each such call is counted)."""
    choices: dict[str, str] | None = None
    """Tier name → what it is for, shown to the routing model (default: every tier, by name)."""
    instructions: str | None = None
    """Replaces the routing prompt's opening instructions."""
    max_tokens: int = Field(default=8, ge=1, le=256)


_LinkConfig = Annotated[
    Union[FixedPolicyConfig, RulesPolicyConfig, ClassifierPolicyConfig, SemanticPolicyConfig, KnnPolicyConfig,
          EnsemblePolicyConfig, IrtPolicyConfig, LLMPolicyConfig],
    Field(discriminator="policy"),
]


class ChainPolicyConfig(StepSettings):
    """Policies asked in order; the first with an opinion decides (rules, then a learned policy)."""

    policy: Literal["chain"] = "chain"
    policies: list[_LinkConfig] = Field(min_length=1)


class SignalConfig(FrozenConfig):
    """One confidence signal of a cascade: its score is in [0, 1]; it passes at ``threshold``."""

    signal: Literal["logprob", "hedging", "arithmetic", "schema", "tools", "consistency", "judge", "scorer"]
    """``logprob`` (token probability), ``hedging`` (hedges and refusals), ``arithmetic`` (the
    calculations the answer states check out), ``schema`` (the
    structured output validates), ``tools`` (known tools, valid arguments), ``consistency``
    (agreement of ``samples`` answers), ``judge`` (a model grades the answer), ``scorer`` (a
    trained answer scorer, ``steproute train --policy cascade``)."""
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Score at which the signal passes (default: the signal's own; a scorer's calibrated one)."""
    weight: float = Field(default=1.0, gt=0.0)
    """Weight in ``combine: weighted``."""
    statistic: Literal["mean", "min"] = "mean"
    """``logprob``: the mean token probability, or the least likely token's."""
    phrases: list[str] = Field(default_factory=list)
    """``hedging``: more phrases (regular expressions, case-insensitive) that mark a hedge."""
    samples: int = Field(default=3, ge=2, le=16)
    """``consistency``: answers compared, the attempt's own included."""
    tier: str | None = None
    """``judge``: the tier that grades (default: the cascade's first)."""
    artefact: str | None = None
    """``scorer``: path of the trained scorer; relative paths are read from the config's folder."""

    @model_validator(mode="after")
    def _fields_fit_the_signal(self) -> SignalConfig:
        if self.signal == "scorer" and not self.artefact:
            raise ValueError("signal 'scorer' needs 'artefact' (from steproute train --policy cascade)")
        if self.artefact and self.signal != "scorer":
            raise ValueError(f"'artefact' is for signal 'scorer', not {self.signal!r}")
        return self


class CascadePolicyConfig(StepSettings):
    """Try the cheapest tier first; escalate to the next while confidence signals say no."""

    policy: Literal["cascade"] = "cascade"
    tiers: list[str] | None = None
    """The tiers tried, cheap to strong (default: every tier of the configuration)."""
    signals: list[SignalConfig] = Field(default_factory=lambda: [SignalConfig(signal="hedging")])
    """How an answer is judged; ``artefact:`` below adds a ``scorer``."""
    combine: Literal["all", "any", "weighted"] = "all"
    """``all``: accept when every signal that applies passes; ``any``: when one does;
    ``weighted``: when the weighted mean score reaches ``threshold``."""
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """``combine: weighted``: the score an answer needs."""
    artefact: str | None = None
    """A trained cascade (``steproute train --policy cascade``): its scorer and calibrated threshold;
    or a trained cascade routing (``--policy cascade_routing``): where to start and when to stop
    by value."""
    lam: float | None = Field(default=None, ge=0.0, alias="lambda")
    """With a cascade-routing artefact: the quality given up per unit of cost (default: the
    artefact's calibrated λ)."""
    start: _LinkConfig | None = None
    """A policy that picks the tier the cascade starts from (default: the first of ``tiers``)."""
    speculative: bool = False
    """With ``start``: on async calls, make the first tier's call while ``start`` decides, and
    cancel it when ``start`` picks a stronger tier."""
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    """Batches: escalations in flight at once."""


class BanditPolicyConfig(StepSettings):
    """Learn the step's tier online from ``feedback()`` (Thompson sampling; ``docs/bandit.md``), only between
    ``min_tier`` and ``max_tier``, exploring at most ``explore`` of the calls within ``budget_usd_per_day``."""

    policy: Literal["bandit"] = "bandit"
    tiers: list[str] | None = Field(default=None, min_length=1)
    """The tiers it chooses among, cheap to strong (default: the configuration's, within the step's bounds)."""
    explore: float = Field(default=0.1, ge=0.0, le=1.0)
    """Most share of the step's calls that may go to a tier other than the best posterior mean."""
    costs: dict[str, Annotated[float, Field(ge=0.0)]] | None = None
    """USD one call of each tier costs (for the reward and the budget; default: 0 each)."""
    cost_weight: float = Field(default=0.0, ge=0.0)
    """λ of the reward, quality − λ·cost (cost in USD a call)."""
    budget_usd_per_day: float | None = Field(default=None, gt=0)
    """What exploring (the extra cost of an explored tier over the exploited one) may cost per UTC day, per
    process; needs ``costs``. Default: no limit."""
    prior: str | None = None
    """A tier believed in at the start (``prior_strength`` successes ahead of the others)."""
    prior_strength: float = Field(default=2.0, ge=0.0)
    refresh_seconds: float = Field(default=5.0, gt=0.0)
    """How old the cached state of other replicas may grow before a background read."""
    seed: int | None = None
    """Seed of the draws (reproducible decisions)."""

    @model_validator(mode="after")
    def _budget_needs_costs(self) -> BanditPolicyConfig:
        if self.budget_usd_per_day is not None and self.costs is None:
            raise ValueError("budget_usd_per_day needs costs (USD one call of each tier costs)")
        return self


PolicyConfig = Annotated[
    Union[FixedPolicyConfig, RulesPolicyConfig, ClassifierPolicyConfig, SemanticPolicyConfig, KnnPolicyConfig,
          EnsemblePolicyConfig, IrtPolicyConfig, LLMPolicyConfig, ChainPolicyConfig, CascadePolicyConfig,
          BanditPolicyConfig],
    Field(discriminator="policy"),
]


SHADOW_JUDGES = ("exact", "normalised", "final_number", "json_schema", "tools", "llm")
_IMPURE = ("llm", "cascade")


class ShadowConfig(FrozenConfig):
    """Shadow mode of a step: a candidate decides every call beside the live policy; on a
    sampled share of the calls where it picks another tier, that tier is also called, off the
    hot path, and a judge compares the two answers (see ``docs/shadow.md``).

    Example:
        >>> ShadowConfig(candidate={"tier": "strong"}, sample=0.1, judge="exact").candidate.tier
        'strong'
        >>> ShadowConfig(candidate="strong").candidate.policy
        'fixed'
    """

    candidate: PolicyConfig
    """The candidate: a tier (``{tier: strong}`` or ``strong``) or a pure policy entry
    (``fixed``, ``rules``, ``classifier``, ``semantic``, ``chain`` of those; no ``llm``, no
    ``cascade``: they call models to decide; no ``bandit``: it could never learn there)."""
    sample: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of the disagreeing calls whose candidate tier is also called."""
    judge: Literal["exact", "normalised", "final_number", "json_schema", "tools", "llm"] = "normalised"
    """How the two answers are compared; tool-call turns are always judged by ``tools``."""
    judge_tier: str | None = None
    """``judge: llm``: the tier that answers the judging prompt."""
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    """Shadow calls of this step in flight at once; a call over it is skipped and counted."""
    budget_usd_per_day: float | None = Field(default=None, gt=0)
    """What this step's shadow calls (and their judge) may cost per UTC day, per process; once
    spent, calls are skipped and counted. Default: no limit."""

    @model_validator(mode="before")
    @classmethod
    def _tier_as_candidate(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            value = dict(value)
            candidate = value.get("candidate")
            if isinstance(candidate, str):
                value["candidate"] = {"policy": "fixed", "tier": candidate}
            elif isinstance(candidate, Mapping) and "policy" not in candidate:
                value["candidate"] = {"policy": "fixed", **candidate}
        return value

    @model_validator(mode="after")
    def _pure_candidate(self) -> ShadowConfig:
        links = getattr(self.candidate, "policies", None) or [self.candidate]
        impure = [p.policy for p in links if p.policy in _IMPURE]
        if impure:
            raise ValueError(f"the shadow candidate must decide without calling a model; {impure[0]!r} does")
        if self.candidate.policy == "bandit":
            raise ValueError("a bandit as a shadow candidate cannot learn: it learns from the feedback on calls it "
                             "decided, and a candidate's decisions are never followed (see docs/bandit.md); try it live "
                             "with its guard rails, or on an experiment arm")
        if self.candidate.shadow is not None:
            raise ValueError("a shadow candidate cannot have a shadow of its own")
        if self.judge == "llm" and not self.judge_tier:
            raise ValueError("judge 'llm' needs judge_tier (the tier that judges)")
        return self


for _model in (StepSettings, FixedPolicyConfig, RulesPolicyConfig, LearnedPolicyConfig, ClassifierPolicyConfig,
               SemanticPolicyConfig, IrtPolicyConfig, LLMPolicyConfig, ChainPolicyConfig, CascadePolicyConfig,
               BanditPolicyConfig, ShadowConfig):
    _model.model_rebuild()
