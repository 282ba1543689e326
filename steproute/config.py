"""Configuration: the pydantic models of ``steproute.yaml`` and their loading.

The file is validated whole, at load time: every problem is collected and raised as one
:class:`~steproute.errors.ConfigError` that gives each problem's path (``steps.plan.tier``)
and what was expected. Values are never echoed back in errors, so a mistyped secret does not
end up in a log. ``${ENV_VAR}`` (or ``${ENV_VAR:-default}``) references are resolved at load;
values that came from the environment, and every parameter whose name looks like a credential
(``api_key``, ``*_secret``, ``*_token``, ...), are held as :class:`pydantic.SecretStr`.

Example:
    >>> cfg = RouterConfig(
    ...     tiers={"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}},
    ...     default="fast",
    ... )
    >>> cfg.tier_names(), cfg.baseline_tier()
    (('fast', 'strong'), 'strong')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from steproute._config_read import (
    CYCLE,
    DEEP,
    FROM_ENV,
    EnvResolver,
    EnvStr,
    config_key,
    format_path,
    looks_secret,
    parse_toml,
    parse_yaml,
    read_config_text,
    shown_config_value,
)
from steproute.errors import ConfigError, ConfigProblem

__all__ = [
    "BudgetConfig",
    "CascadePolicyConfig",
    "ChainPolicyConfig",
    "ClassifierPolicyConfig",
    "DeploymentConfig",
    "DispatchConfig",
    "FixedPolicyConfig",
    "GuardsConfig",
    "LLMPolicyConfig",
    "PiiGuardConfig",
    "PinningConfig",
    "PolicyConfig",
    "RouterConfig",
    "RuleCondition",
    "RuleConfig",
    "RulesPolicyConfig",
    "SemanticPolicyConfig",
    "SignalConfig",
    "StyleConfig",
    "TierConfig",
    "load_config",
]

POLICY_NAMES = ("fixed", "rules", "classifier", "semantic", "llm", "chain", "cascade")

_LOADING_FROM: ContextVar[str | None] = ContextVar("steproute_config_source", default=None)
"""The file a configuration is being built from, for its errors (set by ``from_dict`` only:
no key of the data itself can set it)."""
_SECRET_KEY = re.compile(r"(^|_)(key|secret|password|passwd|credentials?|token)$|secret|password", re.I)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name))


class DeploymentConfig(BaseModel):
    """One LiteLLM deployment of a tier.

    Any LiteLLM ``completion`` parameter may be given besides ``model`` (``api_base``,
    ``api_key``, ``timeout``, ``mock_response``, ...); they are passed through unchanged.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    model: str = Field(min_length=1)
    """LiteLLM model string, ``provider/model`` (e.g. ``openai/gpt-4o-mini``)."""
    input_cost_per_token: float | None = Field(default=None, ge=0)
    """Price override in USD per input token (default: LiteLLM's price map)."""
    output_cost_per_token: float | None = Field(default=None, ge=0)
    """Price override in USD per output token (default: LiteLLM's price map)."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        value = {"model": value} if isinstance(value, str) else value
        model = value.get("model") if isinstance(value, Mapping) else None
        if isinstance(model, str) and "/" not in model and looks_secret(model):
            raise ValueError(f"model: {shown_config_value(model)} looks like a credential, not a LiteLLM model string "
                             "('provider/model'); put keys in 'api_key'")
        return value

    @model_validator(mode="after")
    def _hide_secrets(self) -> DeploymentConfig:
        extra = self.__pydantic_extra__ or {}
        for name, value in list(extra.items()):
            if isinstance(value, str) and (isinstance(value, EnvStr) or _is_secret_key(name)):
                extra[name] = SecretStr(str(value))
        return self

    def litellm_params(self) -> dict[str, Any]:
        """The LiteLLM parameters of this deployment, secrets revealed (for dispatch only)."""
        params: dict[str, Any] = {"model": self.model}
        for name, value in (self.__pydantic_extra__ or {}).items():
            params[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return params


class StyleConfig(_Frozen):
    """What makes answers from different tiers look alike when a conversation moves between them:
    an addition to the system prompt and output settings, per tier and per step."""

    system_prompt: str | None = Field(default=None, min_length=1)
    """Appended to the call's system message (a system message is added when there is none);
    a tier's comes first, then the step's."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Output length cap, unless the call sets its own (the step's wins over the tier's)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature, unless the call sets its own (the step's wins over the tier's)."""


