"""Configuration: the pydantic models of ``steproute.yaml`` and their loading.

The policy entries are in :mod:`steproute.policy_config` (re-exported here); the checks
across fields and the error messages in ``steproute._config_checks``.

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from steproute._config_checks import (
    config_keys,
    passthrough_problems,
    problems_from_pydantic,
    raw_reference_problems,
    reference_problems,
)
from steproute._config_read import (
    CYCLE,
    DEEP,
    FROM_ENV,
    EnvResolver,
    EnvStr,
    looks_secret,
    parse_toml,
    parse_yaml,
    read_config_text,
    shown_config_value,
)
from steproute.errors import ConfigError, ConfigProblem
from steproute.experiment_config import ExperimentConfig, experiment_problems
from steproute.policy_config import (
    BanditPolicyConfig,
    CascadePolicyConfig,
    ChainPolicyConfig,
    ClassifierPolicyConfig,
    FixedPolicyConfig,
    FrozenConfig,
    IrtPolicyConfig,
    LLMPolicyConfig,
    PinningConfig,
    PolicyConfig,
    RuleCondition,
    RuleConfig,
    RulesPolicyConfig,
    SemanticPolicyConfig,
    SignalConfig,
    StyleConfig,
)

__all__ = [
    "BanditPolicyConfig",
    "BudgetConfig",
    "CapabilitiesConfig",
    "CascadePolicyConfig",
    "ChainPolicyConfig",
    "ClassifierPolicyConfig",
    "DecisionLogConfig",
    "DeploymentConfig",
    "DispatchConfig",
    "ExperimentConfig",
    "FixedPolicyConfig",
    "GuardsConfig",
    "IrtPolicyConfig",
    "LLMPolicyConfig",
    "LatencyConfig",
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

_LOADING_FROM: ContextVar[str | None] = ContextVar("steproute_config_source", default=None)
"""The file a configuration is being built from, for its errors (set by ``from_dict`` only:
no key of the data itself can set it)."""
_SECRET_KEY = re.compile(r"(^|[_-])(key|secret|password|passwd|credentials?|token)$|secret|password|authorization", re.I)


def _is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name))


class CapabilitiesConfig(FrozenConfig):
    """What a deployment can serve, where LiteLLM's model information is missing or wrong (a
    local model, a fine-tune): each key set here wins over LiteLLM's; unset keys keep LiteLLM's
    answer, and a model LiteLLM does not know counts as capable (see ``docs/configuration.md``)."""

    vision: bool | None = None
    """Takes image content parts."""
    audio: bool | None = None
    """Takes audio content parts (``input_audio``)."""
    tools: bool | None = None
    """Calls tools natively (a ``tool_calling: json`` tier emulates tools for any model)."""
    response_schema: bool | None = None
    """Takes a JSON-schema ``response_format``."""
    max_input_tokens: int | None = Field(default=None, gt=0)
    """The context window: input tokens plus ``max_tokens`` must fit in it."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """The most ``max_tokens`` a call may ask for."""


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
    capabilities: CapabilitiesConfig | None = None
    """What the deployment can serve, overriding LiteLLM's model information (never sent to LiteLLM)."""
    _model_from_env: bool = PrivateAttr(default=False)

    @property
    def model_from_env(self) -> bool:
        """Whether ``model`` came from an environment variable (``${VAR}``): warnings and errors
        then name the deployment's place in the configuration, never the model."""
        return self._model_from_env

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
        self._model_from_env = self.model in FROM_ENV.get()
        extra = self.__pydantic_extra__ or {}
        wrong = passthrough_problems({k: v for k, v in extra.items() if not isinstance(v, EnvStr)})
        if wrong:  # LiteLLM parameters of a known type (timeout, max_tokens, ...): checked here, not at the first call
            raise ValueError("; ".join(wrong))
        for name, value in list(extra.items()):
            extra[name] = _hidden(value, _is_secret_key(name))
        return self

    def litellm_params(self) -> dict[str, Any]:
        """The LiteLLM parameters of this deployment, secrets revealed (for dispatch only)."""
        params: dict[str, Any] = {"model": self.model}
        for name, value in (self.__pydantic_extra__ or {}).items():
            params[name] = _revealed(value)
        return params


