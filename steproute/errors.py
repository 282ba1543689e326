"""Errors raised by steproute.

Every error names what went wrong in user terms (a config path, a step, a tier) and never
carries a secret: configuration values are not echoed back, only their paths, and what a
provider said is scrubbed of anything shaped like a key (:func:`scrub`).

A provider's refusal (bad or missing credentials, a bad request, a context window exceeded)
is a :class:`ProviderError`, told apart from transient failures by :func:`provider_failure`:
it does not move a call to another tier unless the step's ``fallback_on`` lists its kind
(:func:`escalates`).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "ConfigProblem",
    "ContextWindowExceeded",
    "DispatchError",
    "LocalModelError",
    "ProviderAuthError",
    "ProviderError",
    "ProviderFailure",
    "ProviderRequestError",
    "RoutingError",
    "StepRouteError",
    "escalates",
    "failure_note",
    "provider_failure",
    "scrub",
    "secret_values",
    "tell_once",
    "tier_error",
]

log = logging.getLogger("steproute")


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
    if _NAME.fullmatch(value) and not _KEY_LIKE.match(value) and scrub(value) == value:
        return repr(value)
    return f"a {len(value)}-character value"


class StepRouteError(Exception):
    """Base class of every error steproute raises on purpose.

    Every one pickles and copies with its fields (a graph run in a process pool, a remote graph
    sends its errors back that way), whatever its constructor takes.

    Example:
        >>> import pickle
        >>> error = pickle.loads(pickle.dumps(BudgetExceeded("plan", "acme", 1.0, 1.5, 0.0)))
        >>> error.tenant, str(error).startswith("step 'plan': tenant 'acme' has spent $1.5")
        ('acme', True)
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuilt, (type(self), self.args, self.__dict__.copy())


def _rebuilt(cls: type[StepRouteError], args: tuple[Any, ...], fields: dict[str, Any]) -> StepRouteError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(fields)
    return error


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

    model: str | None
    """The configured model string of the deployment that was tried; ``None`` when no
    deployment was called (error type ``CooledDown``: every deployment of the tier was cooling
    down after earlier errors)."""
    error_type: str
    """The class name of the provider error (``RateLimitError``, ``Timeout``, ...)."""
    provider: str = ""
    started_ns: int | None = None
    """Start and end of the attempt, in ns since the epoch, when LiteLLM reported them."""
    ended_ns: int | None = None
    kind: str | None = None
    """``auth``, ``bad_request`` or ``context_window`` when the provider refused the call (see
    :class:`ProviderError`); ``None`` for a transient error (429, 5xx, a timeout, ...)."""
    message: str = ""
    """What the provider said, credentials scrubbed (see :func:`scrub`)."""
    cost_usd: float | None = None
    """What the attempt cost, when the deployment answered and was paid (a
    :class:`~steproute.model_output.MalformedResponse`): its usage at its price; ``None`` otherwise."""
    usage: Any = None
    """That paid answer's token usage (a :class:`~steproute.types.Usage`), when known: its ``chat``
    span carries it, so a backend that prices calls itself (Phoenix) prices this one too."""

    @property
    def who(self) -> str:
        """The deployment tried, as a message names it."""
        return self.model if self.model is not None else "no deployment"


class DispatchError(StepRouteError, RuntimeError):
    """Every deployment allowed for a step failed.

    Names the step, the tier, each attempt (model and error type) and what the last error
    said (credentials scrubbed); never the request content or a credential.
    """

    def __init__(self, step: str, tier: str, attempts: Sequence[Attempt], *, tiers: Sequence[str] = (),
                 detail: str | None = None) -> None:
        self.step = step
        self.tier = tier
        """The tier the step was routed to."""
        self.tiers: tuple[str, ...] = tuple(tiers) or (tier,)
        """Every tier tried, in order (more than one after a cross-tier fallback)."""
        self.attempts: tuple[Attempt, ...] = tuple(attempts)
        self.detail = detail
        """The last error's class and message, credentials scrubbed."""
        super().__init__(self._text())

    def _which(self) -> str:
        return f"tier '{self.tier}'" if len(self.tiers) == 1 else "tiers " + ", ".join(f"'{t}'" for t in self.tiers)

    def _tried(self) -> str:
        return ", ".join(f"{a.who} ({a.error_type})" for a in self.attempts) or "none"

    def _text(self) -> str:
        last = f"; last error: {self.detail}" if self.detail else ""
        return f"step '{self.step}': every deployment of {self._which()} failed; attempts: {self._tried()}{last}"

    def across(self, tiers: Sequence[str], attempts: Sequence[Attempt]) -> DispatchError:
        """The same error, for a call that tried ``tiers`` (a cross-tier fallback) and made
        ``attempts`` in all."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.tier, other.tiers, other.attempts = tiers[0], tuple(tiers), tuple(attempts)
        other.args = (other._text(),)
        other.__cause__, other.__traceback__ = self.__cause__, None
        return other


# -- errors from providers -----------------------------------------------------------------


@dataclass(frozen=True)
class ProviderFailure:
    """What a provider said when a call failed, as steproute shows it (see :func:`provider_failure`)."""

    kind: str | None
    """``auth``, ``bad_request``, ``context_window``; ``None``: transient or unknown."""
    error_type: str
    """The provider's (LiteLLM's) error class, e.g. ``AuthenticationError``."""
    message: str
    """The provider's message, cut short, credentials scrubbed."""
    status_code: int | None = None
    missing_credentials: bool = False
    """The deployment has no credentials (LiteLLM or the provider's client refused the call,
    usually before any request was sent)."""