class TierConfig(_Frozen):
    """A tier: an ordered list of deployments (the in-tier fallback order)."""

    models: list[DeploymentConfig] = Field(min_length=1)
    tool_calling: Literal["native", "json"] = "native"
    """How the tier's models call tools. ``native``: the provider's tool calling. ``json``: for
    models without it (small local models), the tools are sent as a JSON-schema response format
    (grammar-constrained by servers such as llama.cpp) and the JSON answer is turned back into
    tool calls, so ``bind_tools``, ``with_structured_output`` and agents work unchanged."""
    style: StyleConfig | None = None
    """This tier's system-prompt addition and output settings (see ``docs/pinning.md``)."""


class DispatchConfig(_Frozen):
    """How calls are dispatched within a tier (carried out by LiteLLM)."""

    num_retries: int = Field(default=0, ge=0, le=10)
    """Retries per deployment on retryable errors (429, 5xx, timeouts)."""
    timeout: float = Field(default=600.0, gt=0)
    """Seconds one attempt may wait for its answer (a deployment's own ``timeout`` wins);
    600, as the OpenAI SDK, where LiteLLM alone would wait up to 6,000. A stream waits this
    long for each chunk, the first included, unless ``stream_timeout`` is set."""
    stream_timeout: float | None = Field(default=None, gt=0)
    """Streams: seconds to wait for the first chunk and between chunks (a deployment's own
    ``stream_timeout``, then its ``timeout``, win); default: ``timeout``."""
    allowed_fails: int = Field(default=1, ge=0)
    """Failures a deployment may have in a minute before it is cooled down."""
    cooldown_time: float = Field(default=30.0, ge=0)
    """Seconds a failing deployment is skipped for."""


class RuleCondition(_Frozen):
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


class RuleConfig(_Frozen):
    """One rule: when its conditions hold, route to its tier."""

    name: str | None = None
    """Name shown in the decision reason (default: ``rules[i]``)."""
    when: RuleCondition = Field(default_factory=RuleCondition)
    tier: str


class PinningConfig(_Frozen):
    """How a conversation is kept on one tier and model (see ``docs/pinning.md``)."""

    mode: Literal["sticky", "upgrade_only", "reevaluate", "off"] | None = None
    """``sticky`` (default), ``upgrade_only``, ``reevaluate`` or ``off``."""
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


class _StepSettings(_Frozen):
    kind: str | None = None
    """Step kind (rewrite, extract, plan, tool_use, synthesis, or any name)."""
    min_tier: str | None = None
    max_tier: str | None = None
    pinning: PinningConfig | None = None
    """This step's pinning (fields given here override the global ``pinning``)."""
    style: StyleConfig | None = None
    """This step's system-prompt addition and output settings, after the tier's."""
    tier_fallback: Literal["next", "stronger", "none"] = "next"
    """When every deployment of the chosen tier fails: try the ``next`` stronger tier (default),
    every ``stronger`` tier in turn, or ``none``. Never above the step's ``max_tier``; a
    ``tier`` hint fixes the tier, so it never falls back."""
    fallback_on: list[Literal["auth", "bad_request", "context_window"]] = Field(default_factory=list)
    """Errors from providers that, besides transient ones (429, 5xx, timeouts, connection
    errors), move the call to a stronger tier (``tier_fallback``) or up a cascade: ``auth``
    (401, 403, no credentials), ``bad_request`` (400, 404, 422; covers ``context_window``),
    ``context_window`` (the request is too long). Default: none, those errors are raised."""


class FixedPolicyConfig(_StepSettings):
    """Always the same tier."""

    policy: Literal["fixed"] = "fixed"
    tier: str


