"""Fault paths over real HTTP (LiteLLM → llmock on 127.0.0.1): nothing silent, nothing lost.

- a provider that holds its reply is cut at a deadline steproute always sets (600 s unless
  configured; a stream has its own bound), with a typed error naming step, tier and attempts;
- a call that fails after spending money logs what it spent, the same figure as the budget and
  the span;
- every deployment of a tier that was tried is an attempt, in order, even when the one that
  failed last broke its stream after it opened;
- a message that cannot be encoded (a lone surrogate) is refused before any request, naming
  the field and never the text, and never falls back.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llmock.scenarios import Delay, Fail, Match, Reply, SlowFirstToken, StreamFault
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import steproute._litellm as steproute_litellm
from steproute import DispatchError, Hint, RequestEncodingError, RouterConfig, StepRequest, StepRouter
from steproute.decision_log import JsonlDecisionLog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHEAP, SECOND, STRONG = "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"
DEFAULT_DEADLINE_S = 600.0


def deployment(llmock, model: str, **params: Any) -> dict[str, Any]:
    return {"model": f"openai/{model}", "api_base": llmock.base_url(), "api_key": "k", **params}


def router_for(llmock, fast: list[dict[str, Any]] | None = None, **config: Any) -> StepRouter:
    tiers = {"fast": {"models": fast or [deployment(llmock, CHEAP)]},
             "strong": {"models": [deployment(llmock, STRONG)]}}
    config.setdefault("default", "fast")
    tracer_provider = config.pop("tracer_provider", None)
    decision_log = config.pop("decision_log", None)
    return StepRouter(RouterConfig(tiers=tiers, **config), tracer_provider=tracer_provider,
                      decision_log=decision_log)


def ask(text: str = "What is the weather in Oslo?", tenant: str | None = None) -> StepRequest:
    return StepRequest("extract", [{"role": "user", "content": text}], tenant=tenant)


def on_the_wire(llmock) -> Counter[str]:
    return Counter(r.model for r in llmock.requests)


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, Any]]:
    """The keyword arguments of every ``litellm.completion``/``acompletion`` call (the Router's
    own calls included), recorded on the way to the real function."""
    calls: list[dict[str, Any]] = []
    module = steproute_litellm.litellm()
    real_sync, real_async = module.completion, module.acompletion

    def completion(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_sync(*args, **kwargs)

    async def acompletion(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real_async(*args, **kwargs)

    monkeypatch.setattr(module, "completion", completion)
    monkeypatch.setattr(module, "acompletion", acompletion)
    return calls


# -- 1. a deadline on every call ------------------------------------------------------------------


@pytest.mark.parametrize("deployments", [1, 2], ids=["one deployment", "two deployments (LiteLLM Router)"])
def test_with_no_timeout_configured_every_call_carries_the_default_deadline(llmock, sent, deployments):
    fast = [deployment(llmock, CHEAP), deployment(llmock, SECOND)][:deployments]
    router = router_for(llmock, fast=fast)
    assert router.complete(ask()).completion.content
    assert "".join(c.content for c in router.stream(ask()) if hasattr(c, "content"))
    timeouts = [(bool(c.get("stream")), c.get("timeout")) for c in sent]
    assert timeouts == [(False, DEFAULT_DEADLINE_S), (True, DEFAULT_DEADLINE_S)], timeouts


@pytest.mark.parametrize("deployments", [1, 2], ids=["one deployment", "two deployments (LiteLLM Router)"])
def test_a_stream_timeout_bounds_streams_and_a_deployments_own_timeout_wins(llmock, sent, deployments):
    own = {"timeout": 7.0}
    fast = [deployment(llmock, CHEAP), deployment(llmock, SECOND)][:deployments]
    router = router_for(llmock, fast=fast, dispatch={"timeout": 30, "stream_timeout": 5})
    router.complete(ask())
    list(router.stream(ask()))
    fast = [deployment(llmock, CHEAP, **own), deployment(llmock, SECOND, **own)][:deployments]
    router = router_for(llmock, fast=fast, dispatch={"timeout": 30, "stream_timeout": 5})
    router.complete(ask())
    list(router.stream(ask()))
    timeouts = [(bool(c.get("stream")), c.get("timeout")) for c in sent]
    assert timeouts == [(False, 30.0), (True, 5.0), (False, 7.0), (True, 7.0)], timeouts


def test_a_held_reply_ends_in_a_typed_error_well_before_the_hold_ends(llmock):
    hold = 8.0
    llmock.add(Delay(hold, times=None, match=Match(model=CHEAP)))
    router = router_for(llmock, dispatch={"timeout": 0.5}, default={"policy": "fixed", "tier": "fast",
                                                                     "tier_fallback": "none"})
    warm = StepRequest("extract", [{"role": "user", "content": "hi"}], hint=Hint(tier="strong"))
    assert router.complete(warm).completion.content  # LiteLLM's first call in a process is slow
    started = time.monotonic()
    with pytest.raises(DispatchError) as excinfo:
        router.complete(ask())
    elapsed = time.monotonic() - started
    err = excinfo.value
    assert elapsed < 2.0, elapsed  # one attempt of 0.5 s: no hidden retries by the provider's client
    print(f"held {hold} s, deadline 0.5 s: typed error after {elapsed:.2f} s")
    assert (err.step, err.tier, err.tiers) == ("extract", "fast", ("fast",))
    assert [(a.model, a.error_type) for a in err.attempts] == [(f"openai/{CHEAP}", "Timeout")]
    assert "step 'extract'" in str(err) and "tier 'fast'" in str(err) and "Timeout" in str(err)


def test_a_stream_whose_first_chunk_is_held_ends_at_the_stream_timeout(llmock):
    llmock.add(SlowFirstToken(8.0, times=None, match=Match(model=CHEAP, stream=True)))
    llmock.add(Delay(1.0, times=None, match=Match(model=CHEAP, stream=False)))
    router = router_for(llmock, dispatch={"timeout": 30, "stream_timeout": 0.5},
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"})
    assert router.complete(ask()).completion.content  # a 1 s answer is within the 30 s deadline
    started = time.monotonic()
    with pytest.raises(DispatchError) as excinfo:
        list(router.stream(ask()))
    assert time.monotonic() - started < 3.0
    assert [a.model for a in excinfo.value.attempts] == [f"openai/{CHEAP}"]


# -- 2. a failed call logs the money it spent -------------------------------------------------------


def test_a_cascade_whose_strong_tier_fails_logs_what_the_cheap_attempt_cost(llmock, tmp_path: Path):
    llmock.add(Reply(text="I'm not sure, I cannot tell.", times=None, match=Match(model=CHEAP)))
    llmock.add(Fail(500, times=None, match=Match(model=STRONG)))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log = JsonlDecisionLog(tmp_path / "decisions.jsonl")
    router = router_for(llmock, default={"policy": "cascade", "signals": [{"signal": "hedging"}]},
                        guards={"budgets": {"limits": {"acme": 10.0}}}, dispatch={"timeout": 10},
                        tracer_provider=provider, decision_log=log)
    with pytest.raises(DispatchError):
        router.complete(ask(tenant="acme"))
    log.flush()
    (entry,) = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    spans = exporter.get_finished_spans()
    paid = sum(s.attributes.get("steproute.cost.usd", 0.0) for s in spans if s.name.startswith("chat "))
    (route,) = [s for s in spans if s.name == "route extract"]
    spent, reserved = router.budget_store.usage("acme", router._budget.window()[0])
    assert paid > 0
    assert entry["error"] == "DispatchError"
    assert entry["cost_usd"] == pytest.approx(paid)
    assert route.attributes["steproute.step.cost.usd"] == pytest.approx(paid)
    assert (spent, reserved) == (pytest.approx(paid), 0.0)
    assert on_the_wire(llmock) == Counter({CHEAP: 1, STRONG: 1})  # num_retries 0: no hidden retry either


# -- 3. every deployment tried is an attempt, in order -------------------------------------------


# how a broken stream is named: steproute's StreamTruncated for a stream that ends without a finish
# reason, unless the LiteLLM version (1.110 and later) raises its own APIConnectionError for it first
BROKEN_STREAM = {"disconnect": {"APIConnectionError"}, "truncate": {"StreamTruncated", "APIConnectionError"}}


@pytest.mark.parametrize("fault", ["disconnect", "truncate"])
def test_the_second_deployments_broken_stream_is_an_attempt_after_the_firsts_error(llmock, fault, tmp_path):
    llmock.add(Fail(500, times=None, match=Match(model=CHEAP)))
    llmock.add(StreamFault(fault, after_chunks=2, times=None, match=Match(model=SECOND, stream=True)))
    log = JsonlDecisionLog(tmp_path / "decisions.jsonl")
    router = router_for(llmock, fast=[deployment(llmock, CHEAP), deployment(llmock, SECOND)],
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"},
                        dispatch={"timeout": 10}, decision_log=log)
    with pytest.raises(DispatchError) as excinfo:
        list(router.stream(ask()))
    got = [(a.model, a.error_type) for a in excinfo.value.attempts]
    assert [m for m, _ in got] == [f"openai/{CHEAP}", f"openai/{SECOND}"]
    assert got[0][1] == "InternalServerError" and got[1][1] in BROKEN_STREAM[fault], got
    log.flush()
    (entry,) = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(a["model"], a["error_type"]) for a in entry["failed_attempts"]] == got
    assert on_the_wire(llmock) == Counter({CHEAP: 1, SECOND: 1})


async def test_async_streams_list_every_deployment_too(llmock):
    llmock.add(Fail(500, times=None, match=Match(model=CHEAP)))
    llmock.add(StreamFault("truncate", after_chunks=2, times=None, match=Match(model=SECOND, stream=True)))
    router = router_for(llmock, fast=[deployment(llmock, CHEAP), deployment(llmock, SECOND)],
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"},
                        dispatch={"timeout": 10})
    with pytest.raises(DispatchError) as excinfo:
        async for _ in router.astream(ask()):
            pass
    got = [(a.model, a.error_type) for a in excinfo.value.attempts]
    assert [m for m, _ in got] == [f"openai/{CHEAP}", f"openai/{SECOND}"]
    assert got[0][1] == "InternalServerError" and got[1][1] in BROKEN_STREAM["truncate"], got


def test_a_failed_invoke_logs_every_attempt_in_order(llmock, tmp_path):
    llmock.add(Fail(500, times=None, match=Match(model=CHEAP)))
    llmock.add(Fail(429, times=None, match=Match(model=SECOND)))
    log = JsonlDecisionLog(tmp_path / "decisions.jsonl")
    router = router_for(llmock, fast=[deployment(llmock, CHEAP), deployment(llmock, SECOND)],
                        default={"policy": "fixed", "tier": "fast", "tier_fallback": "none"},
                        dispatch={"timeout": 10}, decision_log=log)
    with pytest.raises(DispatchError) as excinfo:
        router.complete(ask())
    expected = [(f"openai/{CHEAP}", "InternalServerError"), (f"openai/{SECOND}", "RateLimitError")]
    assert [(a.model, a.error_type) for a in excinfo.value.attempts] == expected
    log.flush()
    (entry,) = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(a["model"], a["error_type"]) for a in entry["failed_attempts"]] == expected


# -- 4. text that cannot be sent ---------------------------------------------------------------


def test_a_lone_surrogate_is_refused_before_any_request_naming_the_field(llmock, sent):
    router = router_for(llmock, dispatch={"timeout": 10})
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "secret-ish words \ud800 here"}]}]
    with pytest.raises(RequestEncodingError) as excinfo:
        router.complete(StepRequest("extract", messages))
    err = excinfo.value
    assert isinstance(err, ValueError) and not isinstance(err, DispatchError)
    assert err.field == "messages[1].content[0].text"
    assert "messages[1].content[0].text" in str(err) and "secret-ish" not in str(err)
    assert on_the_wire(llmock) == Counter() and sent == []


ANY_TEXT = st.lists(st.one_of(st.characters(codec=None), st.integers(0xD800, 0xDFFF).map(chr)),
                    max_size=12).map("".join)
"""Any Unicode text, lone surrogates (which no UTF-8 request can carry) included."""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=3))
def test_any_text_is_routed_or_refused_typed_never_an_internal_error_nor_a_fallback(llmock, texts):
    llmock.reset()
    router = router_for(llmock, dispatch={"timeout": 10})
    messages = [{"role": "user", "content": f"q{i}: {text}"} for i, text in enumerate(texts)]
    sendable = all(_encodes(t) for t in texts)
    try:
        routed = router.complete(StepRequest("extract", messages))
    except RequestEncodingError as err:
        assert not sendable
        bad = next(i for i, t in enumerate(texts) if not _encodes(t))
        assert err.field == f"messages[{bad}].content"
        assert all(t not in str(err) for t in texts if len(t) >= 3)
        assert on_the_wire(llmock) == Counter()
    else:
        assert sendable
        assert (routed.decision.tier, routed.decision.fallback_from) == ("fast", None)
        assert on_the_wire(llmock) == Counter({CHEAP: 1})


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
