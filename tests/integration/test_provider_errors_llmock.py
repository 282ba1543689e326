"""Provider refusals over real HTTP (LiteLLM → llmock on 127.0.0.1): a missing key, 401, 403,
400, 404 and a context overflow are typed errors that name the deployment and what the
provider said (never a key), and no request reaches the stronger tier unless the step's
``fallback_on`` asks for it. Requests are counted on the wire, per model, in llmock's journal.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from llmock.scenarios import Fail, Match
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import (
    ContextWindowExceeded,
    ProviderAuthError,
    ProviderRequestError,
    RouterConfig,
    StepRequest,
    StepRouter,
    step,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHEAP, SECOND, STRONG = "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"
KEY = "sk-proj-Zx81Kq0Lw5Vb7Nc3Md9Pe2Rf6Tg4Yh1Uj"
"""Key-shaped, in the provider's message: it must not come back in any error, reason or log line."""
OWN_KEY = "sk-live-4f9a2c7e1b3d5f6a8c0e2b4d6f8a1c3e"
"""The deployment's own key (its api_key parameter)."""


def deployment(llmock, model: str, **params: Any) -> dict[str, Any]:
    return {"model": f"openai/{model}", "api_base": llmock.base_url(), "api_key": OWN_KEY, **params}


def router_for(llmock, *, fast: list[dict[str, Any]] | None = None, policy: Any = "fast",
               tracer_provider: TracerProvider | None = None) -> StepRouter:
    tiers = {"fast": {"models": fast or [deployment(llmock, CHEAP)]},
             "strong": {"models": [deployment(llmock, STRONG)]}}
    return StepRouter(RouterConfig(tiers=tiers, default=policy, dispatch={"timeout": 10}),
                      tracer_provider=tracer_provider)


def on_the_wire(llmock) -> Counter[str]:
    return Counter(r.model for r in llmock.requests)


def ask() -> StepRequest:
    return StepRequest("extract", [{"role": "user", "content": "What is the weather in Oslo?"}])


def no_secret(*texts: object) -> None:
    for text in texts:
        for fragment in ("Zx81Kq0Lw5Vb7", "Yh1Uj", "4f9a2c7e1b3d"):
            assert fragment not in str(text), text


