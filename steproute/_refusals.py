"""A tier's failed LiteLLM calls as steproute's attempts and errors.

Kept beside :mod:`steproute.errors` (which holds the error types) so that module stays small:
:class:`Refusals` remembers what each deployment of a tier was last refused for, and tells a
tier that is cooling down (LiteLLM's "no deployments available") from one that was called.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from steproute.errors import Attempt, DispatchError, ProviderFailure, provider_failure, tier_error

__all__ = ["COOLED_DOWN", "Refusals"]

COOLED_DOWN = "CooledDown"
"""The error type of an attempt that called no deployment: every deployment of the tier was
cooling down after earlier errors (LiteLLM's cooldowns)."""


class Refusals:
    """Turns a tier's failed LiteLLM calls into attempts and errors, and keeps what each of its
    deployments was last refused for. LiteLLM cools a failing deployment down; once every
    deployment of the tier is cooling down, it fails calls with "no deployments available"
    (``RouterRateLimitError``) without calling any. :meth:`error` says so: the refusal that
    cooled them down when every one was refused (bad credentials, ...), else one attempt of
    type ``CooledDown`` that names no deployment (:meth:`cooled_down`), which falls back like
    a transient failure.

    Example:
        >>> refusals = Refusals(1, secrets=("sk-test-1234",))
        >>> refusals.error("s", "fast", (), ValueError("bad"), "openai/gpt-4o-mini", "openai").attempts[0].error_type
        'ValueError'
        >>> refusals.cooled_down("s", "fast").attempts[0].model is None
        True
    """

    def __init__(self, deployments: int, secrets: Sequence[str] = ()) -> None:
        self._deployments = deployments
        self.secrets = tuple(secrets)
        self._last: dict[str, tuple[Attempt, ProviderFailure]] = {}
        """Deployment id → its latest refusal (the most recent last)."""
        self._lock = threading.Lock()

    def attempt(self, deployment_id: str | None, model: str, provider: str, error: object,
                started_ns: int | None = None, ended_ns: int | None = None) -> Attempt:
        """One failed attempt of a deployment (``deployment_id``: ``None`` when LiteLLM did not say which)."""
        said = provider_failure(error, self.secrets)
        attempt = Attempt(model, said.error_type, provider, started_ns, ended_ns, said.kind, said.message)
        if deployment_id is not None:
            with self._lock:
                self._last.pop(deployment_id, None)
                if said.kind is not None:
                    self._last[deployment_id] = (attempt, said)
        return attempt

    def cooled_down(self, step: str, tier: str) -> DispatchError:
        """The error of a call that found every deployment of ``tier`` cooling down and called
        none: the refusal that cooled them down when every one was refused, else one
        ``CooledDown`` attempt naming no deployment."""
        with self._lock:
            refused = list(self._last.values())
        if refused and len(refused) == self._deployments:
            note = " (every deployment of the tier is cooling down after this error; none was called)"
            attempts = tuple(Attempt(a.model, a.error_type, a.provider, None, None, a.kind, a.message + note)
                             for a, _ in refused)
            last = refused[-1][1]
            said = ProviderFailure(last.kind, last.error_type, attempts[-1].message, last.status_code,
                                   last.missing_credentials)
            return tier_error(step, tier, attempts, said)
        message = f"every deployment of tier {tier!r} is cooling down after earlier errors; none was called."
        return tier_error(step, tier, (Attempt(None, COOLED_DOWN, message=message),),
                          ProviderFailure(None, COOLED_DOWN, message))

    def error(self, step: str, tier: str, attempts: Sequence[Attempt], exc: BaseException, model: str,
              provider: str) -> DispatchError:
        """The error of a tier whose call raised ``exc`` after ``attempts`` (``model``/``provider``:
        the tier's first deployment, named when LiteLLM failed before any attempt)."""
        said = provider_failure(exc, self.secrets)
        if said.error_type == "RouterRateLimitError":  # LiteLLM called none: every deployment cools down
            with self._lock:
                every_one_refused = len(self._last) == self._deployments
            if every_one_refused or not attempts:
                return self.cooled_down(step, tier)
        if not attempts:  # failed before LiteLLM's hook ran (bad parameters, ...)
            attempts = (Attempt(model, said.error_type, provider, kind=said.kind, message=said.message),)
        return tier_error(step, tier, attempts, said)
