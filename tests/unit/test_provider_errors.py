"""Errors from providers that another try would not fix (bad credentials, a bad request) are
typed, say what the provider said (never a key), and do not move the call to a stronger tier
unless the step's ``fallback_on`` asks for it. Transient errors keep falling back.

LiteLLM's ``mock_response`` raises a provider error given as one; the missing key is real
(LiteLLM's OpenAI client refuses the call before any request; its ``api_base`` is a closed
port on 127.0.0.1, so nothing leaves the machine either way). The same over real HTTP is
tests/integration/test_provider_errors_llmock.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import litellm
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import (
    ConfigError,
    ContextWindowExceeded,
    DispatchError,
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RouterConfig,
    StepRequest,
    StepRouteError,
    StepRouter,
)
from steproute.errors import scrub
from tests.conftest import mock_tiers

KEY = "sk-proj-Zx81Kq0Lw5Vb7Nc3Md9Pe2Rf6Tg4Yh1Uj"
"""Key-shaped: it must never appear in an error, a reason, a span or a log line."""
OTHER_KEY = "sk-live-4f9a2c7e1b3d5f6a8c0e2b4d6f8a1c3e"


def auth_error() -> Exception:
    return litellm.AuthenticationError(message=f"Incorrect API key provided: {KEY}. You can find your key at "
                                               "https://platform.openai.com/account/api-keys.",
                                       llm_provider="openai", model="gpt-4o-mini")


def tiers(fast: Any = None, **fast_params: Any) -> dict[str, Any]:
    t = mock_tiers()
    if fast is not None:
        t["fast"]["models"][0]["mock_response"] = fast
    t["fast"]["models"][0].update(fast_params)
    return t


def ask(step: str = "s") -> StepRequest:
    return StepRequest(step, [{"role": "user", "content": "hi"}])


def traced(config: RouterConfig) -> tuple[StepRouter, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return StepRouter(config, tracer_provider=provider), exporter


def no_secret(*texts: object) -> None:
    for text in texts:
        assert KEY not in str(text) and OTHER_KEY not in str(text), text
        assert "Zx81Kq0Lw5Vb7" not in str(text) and "4f9a2c7e1b3d" not in str(text), text


# -- the error: typed, says what happened, never a key -------------------------------------------


def test_a_deployment_without_an_api_key_is_a_typed_auth_error_and_does_not_escalate(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    t = mock_tiers()
    t["fast"]["models"][0] = {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1"}  # no api_key
    router, exporter = traced(RouterConfig(tiers=t, default="fast"))
    with pytest.raises(ProviderAuthError) as excinfo:
        router.complete(ask("extract"))
    err = excinfo.value
    assert isinstance(err, ProviderError) and isinstance(err, DispatchError) and isinstance(err, StepRouteError)
    assert (err.step, err.tier, err.tiers) == ("extract", "fast", ("fast",))
    assert (err.deployment, err.provider, err.kind) == ("openai/gpt-4o-mini", "openai", "auth")
    assert err.missing_credentials
    assert "Missing credentials" in err.provider_message and "OPENAI_API_KEY" in err.provider_message
    assert [a.model for a in err.attempts] == ["openai/gpt-4o-mini"]  # the stronger tiers were never called
    text = str(err)
    assert "step 'extract'" in text and "tier 'fast'" in text and "openai/gpt-4o-mini" in text
    assert "no credentials" in text and "Missing credentials" in text and err.error_type in text
    assert "InternalServerError" not in text  # what LiteLLM calls it; the cause is a missing key
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert [s.name for s in chats] == ["chat openai/gpt-4o-mini"]


def test_a_401_is_typed_names_the_provider_error_and_never_shows_a_key():
    router = StepRouter(RouterConfig(tiers=tiers(auth_error(), api_key=OTHER_KEY), default="fast"))
    with pytest.raises(ProviderAuthError) as excinfo:
        router.complete(ask())
    err = excinfo.value
    assert (err.deployment, err.error_type, err.status_code, err.missing_credentials) == (
        "openai/gpt-4o-mini", "AuthenticationError", 401, False)
    assert err.tiers == ("fast",) and [a.model for a in err.attempts] == ["openai/gpt-4o-mini"]
    assert err.attempts[0].kind == "auth"
    assert "Incorrect API key provided" in err.provider_message and "[redacted]" in err.provider_message
    assert "AuthenticationError" in str(err) and "Incorrect API key provided" in str(err)
    no_secret(err, repr(err), err.provider_message, err.attempts, err.args)


FORBIDDEN = httpx.Response(403, request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))


@pytest.mark.parametrize(("raised", "cls", "kind", "said"), [
    (litellm.BadRequestError(message="Invalid value for 'temperature'.", model="gpt-4o-mini", llm_provider="openai"),
     ProviderRequestError, "bad_request", "Invalid value for 'temperature'"),
    (litellm.NotFoundError(message="The model `gpt-4o-mini-typo` does not exist", model="gpt-4o-mini",
                           llm_provider="openai"), ProviderRequestError, "bad_request", "does not exist"),
    (litellm.UnsupportedParamsError(message="openai does not support parameters: ['foo']", model="gpt-4o-mini",
                                    llm_provider="openai"), ProviderRequestError, "bad_request",
     "does not support parameters"),
    (litellm.ContextWindowExceededError(message="This model's maximum context length is 128000 tokens.",
                                        model="gpt-4o-mini", llm_provider="openai"), ContextWindowExceeded,
     "context_window", "maximum context length"),
    (litellm.PermissionDeniedError(message="Project does not have access to model", model="gpt-4o-mini",
                                   llm_provider="openai", response=FORBIDDEN), ProviderAuthError, "auth",
     "does not have access"),
])
def test_bad_requests_and_permissions_are_typed_and_do_not_escalate(raised, cls, kind, said):
    router = StepRouter(RouterConfig(tiers=tiers(raised), default="fast"))
    with pytest.raises(cls) as excinfo:
        router.complete(ask())
    err = excinfo.value
    assert type(err) is cls and err.kind == kind and err.tiers == ("fast",)
    assert err.error_type == type(raised).__name__ and err.error_type in str(err)
    assert said in err.provider_message and said in str(err)
    assert not err.provider_message.startswith("litellm.")  # LiteLLM's prefixes are cut


def test_transient_errors_still_fall_back_and_the_error_says_what_the_last_one_was():
    router = StepRouter(RouterConfig(tiers=tiers("litellm.InternalServerError"), default="fast"))
    assert router.complete(ask()).decision.fallback_from == "fast"
    t = tiers("litellm.InternalServerError")
    t["standard"]["models"][0]["mock_response"] = "litellm.RateLimitError"
    with pytest.raises(DispatchError) as excinfo:
        StepRouter(RouterConfig(tiers=t, default="fast")).complete(ask())
    assert not isinstance(excinfo.value, ProviderError)
    assert excinfo.value.tiers == ("fast", "standard")
    assert "last error: RateLimitError" in str(excinfo.value)


def test_async_and_streams_do_not_escalate_either():
    router = StepRouter(RouterConfig(tiers=tiers(auth_error()), default="fast"))
    with pytest.raises(ProviderAuthError):
        asyncio.run(router.acomplete(ask()))
    with pytest.raises(ProviderAuthError):
        list(router.stream(ask()))

    async def astream() -> None:
        async for _ in router.astream(ask()):
            pass

    with pytest.raises(ProviderAuthError):
        asyncio.run(astream())


# -- opting in: it falls back, and says so ---------------------------------------------------------


def test_fallback_on_auth_falls_back_and_says_so_on_the_reason_the_span_and_once_in_the_log(caplog):
    config = RouterConfig(tiers=tiers(auth_error(), api_key=OTHER_KEY), default={"policy": "fixed", "tier": "fast",
                                                                                 "fallback_on": ["auth"]})
    router, exporter = traced(config)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        first = router.complete(ask("extract"))
        router.complete(ask("extract"))
        asyncio.run(router.acomplete(ask("extract")))
    d = first.decision
    assert (d.tier, d.fallback_from) == ("standard", "fast")
    assert "tier 'fast' failed (AuthenticationError), fell back to 'standard'" in d.reason
    assert "openai/gpt-4o-mini" in d.reason and "fallback_on" in d.reason
    (route, *_) = [s for s in exporter.get_finished_spans() if s.name == "route extract"]
    assert route.attributes["steproute.fallback.from"] == "fast"
    assert "AuthenticationError" in route.attributes["steproute.decision.reason"]
    warnings = [r for r in caplog.records if r.name == "steproute" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per (step, tier, error), not per call
    line = warnings[0].getMessage()
    assert "extract" in line and "'fast'" in line and "AuthenticationError" in line and "openai/gpt-4o-mini" in line
    assert "'standard'" in line
    no_secret(line, d.reason, route.attributes["steproute.decision.reason"])


def test_fallback_on_bad_request_covers_context_windows_and_auth_does_not():
    overflow = litellm.ContextWindowExceededError(message="too long", model="gpt-4o-mini", llm_provider="openai")
    only_auth = {"policy": "fixed", "tier": "fast", "fallback_on": ["auth"]}
    with pytest.raises(ContextWindowExceeded):
        StepRouter(RouterConfig(tiers=tiers(overflow), default=only_auth)).complete(ask())
    for allowed in (["bad_request"], ["context_window"]):
        router = StepRouter(RouterConfig(tiers=tiers(overflow), default={**only_auth, "fallback_on": allowed}))
        assert router.complete(ask()).decision.fallback_from == "fast"
    bad = litellm.BadRequestError(message="Invalid value", model="gpt-4o-mini", llm_provider="openai")
    with pytest.raises(ProviderRequestError):
        StepRouter(RouterConfig(tiers=tiers(bad), default={**only_auth, "fallback_on": ["context_window"]})
                   ).complete(ask())


def test_a_transient_fallback_is_logged_once_too(caplog):
    router = StepRouter(RouterConfig(tiers=tiers("litellm.InternalServerError"), default="fast"))
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for _ in range(3):
            router.complete(ask())
    warnings = [r.getMessage() for r in caplog.records if r.name == "steproute"]
    assert len(warnings) == 1 and "InternalServerError" in warnings[0], warnings


def test_fallback_on_rejects_unknown_kinds():
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(tiers=mock_tiers(), default={"policy": "fixed", "tier": "fast", "fallback_on": ["teapot"]})
    assert "default.fallback_on[0]" in str(excinfo.value)


# -- in-tier fallback: the tier's next deployment may answer -----------------------------------------


NO_KEY = {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1"}
"""A deployment without credentials (with OPENAI_API_KEY unset). LiteLLM's Router copies its
deployments' parameters, so a ``mock_response`` exception cannot stand in for a refusal there."""