def test_a_deployment_without_a_key_fails_typed_before_any_request(llmock, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the llmock fixture sets a dummy one
    fast = [{"model": f"openai/{CHEAP}", "api_base": llmock.base_url()}]  # no api_key
    router = router_for(llmock, fast=fast)
    with pytest.raises(ProviderAuthError) as excinfo:
        router.chat_model().invoke("What is the weather in Oslo?", config={"metadata": step("extract")})
    err = excinfo.value
    assert (err.step, err.tier, err.tiers, err.deployment) == ("extract", "fast", ("fast",), f"openai/{CHEAP}")
    assert err.missing_credentials and "Missing credentials" in err.provider_message
    assert "has no credentials" in str(err) and f"openai/{CHEAP}" in str(err)
    assert on_the_wire(llmock) == Counter()  # nothing was sent, to either tier


def test_a_401_is_typed_and_the_strong_tier_gets_no_request(llmock):
    llmock.add(Fail(401, message=f"Incorrect API key provided: {KEY}.", code="invalid_api_key", times=None,
                    match=Match(model=CHEAP)))
    router = router_for(llmock)
    with pytest.raises(ProviderAuthError) as excinfo:
        router.complete(ask())
    err = excinfo.value
    assert (err.deployment, err.error_type, err.status_code) == (f"openai/{CHEAP}", "AuthenticationError", 401)
    assert "Incorrect API key provided: [redacted]" in str(err)
    no_secret(err, repr(err), err.attempts)
    with pytest.raises(ProviderAuthError):
        list(router.stream(ask()))
    assert on_the_wire(llmock) == Counter({CHEAP: 2})


@pytest.mark.parametrize(("status", "code", "message", "cls"), [
    (403, None, "Project does not have access to this model.", ProviderAuthError),
    (400, "invalid_value", "Invalid value for 'temperature'.", ProviderRequestError),
    (404, "model_not_found", f"The model `{CHEAP}` does not exist or you do not have access to it.",
     ProviderRequestError),
    (400, "context_length_exceeded", "This model's maximum context length was exceeded.", ContextWindowExceeded),
])
def test_refusals_are_typed_and_do_not_escalate(llmock, status, code, message, cls):
    llmock.add(Fail(status, message=message, code=code, times=None, match=Match(model=CHEAP)))
    with pytest.raises(cls) as excinfo:
        router_for(llmock).complete(ask())
    err = excinfo.value
    assert type(err) is cls and err.status_code == status and err.tiers == ("fast",)
    assert message.rstrip(".") in err.provider_message and f"HTTP {status}" in str(err)
    assert on_the_wire(llmock) == Counter({CHEAP: 1})


def test_the_tiers_second_deployment_answers_after_the_firsts_401(llmock, caplog):
    llmock.add(Fail(401, message=f"Incorrect API key provided: {KEY}.", times=None, match=Match(model=CHEAP)))
    router = router_for(llmock, fast=[deployment(llmock, CHEAP), deployment(llmock, SECOND)])
    with caplog.at_level(logging.WARNING, logger="steproute"):
        result = router.complete(ask())
    assert (result.decision.tier, result.decision.fallback_from) == ("fast", None)
    assert result.completion.model == f"openai/{SECOND}"
    assert [(a.model, a.error_type) for a in result.completion.failed_attempts] == [
        (f"openai/{CHEAP}", "AuthenticationError")]
    assert on_the_wire(llmock) == Counter({CHEAP: 1, SECOND: 1})
    (line,) = [r.getMessage() for r in caplog.records if r.name == "steproute"]
    assert f"openai/{CHEAP}" in line and "AuthenticationError" in line
    no_secret(line)


def test_opting_in_falls_back_and_says_so_on_the_reason_the_span_and_once_in_the_log(llmock, caplog):
    llmock.add(Fail(401, message=f"Incorrect API key provided: {KEY}.", times=None, match=Match(model=CHEAP)))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = router_for(llmock, policy={"policy": "fixed", "tier": "fast", "fallback_on": ["auth"]},
                        tracer_provider=provider)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        decisions = [router.complete(ask()).decision for _ in range(2)]
        message = router.chat_model().invoke("Weather in Oslo?", config={"metadata": step("extract")})
    assert message.response_metadata["model_name"] == f"openai/{STRONG}"
    d = decisions[0]
    assert (d.tier, d.fallback_from) == ("strong", "fast")
    assert f"openai/{CHEAP}: AuthenticationError" in d.reason and "fallback_on lists 'auth'" in d.reason
    routes = [s for s in exporter.get_finished_spans() if s.name == "route extract"]
    assert len(routes) == 3
    assert all(s.attributes["steproute.fallback.from"] == "fast" for s in routes)
    assert all("AuthenticationError" in s.attributes["steproute.decision.reason"] for s in routes)
    chats = [(s.attributes["gen_ai.request.model"], s.attributes.get("error.type"))
             for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert chats.count((f"openai/{CHEAP}", "AuthenticationError")) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "steproute"]
    assert len(lines) == 1 and "fell back to tier 'strong'" in lines[0], lines
    no_secret(d.reason, *lines, *(s.attributes["steproute.decision.reason"] for s in routes))
    assert on_the_wire(llmock) == Counter({CHEAP: 3, STRONG: 3})


def test_a_cascade_does_not_escalate_on_a_401_by_default(llmock):
    llmock.add(Fail(401, message="Incorrect API key provided.", times=None, match=Match(model=CHEAP)))
    cascade = {"policy": "cascade", "signals": [{"signal": "hedging"}]}
    with pytest.raises(ProviderAuthError) as excinfo:
        router_for(llmock, policy=cascade).chat_model().invoke(
            "Weather in Oslo?", config={"metadata": step("extract")})
    assert excinfo.value.tiers == ("fast",)
    assert on_the_wire(llmock) == Counter({CHEAP: 1})
    routed = router_for(llmock, policy={**cascade, "fallback_on": ["auth"]}).complete(ask())
    assert (routed.decision.tier, routed.decision.escalated_from) == ("strong", "fast")
    assert on_the_wire(llmock) == Counter({CHEAP: 2, STRONG: 1})