class RulesPolicyConfig(_StepSettings):
    """Ordered rules, first match wins; then ``fallback``, else the router's ``default``."""

    policy: Literal["rules"] = "rules"
    rules: list[RuleConfig] = Field(min_length=1)
    fallback: str | None = None
    """Tier when no rule matches (default: defer to the ``default`` policy)."""


class _LearnedPolicyConfig(_StepSettings):
    artefact: str
    """Path of the trained artefact (``steproute train``); relative paths are read from the
    configuration file's folder."""
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Expected quality a call may give up to use a cheaper tier (default: the artefact's
    calibrated one; ``steproute calibrate`` writes it here)."""
    tiers: list[str] | None = None
    """The router tier of each tier the artefact estimates, cheap to strong (default: the
    configuration's tiers, when there are as many)."""


class ClassifierPolicyConfig(_LearnedPolicyConfig):
    """A trained per-tier quality estimate; the cheapest tier within ``threshold`` of the best."""

    policy: Literal["classifier"] = "classifier"


class SemanticPolicyConfig(_LearnedPolicyConfig):
    """Quality per tier estimated from the nearest reference queries."""

    policy: Literal["semantic"] = "semantic"


class LLMPolicyConfig(_StepSettings):
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
    Union[FixedPolicyConfig, RulesPolicyConfig, ClassifierPolicyConfig, SemanticPolicyConfig, LLMPolicyConfig],
    Field(discriminator="policy"),
]


class ChainPolicyConfig(_StepSettings):
    """Policies asked in order; the first with an opinion decides (rules, then a learned policy)."""

    policy: Literal["chain"] = "chain"
    policies: list[_LinkConfig] = Field(min_length=1)


class SignalConfig(_Frozen):
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


class CascadePolicyConfig(_StepSettings):
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
    """A trained cascade (``steproute train --policy cascade``): its scorer and calibrated threshold."""
    start: _LinkConfig | None = None
    """A policy that picks the tier the cascade starts from (default: the first of ``tiers``)."""
    speculative: bool = False
    """With ``start``: on async calls, make the first tier's call while ``start`` decides, and
    cancel it when ``start`` picks a stronger tier."""
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    """Batches: escalations in flight at once."""


PolicyConfig = Annotated[
    Union[FixedPolicyConfig, RulesPolicyConfig, ClassifierPolicyConfig, SemanticPolicyConfig, LLMPolicyConfig,
          ChainPolicyConfig, CascadePolicyConfig],
    Field(discriminator="policy"),
]


_DETECTORS: tuple[Literal["email", "phone", "card", "iban"], ...] = ("email", "phone", "card", "iban")


class PiiGuardConfig(_Frozen):
    """Requests that carry personal data go to one tier (an on-premises model, say)."""

    tier: str
    """The tier every request with personal data is sent to."""
    detectors: list[Literal["email", "phone", "card", "iban"]] = Field(
        default_factory=lambda: list(_DETECTORS))
    """Built-in detectors: e-mail addresses, phone numbers, card numbers (Luhn-checked), IBANs
    (checksum-checked)."""
    patterns: dict[str, str] = Field(default_factory=dict)
    """More detectors: name → regular expression."""


class BudgetConfig(_Frozen):
    """Per-tenant spend limits, in USD per time window."""

    limits: dict[str, float]
    """Tenant → USD per window; the key ``default`` applies to tenants not listed. A call with
    no tenant is not limited."""
    window_seconds: float = Field(default=86400.0, gt=0)
    """Windows are fixed, counted from the Unix epoch (default: one day)."""
    on_exceed: Literal["refuse", "cap"] = "refuse"
    """``refuse``: raise ``BudgetExceeded`` before any call; ``cap``: send the call to ``cap_tier``."""
    cap_tier: str | None = None
    """With ``on_exceed: cap``: the tier calls are held to once the limit is reached."""

    @model_validator(mode="after")
    def _cap_needs_a_tier(self) -> BudgetConfig:
        if self.on_exceed == "cap" and self.cap_tier is None:
            raise ValueError("on_exceed 'cap' needs cap_tier")
        for tenant, value in self.limits.items():
            if not 0 <= value < float("inf"):  # NaN would switch the budget off
                raise ValueError(f"limits[{shown_config_value(tenant)}] must be a finite number, 0 or more (USD per window)")
        return self