class ProviderError(DispatchError):
    """The provider refused a call for a reason that another try would not fix: bad or missing
    credentials, a request it will not take. Not retried on a stronger tier unless the step's
    ``fallback_on`` lists its :attr:`kind`. (The tier's next deployment is still tried.)

    Names the step, the tier, the deployment (model), the provider's error class and message,
    credentials scrubbed.

    Example:
        >>> try:                                                       # doctest: +SKIP
        ...     router.complete(request)
        ... except ProviderAuthError as err:
        ...     print(err.deployment, err.error_type, err.provider_message)
        openai/gpt-4o-mini AuthenticationError Incorrect API key provided: [redacted].
    """

    kind = ""
    """``auth``, ``bad_request`` or ``context_window``: the ``fallback_on`` value that lets it fall back."""

    def __init__(self, step: str, tier: str, attempts: Sequence[Attempt], *, deployment: str, provider: str,
                 failure: ProviderFailure, tiers: Sequence[str] = ()) -> None:
        self.deployment = deployment
        """The configured model string of the deployment the provider refused."""
        self.provider = provider
        self.error_type = failure.error_type
        """The provider's (LiteLLM's) error class."""
        self.provider_message = failure.message
        """What the provider said, credentials scrubbed."""
        self.status_code = failure.status_code
        self.missing_credentials = failure.missing_credentials
        """``True`` when the deployment has no credentials at all (no ``api_key``, no key variable)."""
        self.kind = failure.kind or type(self).kind
        super().__init__(step, tier, attempts, tiers=tiers, detail=f"{failure.error_type}: {failure.message}")

    def _text(self) -> str:
        where = f"step '{self.step}', {self._which()}"
        who = f"deployment '{self.deployment}' ({self.provider})"
        if self.missing_credentials:
            what = f"{who} has no credentials"
        else:
            what = {"auth": f"the provider refused the credentials of {who}",
                    "context_window": f"the request is too long for {who}"}.get(
                self.kind, f"the provider rejected the request to {who}")
        status = f" (HTTP {self.status_code})" if self.status_code and not self.missing_credentials else ""
        advice = "check its api_key or the provider's key variable; " if self.kind == "auth" else ""
        return (f"{where}: {what}: {self.error_type}{status}: {self.provider_message} — {advice}this error does not "
                f"move the call to another tier unless the step's fallback_on lists '{self.kind}'; "
                f"attempts: {self._tried()}")


class ProviderAuthError(ProviderError):
    """The provider refused the deployment's credentials (401, 403), or the deployment has none
    (refused before any request). ``fallback_on: [auth]`` lets the call fall back."""

    kind = "auth"


class ProviderRequestError(ProviderError):
    """The provider will not take the request: 400 and its kinds (unsupported parameters, a
    content policy), 404 (an unknown model), 422. ``fallback_on: [bad_request]`` lets the call
    fall back."""

    kind = "bad_request"


class ContextWindowExceeded(ProviderRequestError):
    """The request is longer than the deployment's context window. ``fallback_on:
    [context_window]`` (or ``[bad_request]``) lets the call fall back to a stronger tier."""

    kind = "context_window"


FALLBACK_KINDS = ("auth", "bad_request", "context_window")
"""The values of a step's ``fallback_on``."""