def _hidden(value: Any, secret_key: bool) -> Any:
    """A parameter with every string from the environment, or under a credential-like key, held
    as a ``SecretStr``, however deep in mappings and lists (``extra_headers: {Authorization: ...}``)."""
    if isinstance(value, str):
        return SecretStr(str(value)) if secret_key or isinstance(value, EnvStr) else value
    if isinstance(value, Mapping):
        return {k: _hidden(v, secret_key or (isinstance(k, str) and _is_secret_key(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_hidden(v, secret_key) for v in value)
    return value


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_revealed(v) for v in value)
    return value


class TierConfig(FrozenConfig):
    """A tier: an ordered list of deployments (the in-tier fallback order)."""

    models: list[DeploymentConfig] = Field(min_length=1)
    tool_calling: Literal["native", "json"] = "native"
    """How the tier's models call tools. ``native``: the provider's tool calling. ``json``: for
    models without it (small local models), the tools are sent as a JSON-schema response format
    (grammar-constrained by servers such as llama.cpp) and the JSON answer is turned back into
    tool calls, so ``bind_tools``, ``with_structured_output`` and agents work unchanged."""
    style: StyleConfig | None = None
    """This tier's system-prompt addition and output settings (see ``docs/pinning.md``)."""


class DispatchConfig(FrozenConfig):
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


class LatencyConfig(FrozenConfig):
    """How each deployment's observed latency is kept, for steps with ``max_latency_ms`` or a
    run deadline (see :mod:`steproute.latency`)."""

    window: int = Field(default=64, ge=1, le=4096)
    """Observations kept per deployment and per tier (the most recent)."""
    half_life_s: float = Field(default=60.0, gt=0)
    """An observation's weight in the p50/p95 halves every this many seconds."""
    max_age_s: float = Field(default=300.0, gt=0)
    """An observation is forgotten this long after it was made: a tier routed away from for
    being slow is tried again once its observations have aged out."""


_DETECTORS: tuple[Literal["email", "phone", "card", "iban"], ...] = ("email", "phone", "card", "iban")


class PiiGuardConfig(FrozenConfig):
    """Requests that carry personal data go to one tier (an on-premises model, say)."""

    tier: str
    """The tier every request with personal data is sent to."""
    detectors: list[Literal["email", "phone", "card", "iban"]] = Field(
        default_factory=lambda: list(_DETECTORS))
    """Built-in detectors: e-mail addresses, phone numbers, card numbers (Luhn-checked), IBANs
    (checksum-checked)."""
    patterns: dict[str, str] = Field(default_factory=dict)
    """More detectors: name → regular expression."""


class BudgetConfig(FrozenConfig):
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


class GuardsConfig(FrozenConfig):
    """Checks run before any policy: personal data, then the tenant's budget."""

    pii: PiiGuardConfig | None = None
    budgets: BudgetConfig | None = None


class DecisionLogConfig(FrozenConfig):
    """Where a router built from this configuration logs its decisions (see ``docs/configuration.md``).

    Example:
        >>> DecisionLogConfig(path="decisions.jsonl", messages=True).messages
        True
    """

    path: str = Field(min_length=1)
    """The JSON-lines file; a relative path is taken from the configuration file's folder."""
    messages: bool = False
    """Also log each call's messages (and answer), for ``steproute replay`` and training; redacted
    by the PII guard's detectors when ``guards.pii`` is configured."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


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
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    """How observed latency is kept (steps with ``max_latency_ms``, runs with a deadline)."""
    decision_log: DecisionLogConfig | None = None
    """The decision log a router built from this configuration writes (``StepRouter(decision_log=...)`` wins)."""
    experiment: ExperimentConfig | None = None
    """An A/B experiment over some steps (see :mod:`steproute.experiments`)."""

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
                problems.extend(problems_from_pydantic(exc, config_keys(type(self)), type(self)))
                said = {p.path for p in problems}
                problems.extend(p for p in raw_reference_problems(data) if p.path not in said)
                raise ConfigError(problems, source=source) from None
            problems.extend(reference_problems(self))
            problems.extend(experiment_problems(self))
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