class GuardsConfig(_Frozen):
    """Checks run before any policy: personal data, then the tenant's budget."""

    pii: PiiGuardConfig | None = None
    budgets: BudgetConfig | None = None


def _policy_shorthand(value: Any) -> Any:
    """``"fast"`` means ``{"policy": "fixed", "tier": "fast"}``."""
    if isinstance(value, str):
        return {"policy": "fixed", "tier": value}
    if isinstance(value, Mapping) and "policy" not in value and "tier" in value:
        return {**value, "policy": "fixed"}
    return value


class RouterConfig(BaseModel):
    """The whole router configuration (the content of ``steproute.yaml``).

    Constructing it validates everything; problems raise :class:`~steproute.ConfigError`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: dict[str, TierConfig] = Field(min_length=1)
    """Tiers, ordered cheap to strong."""
    baseline: str | None = None
    """Tier every call's cost is compared against (default: the strongest)."""
    default: PolicyConfig
    """Policy of every step that has none of its own."""
    steps: dict[str, PolicyConfig] = Field(default_factory=dict)
    """Per-step policies, keyed by step name."""
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    pinning: PinningConfig = Field(default_factory=PinningConfig)
    """Conversation pinning for every step (a step's own ``pinning`` overrides fields)."""
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    """Personal-data routing and tenant budgets, checked before the policy."""

    _source: str | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        source = _LOADING_FROM.get()
        problems: list[ConfigProblem] = []
        env_values: set[str] = set()
        data = EnvResolver(problems, env_values).resolve(data, ())
        if problems and any(p.message.startswith(CYCLE) or p.message.startswith(DEEP) for p in problems):
            raise ConfigError(problems, source=source)
        if isinstance(data.get("default"), (str, Mapping)):
            data["default"] = _policy_shorthand(data["default"])
        if isinstance(data.get("steps"), Mapping):
            data["steps"] = {k: _policy_shorthand(v) for k, v in data["steps"].items()}
        token = FROM_ENV.set(frozenset(env_values))
        try:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                problems.extend(_problems_from_pydantic(exc))
                raise ConfigError(problems, source=source) from None
            problems.extend(self._reference_problems())
        finally:
            FROM_ENV.reset(token)
        if problems:
            raise ConfigError(problems, source=source)
        self._source = source

    # -- queries ---------------------------------------------------------------------------

    def tier_names(self) -> tuple[str, ...]:
        """Tier names, cheap to strong."""
        return tuple(self.tiers)

    def baseline_tier(self) -> str:
        return self.baseline or self.tier_names()[-1]

    def step_entry(self, step: str, kind: str | None = None) -> str | None:
        """The ``steps`` key that governs a step: its name, else its kind, else ``None`` (default)."""
        if step in self.steps:
            return step
        if kind is not None and kind in self.steps:
            return kind
        return None

    def policy_for(self, step: str, kind: str | None = None) -> PolicyConfig:
        """The policy of a step: by its name, then by its kind, then ``default``."""
        entry = self.step_entry(step, kind)
        return self.default if entry is None else self.steps[entry]

    def kind_of(self, step: str, kind: str | None = None) -> str | None:
        """The step's kind: the one declared in code, else the one its config entry gives."""
        return kind or (self.steps[step].kind if step in self.steps else None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> RouterConfig:
        if not isinstance(data, Mapping):
            raise ConfigError([ConfigProblem("", "the configuration must be a mapping")], source=source)
        odd = [k for k in data if not isinstance(k, str)]
        if odd:  # YAML allows null, number or list keys; a configuration's keys are names
            raise ConfigError([ConfigProblem("", f"a top-level key is {shown_config_value(k)}: keys must be names (strings)")
                               for k in odd], source=source)
        token = _LOADING_FROM.set(source)
        try:
            return cls(**dict(data))
        finally:
            _LOADING_FROM.reset(token)

    # -- checks across fields ----------------------------------------------------------------

    def _reference_problems(self) -> list[ConfigProblem]:
        names = self.tier_names()
        known = ", ".join(config_key(n) for n in names)
        problems: list[ConfigProblem] = []

        def tier_ref(path: str, value: str | None) -> int | None:
            if value is None:
                return None
            if value not in self.tiers:
                problems.append(ConfigProblem(path, f"unknown tier {shown_config_value(value)} (known: {known})"))
                return None
            return names.index(value)

        tier_ref("baseline", self.baseline)
        if self.guards.pii is not None:
            tier_ref("guards.pii.tier", self.guards.pii.tier)
            for name, pattern in self.guards.pii.patterns.items():
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problems.append(ConfigProblem(f"guards.pii.patterns.{config_key(name)}",
                                                  f"invalid regular expression: {exc}"))
        if self.guards.budgets is not None:
            tier_ref("guards.budgets.cap_tier", self.guards.budgets.cap_tier)
        for prefix, policy in [("default", self.default)] + [(f"steps.{config_key(n)}", p) for n, p in self.steps.items()]:
            low = tier_ref(f"{prefix}.min_tier", policy.min_tier)
            high = tier_ref(f"{prefix}.max_tier", policy.max_tier)
            if low is not None and high is not None and low > high:
                problems.append(ConfigProblem(
                    prefix, f"min_tier {shown_config_value(policy.min_tier)} is above max_tier "
                            f"{shown_config_value(policy.max_tier)}"))
            links = policy.policies if isinstance(policy, ChainPolicyConfig) else [policy]
            for j, link in enumerate(links):
                where = f"{prefix}.policies[{j}]" if isinstance(policy, ChainPolicyConfig) else prefix
                self._link_problems(where, link, tier_ref, problems)
        return problems

    @staticmethod
    def _link_problems(prefix: str, policy: Any, tier_ref: Any, problems: list[ConfigProblem]) -> None:
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
        elif isinstance(policy, _LearnedPolicyConfig):
            for i, tier in enumerate(policy.tiers or ()):
                tier_ref(f"{prefix}.tiers[{i}]", tier)
        elif isinstance(policy, CascadePolicyConfig):
            for i, tier in enumerate(policy.tiers or ()):
                tier_ref(f"{prefix}.tiers[{i}]", tier)
            for i, sig in enumerate(policy.signals):
                tier_ref(f"{prefix}.signals[{i}].tier", sig.tier)
            if policy.start is not None:
                RouterConfig._link_problems(f"{prefix}.start", policy.start, tier_ref, problems)
            if policy.speculative and policy.start is None:
                problems.append(ConfigProblem(f"{prefix}.speculative", "speculative routing needs a 'start' policy"))
        elif isinstance(policy, LLMPolicyConfig):
            tier_ref(f"{prefix}.router_tier", policy.router_tier)
            tier_ref(f"{prefix}.fallback", policy.fallback)
            for tier in policy.choices or {}:
                tier_ref(f"{prefix}.choices.{config_key(tier)}", tier)


# -- loading ---------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> RouterConfig:
    """Read and validate a YAML (``.yaml``/``.yml``) or TOML (``.toml``) configuration file.

    The file must be a regular file of at most 4 MiB; YAML aliases may not form a cycle nor
    expand the document past 100,000 values (see ``steproute._config_read``).

    Example:
        >>> load_config("examples/steproute.yaml").tier_names()  # doctest: +SKIP
        ('fast', 'strong')

    Raises:
        ConfigError: the file is missing, unreadable, malformed or invalid; every problem
            is listed with its path (and line, for syntax errors, aliases and duplicate keys).
    """
    source = str(Path(path))
    text = read_config_text(path)
    data = parse_toml(text, source) if Path(path).suffix.lower() == ".toml" else parse_yaml(text, source)
    if data is None:
        raise ConfigError([ConfigProblem("", "the file is empty")], source=source)
    return RouterConfig.from_dict(data, source=source)


def _problems_from_pydantic(exc: ValidationError) -> list[ConfigProblem]:
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