def escalates(kind: str | None, fallback_on: Iterable[str]) -> bool:
    """Whether a failure of this kind may move a call to another tier: transient ones
    (``None``) always, the others when ``fallback_on`` lists them (``bad_request`` covers
    ``context_window``).

    Example:
        >>> escalates(None, []), escalates("auth", []), escalates("context_window", ["bad_request"])
        (True, False, True)
    """
    allowed = set(fallback_on)
    return kind is None or kind in allowed or (kind == "context_window" and "bad_request" in allowed)


_SECRET_PARAM = re.compile(r"(^|_)(key|secret|password|passwd|credentials?|token)$|secret|password", re.I)
_KEY_SHAPES = (
    # prefixed keys: OpenAI/Anthropic sk-..., GitHub, Slack, AWS, Google (masked ones too)
    re.compile(r"(?<![\w-])(?:(?:sk|rk|pk)[-_]|gh[pousr]_|xox[abpr]-|AKIA|AIza)[\w*+/=-]{8,}"),
    # the value after a credential word: "Bearer X", "api_key": "X", x-api-key=X, token: X
    re.compile(r"(?i)((?:bearer|basic)\s+|(?:api[-_ ]?key|access[-_]?key|token|secret|password)"
               r"[\"']?\s*[:=]\s*[\"']?)(?!\[redacted\])[^\s\"',;}]{6,}"),
    # a long opaque run of letters and digits
    re.compile(r"(?<![\w-])(?=[A-Za-z0-9+/]*\d)(?=[A-Za-z0-9+/]*[A-Za-z])[A-Za-z0-9+/]{20,}={0,2}(?![\w-])"),
)
_REDACTED = "[redacted]"


def secret_values(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The values of a deployment's parameters whose names look like credentials (``api_key``,
    ``*_token``, ...), for :func:`scrub`."""
    return tuple(v for k, v in params.items() if isinstance(v, str) and len(v) >= 6 and _SECRET_PARAM.search(k))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and everything shaped like a key replaced by ``[redacted]``.

    Example:
        >>> scrub("Incorrect API key provided: sk-proj-abc123def456ghi789")
        'Incorrect API key provided: [redacted]'
    """
    for secret in sorted((s for s in secrets if len(s) >= 6), key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    text = _KEY_SHAPES[0].sub(_REDACTED, text)
    text = _KEY_SHAPES[1].sub(lambda m: m.group(1) + _REDACTED, text)
    return _KEY_SHAPES[2].sub(_REDACTED, text)


_NO_CREDENTIALS = re.compile(r"(?i)missing (?:\w+ ){0,2}(?:credentials|api[ _-]?key)|api[ _-]?key (?:client option )?"
                             r"must be set|no (?:api[ _-]?)?key is set|api[ _-]?key (?:is )?(?:not set|required)")
_CONTEXT = re.compile(r"(?i)context (?:length|window)|maximum context|too many tokens|prompt is too long")
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*|\w+Error:\s*|\w+Exception\s*-\s*)+")
_AUTH = {"AuthenticationError", "PermissionDeniedError"}
_REQUEST = {"BadRequestError", "NotFoundError", "UnprocessableEntityError", "UnsupportedParamsError",
            "InvalidRequestError"}
_MISNAMED = {"InternalServerError", "APIError", "APIConnectionError"}
MESSAGE_LIMIT = 300


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what LiteLLM wrapped (mid-stream), and its causes."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(seen) < 6 and all(current is not s for s in seen):
        seen.append(current)
        inner = getattr(current, "original_exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return seen


def _message(error: BaseException, secrets: Iterable[str]) -> str:
    text = str(getattr(error, "message", None) or error or type(error).__name__)
    text = text.split("\nTraceback", 1)[0]
    for tail in ("Received Model Group=", " LiteLLM Retried:"):
        text = text.split(tail, 1)[0]
    text = " ".join(_LITELLM_PREFIX.sub("", text.strip()).split()).rstrip(". ") + "."
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT].rsplit(" ", 1)[0] + " …"
    return scrub(text, secrets)