def test_the_tiers_next_deployment_answers_after_the_first_is_refused(caplog, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    t = mock_tiers()
    t["fast"]["models"] = [NO_KEY, {"model": "openai/gpt-4.1-nano", "mock_response": "answer from fast/1",
                                    "api_key": OTHER_KEY}]
    router = StepRouter(RouterConfig(tiers=t, default="fast"))
    with caplog.at_level(logging.WARNING, logger="steproute"):
        results = [router.complete(ask()) for _ in range(2)]
    result = results[0]
    assert result.completion.content == "answer from fast/1"
    assert (result.decision.tier, result.decision.fallback_from) == ("fast", None)
    assert [(a.model, a.kind) for a in result.completion.failed_attempts] == [("openai/gpt-4o-mini", "auth")]
    warnings = [r.getMessage() for r in caplog.records if r.name == "steproute"]
    assert len(warnings) == 1 and "openai/gpt-4o-mini" in warnings[0] and "Missing credentials" in warnings[0]
    assert "next deployment answered" in warnings[0]
    no_secret(*warnings)


def test_every_deployment_refused_then_cooling_down_is_still_typed(monkeypatch):
    """LiteLLM cools a deployment down after a refusal; the next call fails with its
    'no deployments available' (a rate-limit error). That must not look transient."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    t = mock_tiers()
    t["fast"]["models"] = [NO_KEY, {**NO_KEY, "model": "openai/gpt-4.1-nano"}]
    router = StepRouter(RouterConfig(tiers=t, default="fast", dispatch={"allowed_fails": 0}))
    errors = []
    for _ in range(3):
        with pytest.raises(ProviderAuthError) as excinfo:
            router.complete(ask())
        errors.append(excinfo.value)
        assert excinfo.value.tiers == ("fast",) and excinfo.value.missing_credentials
    assert any("cooling down" in str(e) for e in errors), [str(e) for e in errors]


def test_a_refusal_after_a_transient_fallback_is_typed_and_names_both_tiers():
    t = tiers("litellm.InternalServerError")
    t["standard"]["models"][0]["mock_response"] = auth_error()
    router = StepRouter(RouterConfig(tiers=t, default={"policy": "fixed", "tier": "fast", "tier_fallback": "stronger"}))
    with pytest.raises(ProviderAuthError) as excinfo:
        router.complete(ask())
    err = excinfo.value
    assert (err.tier, err.tiers, err.deployment) == ("fast", ("fast", "standard"), "openai/gpt-4.1-mini")
    assert [a.error_type for a in err.attempts] == ["InternalServerError", "AuthenticationError"]
    assert "tiers 'fast', 'standard'" in str(err)  # and 'advanced' was never tried


def test_a_tier_whose_other_deployment_failed_transiently_still_falls_back(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    t = mock_tiers()
    t["fast"]["models"] = [NO_KEY, {"model": "openai/gpt-4.1-nano", "mock_response": "litellm.InternalServerError",
                                    "api_key": "sk-test"}]
    d = StepRouter(RouterConfig(tiers=t, default="fast")).complete(ask()).decision
    assert (d.tier, d.fallback_from) == ("standard", "fast")
    assert "openai/gpt-4o-mini: OpenAIError (Missing credentials" in d.reason
    assert "openai/gpt-4.1-nano: InternalServerError" in d.reason


# -- cascades -------------------------------------------------------------------------------------


def cascade(**extra: Any) -> dict[str, Any]:
    return {"policy": "cascade", "tiers": ["fast", "standard"], "signals": [{"signal": "hedging"}], **extra}


def test_a_cascade_does_not_escalate_on_a_401_by_default():
    router = StepRouter(RouterConfig(tiers=tiers(auth_error()), default=cascade()))
    with pytest.raises(ProviderAuthError) as excinfo:
        router.complete(ask())
    assert excinfo.value.tiers == ("fast",)
    with pytest.raises(ProviderAuthError):
        list(router.stream(ask()))
    with pytest.raises(ProviderAuthError):
        asyncio.run(router.acomplete(ask()))


def test_a_cascade_escalates_on_a_401_when_asked_and_says_so(caplog):
    config = RouterConfig(tiers=tiers(auth_error(), api_key=OTHER_KEY), default=cascade(fallback_on=["auth"]))
    router, exporter = traced(config)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        d = router.complete(ask()).decision
        router.complete(ask())
    assert (d.tier, d.escalated_from, d.fallback_from) == ("standard", "fast", "fast")
    assert "AuthenticationError" in d.reason and "openai/gpt-4o-mini" in d.reason
    (route, *_) = [s for s in exporter.get_finished_spans() if s.name == "route s"]
    assert route.attributes["steproute.fallback.from"] == "fast"
    warnings = [r.getMessage() for r in caplog.records if r.name == "steproute"]
    assert len(warnings) == 1 and "AuthenticationError" in warnings[0]
    no_secret(d.reason, *warnings)


def test_a_cascade_still_escalates_on_a_transient_error():
    router = StepRouter(RouterConfig(tiers=tiers("litellm.InternalServerError"), default=cascade()))
    d = router.complete(ask()).decision
    assert (d.tier, d.fallback_from) == ("standard", "fast")
    assert "InternalServerError" in d.reason


# -- scrubbing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f"Incorrect API key provided: {KEY}.",
    "Incorrect API key provided: sk-proj-Zx81****************************Yh1Uj.",
    f"Authorization: Bearer {OTHER_KEY}",
    f'{{"error": {{"message": "bad key", "api_key": "{OTHER_KEY}"}}}}',
    "key AIzaSyDq3-4f9a2c7e1b3d5f6a8c0e2b4d6f8a1c3e invalid",
    "x-api-key=abcdef0123456789abcdef0123456789 rejected",
])
def test_scrub_removes_key_shaped_strings(text):
    out = scrub(text)
    assert "[redacted]" in out
    for fragment in ("Zx81", "Yh1Uj", "4f9a2c7e1b3d", "abcdef0123456789"):
        assert fragment not in out, out


def test_scrub_removes_the_deployments_own_secrets_and_keeps_plain_text():
    assert scrub("token hunter2hunter2 was refused", secrets=["hunter2hunter2"]) == "token [redacted] was refused"
    plain = "The model `openai/qwen2.5-coder-0.5b` does not exist (HTTP 404)"
    assert scrub(plain) == plain
