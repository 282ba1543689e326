"""Latency-aware routing over real HTTP: LiteLLM → llmock, one tier's answers delayed."""

from __future__ import annotations

import time

import pytest
from llmock.scenarios import Delay, Match, SlowFirstToken
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.types import Hint

pytestmark = pytest.mark.integration

MODELS = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini"}
MAX_AGE_S = 1.0
MESSAGES = [{"role": "user", "content": "hi"}]


def router_for(llmock, **extra) -> StepRouter:
    tiers = {name: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "sk-llmock"}]}
             for name, m in MODELS.items()}
    return StepRouter(RouterConfig(tiers=tiers, default="fast", latency={"max_age_s": MAX_AGE_S},
                                   steps={"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 200}}),
                      **extra)


def warmed(router: StepRouter) -> StepRouter:
    """LiteLLM's first call in a process is slow: made on each tier, then let age out."""
    for tier in MODELS:
        router.complete(StepRequest("warm", MESSAGES, hint=Hint(tier=tier)))
    time.sleep(MAX_AGE_S + 0.1)
    return router


def test_the_choice_flips_when_a_tier_slows_down_and_back_when_it_recovers(llmock):
    router = warmed(router_for(llmock))
    llmock.add(Delay(0.3, times=1, match=Match(model="gpt-4o-mini")))

    slow = router.complete(StepRequest("answer", MESSAGES)).decision      # nothing observed: the configured tier
    assert (slow.tier, slow.reason, slow.latency_from) == ("fast", "fixed tier 'fast'", None)

    started = time.perf_counter()
    moved = router.complete(StepRequest("answer", MESSAGES)).decision     # 'fast' took 300 ms: over 200
    quick = time.perf_counter() - started < 0.2                            # 'standard' answered within the budget
    assert moved.tier == "standard" and moved.latency_from == "fast"
    p95 = int(moved.reason.split("p95 ")[1].split(" ms")[0])
    assert 300 <= p95 < 30_000
    assert moved.reason == (f"fixed tier 'fast'; latency: 'fast' p95 {p95} ms > max_latency_ms 200, "
                            f"moved to 'standard' (no observations yet)")
    again = router.complete(StepRequest("answer", MESSAGES)).decision     # 'standard' now observed
    if quick:  # on a loaded machine 'standard' may be over 200 ms too: then the faster one, said so
        assert again.reason == f"fixed tier 'fast'; latency: 'fast' p95 {p95} ms > max_latency_ms 200, moved to 'standard'"
    else:
        assert again.reason.startswith(f"fixed tier 'fast'; latency: no allowed tier fits max_latency_ms 200 "
                                       f"('fast' p95 {p95} ms")

    time.sleep(MAX_AGE_S + 0.1)                                            # the slow observation ages out
    started = time.perf_counter()
    back = router.complete(StepRequest("answer", MESSAGES)).decision      # nothing observed: the configured tier
    recovered = time.perf_counter() - started < 0.2
    assert (back.tier, back.reason, back.latency_from) == ("fast", "fixed tier 'fast'", None)
    still = router.complete(StepRequest("answer", MESSAGES)).decision     # 'fast' recovered: observed within budget
    assert still.tier == ("fast" if recovered else "standard")
    assert still.latency_from == (None if recovered else "fast")
    wire = {"fast": "gpt-4o-mini", "standard": "gpt-4.1-mini"}
    assert [r.model for r in llmock.requests][-5:] == ["gpt-4o-mini", "gpt-4.1-mini", wire[again.tier], "gpt-4o-mini",
                                                       wire[still.tier]]


def test_a_streams_time_to_first_token_is_exported(llmock):
    reader = InMemoryMetricReader()
    router = warmed(router_for(llmock, meter_provider=MeterProvider(metric_readers=[reader])))
    llmock.add(SlowFirstToken(0.2, times=1, match=Match(model="gpt-4o-mini", stream=True)))
    text = "".join(getattr(c, "content", "") for c in router.stream(StepRequest("answer", MESSAGES)))
    assert text
    metrics = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    p95 = {(p.attributes["steproute.tier"], p.attributes["steproute.latency.kind"]): p.value
           for p in metrics["steproute.deployment.latency.p95"].data.data_points}
    assert 0.2 <= p95[("fast", "ttft")] <= p95[("fast", "total")] < 30   # llmock held the first chunk 200 ms