def provider_failure(error: object, secrets: Iterable[str] = ()) -> ProviderFailure:
    """What a failed LiteLLM call says, sorted into a kind (see :class:`ProviderFailure`).

    Example:
        >>> import litellm                                                     # doctest: +SKIP
        >>> provider_failure(litellm.AuthenticationError("bad key", "openai", "gpt-4o")).kind  # doctest: +SKIP
        'auth'
    """
    if not isinstance(error, BaseException):
        return ProviderFailure(None, type(error).__name__, "")
    secrets = tuple(secrets)
    chain = _chain(error)
    while type(error).__name__ == "MidStreamFallbackError" and len(chain) > 1:
        chain = chain[1:]
        error = chain[0]
    missing = [cause for cause in chain if _NO_CREDENTIALS.search(str(cause))]
    if missing:  # no key at all: LiteLLM calls some of these a 500 (InternalServerError)
        named = missing[-1] if type(error).__name__ in _MISNAMED else error
        return ProviderFailure("auth", type(named).__name__, _message(missing[-1], secrets), None, True)
    names = {c.__name__ for c in type(error).__mro__}
    status = getattr(error, "status_code", None)
    status = status if isinstance(status, int) else None
    message = _message(error, secrets)
    kind: str | None = None
    if "ContextWindowExceededError" in names:
        kind = "context_window"
    elif names & _AUTH or status in (401, 403):
        kind = "auth"
    elif names & _REQUEST or status in (400, 404, 422):
        kind = "context_window" if _CONTEXT.search(message) else "bad_request"
    return ProviderFailure(kind, type(error).__name__, message, status)


_ERRORS: dict[str, type[ProviderError]] = {"auth": ProviderAuthError, "bad_request": ProviderRequestError,
                                           "context_window": ContextWindowExceeded}


def tier_error(step: str, tier: str, attempts: Sequence[Attempt], failure: ProviderFailure) -> DispatchError:
    """The error of a tier whose every deployment failed, ``failure`` being the last one: a
    :class:`ProviderError` when every attempt was refused, else a :class:`DispatchError`."""
    if failure.kind is not None and attempts and all(a.kind for a in attempts):
        last = attempts[-1]
        return _ERRORS[failure.kind](step, tier, attempts, deployment=last.who, provider=last.provider,
                                     failure=failure)
    return DispatchError(step, tier, attempts, detail=f"{failure.error_type}: {failure.message}")


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


# -- telling: what a fallback was for, once ---------------------------------------------------

_TOLD: weakref.WeakKeyDictionary[object, set[tuple[str, ...]]] = weakref.WeakKeyDictionary()
_TOLD_LOCK = threading.Lock()


def failure_note(attempts: Sequence[Attempt], limit: int = 120) -> str:
    """Which deployment failed with what, for a decision's reason and the log.

    Example:
        >>> failure_note([Attempt("openai/gpt-4o-mini", "AuthenticationError", "openai", kind="auth",
        ...                       message="Incorrect API key provided: [redacted].")])
        'openai/gpt-4o-mini: AuthenticationError (Incorrect API key provided: [redacted].)'
    """
    notes = []
    for a in attempts:
        said = a.message if len(a.message) <= limit else a.message[:limit].rsplit(" ", 1)[0] + " …"
        notes.append(f"{a.who}: {a.error_type}" + (f" ({said})" if said else ""))
    return "; ".join(dict.fromkeys(notes))


def tell_once(owner: object, step: str, tier: str, attempts: Sequence[Attempt], outcome: str) -> None:
    """One warning on the ``steproute`` logger per (``owner``, step, tier, error class,
    ``outcome``): a fallback happened, and why. Later calls that fail the same way are on the
    decision and the span only.

    Example:
        >>> tell_once(router, "extract", "fast", error.attempts, "fell back to tier 'standard'")  # doctest: +SKIP
    """
    keys = {(step, tier, a.error_type, outcome) for a in attempts}
    with _TOLD_LOCK:
        told = _TOLD.setdefault(owner, set())
        new = keys - told
        told |= keys
    if new:
        log.warning("step %r, tier %r: %s; %s (logged once per step, tier and error)", step, tier,
                    failure_note(attempts), outcome)


def say_once(owner: object, key: tuple[str, ...], message: str) -> None:
    """``message`` as one warning on the ``steproute`` logger per (``owner``, ``key``): something
    the router did other than what the configuration says, told once; later calls carry it on
    their decision's reason and span only.

    Example:
        >>> say_once(router, ("logprobs", "fast"), "tier 'fast' does not take logprobs")  # doctest: +SKIP
    """
    with _TOLD_LOCK:
        told = _TOLD.setdefault(owner, set())
        if key in told:
            return
        told.add(key)
    log.warning("%s (logged once)", message)
