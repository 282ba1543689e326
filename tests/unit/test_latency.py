"""Latency-aware routing: the decaying window, the pure choice, and the check on the decision path
(steproute/latency.py, fed by steproute/_latency_feed.py around each tier's client)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import ConfigError, RouterConfig, StepRequest, StepRouter
from steproute.latency import DEADLINE_KEY, TOTAL, TTFT, LatencyBook, LatencyWindow, budget_of, choose_tier
from steproute.testing import FunctionTransport, TierCall
from steproute.types import Hint

TIERS = {"fast": {"models": ["openai/gpt-4o-mini"]}, "standard": {"models": ["openai/gpt-4.1-mini"]},
         "strong": {"models": ["openai/gpt-4o"]}}
MESSAGES = [{"role": "user", "content": "hi"}]
LIMIT = "max_latency_ms 1000"


# -- the window: sliding, decaying, bounded ----------------------------------------------------


def test_window_p50_p95_of_equal_weights():
    w = LatencyWindow(size=100, half_life_s=60, max_age_s=300)
    for ms in range(1, 101):
        w.add(ms, now=10.0)
    assert w.quantiles(now=10.0) == (50.0, 95.0)


def test_window_keeps_only_the_last_size_observations():
    w = LatencyWindow(size=3, half_life_s=1e9, max_age_s=1e9)
    for ms in (5000, 5000, 5000, 10, 20, 30):
        w.add(ms, now=0.0)
    assert w.quantiles(now=0.0) == (20.0, 30.0)
    assert w.count(now=0.0) == 3


def test_window_newer_observations_weigh_more():
    """Ten slow calls six half-lives ago weigh less than one fast call now (unweighted, the
    median would be slow: ten of eleven)."""
    w = LatencyWindow(size=64, half_life_s=1.0, max_age_s=1000)
    for _ in range(10):
        w.add(2000, now=0.0)
    w.add(100, now=6.0)
    assert w.quantiles(now=6.0) == (100.0, 2000.0)     # the old ones weigh 10 * 2^-6: 13.5%, in the p95
    w.add(100, now=10.0)
    assert w.quantiles(now=10.0) == (100.0, 100.0)     # four half-lives on: under 1%


def test_window_forgets_observations_after_max_age():
    w = LatencyWindow(size=64, half_life_s=60, max_age_s=5)
    w.add(300, now=0.0)
    w.add(100, now=3.0)
    assert w.quantiles(now=4.0) == (100.0, 300.0)
    assert w.quantiles(now=5.5) == (100.0, 100.0)      # the first aged out: the cache did not hold it
    assert w.quantiles(now=8.0) is None
    w.add(50, now=9.0)                                   # an add after emptiness is seen
    assert w.quantiles(now=9.0) == (50.0, 50.0)


def test_book_pools_a_tiers_deployments_and_ignores_unknown_tiers():
    book = LatencyBook(("fast", "strong"))
    book.observe("fast", "a", TOTAL, 0.1, now=0.0)
    book.observe("fast", "b", TOTAL, 0.3, now=0.0)
    book.observe("fast", "a", TTFT, 0.05, now=0.0)
    book.observe("nowhere", "a", TOTAL, 9.0, now=0.0)
    book.observe("fast", "a", TOTAL, float("nan"), now=0.0)
    assert book.quantiles("fast", now=0.0) == (100.0, 300.0)
    assert book.quantiles("fast", now=0.0, kind=TTFT) == (50.0, 50.0)
    assert book.quantiles("strong", now=0.0) is None
    stats = {(s.model, s.kind): (s.p95_ms, s.count) for s in book.stats(now=0.0)}
    assert stats == {("a", TOTAL): (100.0, 1), ("b", TOTAL): (300.0, 1), ("a", TTFT): (50.0, 1)}


def test_book_bounds_its_deployment_windows():
    from steproute import latency

    book = LatencyBook(("fast",))
    for i in range(latency.MAX_DEPLOYMENT_WINDOWS + 50):
        book.observe("fast", f"m{i}", TOTAL, 0.01, now=0.0)
    assert len(book.stats(now=0.0)) == latency.MAX_DEPLOYMENT_WINDOWS
    assert book.quantiles("fast", now=0.0) == (10.0, 10.0)   # the tier still counts every call


# -- the budget and the pure choice -------------------------------------------------------------


def test_budget_is_the_least_of_max_latency_and_the_deadline():
    assert budget_of(None, None, 0.0) is None
    assert budget_of(1000, None, 0.0) == (1000, LIMIT)
    assert budget_of(1000, 102.0, 100.0) == (1000, LIMIT)
    assert budget_of(1000, 100.25, 100.0) == (250.0, "the run's deadline (250 ms left)")
    assert budget_of(None, 99.0, 100.0) == (-1000.0, "the run's deadline (0 ms left)")
    for bad in ("soon", True, float("nan"), float("inf"), [1]):
        with pytest.raises(ValueError):
            budget_of(1000, bad, 0.0)


def test_choice_keeps_the_decided_tier_when_it_fits_or_is_not_observed():
    tiers = ("fast", "standard", "strong")
    assert choose_tier(tiers, {"fast": 900.0, "standard": 100.0, "strong": 50.0}, 1000, LIMIT, judged=False) is None
    assert choose_tier(tiers, {"fast": None, "standard": None, "strong": None}, 1000, LIMIT, judged=False) is None
    assert choose_tier(tiers, {"fast": 1000.0}, 1000, LIMIT, judged=False) is None   # p95 at the budget fits


def test_choice_moves_to_the_cheapest_tier_that_fits():
    tiers = ("fast", "standard", "strong")
    assert choose_tier(tiers, {"fast": 2300.0, "standard": 1500.0, "strong": 800.0}, 1000, LIMIT, judged=False) == (
        "strong", "latency: 'fast' p95 2300 ms, 'standard' p95 1500 ms > max_latency_ms 1000, moved to 'strong'")
    assert choose_tier(tiers, {"fast": 2300.0, "standard": 700.0, "strong": 100.0}, 1000, LIMIT, judged=False) == (
        "standard", "latency: 'fast' p95 2300 ms > max_latency_ms 1000, moved to 'standard'")
    assert choose_tier(tiers, {"fast": 2300.0, "standard": None, "strong": 100.0}, 1000, LIMIT, judged=False) == (
        "standard", "latency: 'fast' p95 2300 ms > max_latency_ms 1000, moved to 'standard' (no observations yet)")


def test_choice_takes_the_fastest_when_none_fits_and_says_so():
    tiers = ("fast", "standard", "strong")
    assert choose_tier(tiers, {"fast": 2300.0, "standard": 1200.0, "strong": 1500.0}, 1000, LIMIT, judged=False) == (
        "standard", "latency: no allowed tier fits max_latency_ms 1000 ('fast' p95 2300 ms, 'standard' p95 1200 ms, "
                    "'strong' p95 1500 ms); the fastest is 'standard'")
    assert choose_tier(("fast", "strong"), {"fast": 1100.0, "strong": 1500.0}, 1000, LIMIT, judged=False) == (
        "fast", "latency: no allowed tier fits max_latency_ms 1000 ('fast' p95 1100 ms, 'strong' p95 1500 ms); "
                "the fastest is 'fast', kept")
    assert choose_tier(("fast",), {"fast": 1100.0}, 1000, LIMIT, judged=False)[0] == "fast"


def test_a_cascade_skips_its_cheap_attempt_when_an_escalation_would_not_fit():
    tiers = ("fast", "strong")
    assert choose_tier(tiers, {"fast": 300.0, "strong": 900.0}, 1000, LIMIT, judged=True) == (
        "strong", "latency: 'fast' p95 300 ms + an escalation to 'strong' p95 900 ms > max_latency_ms 1000, "
                  "moved to 'strong'")
    assert choose_tier(tiers, {"fast": 300.0, "strong": 600.0}, 1000, LIMIT, judged=True) is None
    assert choose_tier(tiers, {"fast": 300.0, "strong": None}, 1000, LIMIT, judged=True) is None   # unknown: no skip
    assert choose_tier(tiers, {"fast": 300.0, "strong": 900.0}, 1000, LIMIT, judged=False) is None  # not a cascade


# -- on the decision path ------------------------------------------------------------------------


def router_with(steps: dict[str, Any], **config: Any) -> tuple[StepRouter, LatencyBook, list[float]]:
    clock = [1000.0]
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", steps=steps, **config),
                        transport=FunctionTransport(lambda call: f"from {call.tier}"))
    book = router._dispatcher.latency
    book.clock = lambda: clock[0]
    return router, book, clock


def seen(book: LatencyBook, clock: list[float], **p95_ms: float) -> None:
    for tier, ms in p95_ms.items():
        book.observe(tier, "m", TOTAL, ms / 1000, now=clock[0])


def test_no_budget_or_no_observations_leave_the_decision_alone():
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}})
    decision = router.decide(StepRequest("answer", MESSAGES))
    assert (decision.tier, decision.reason, decision.latency_from) == ("fast", "fixed tier 'fast'", None)
    seen(book, clock, fast=5000)
    other = router.decide(StepRequest("other", MESSAGES))                # no budget on this step
    assert (other.tier, other.latency_from) == ("fast", None)


def test_a_slow_tier_moves_the_call_and_the_reason_span_and_log_say_so_once(caplog):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    clock = [1000.0]
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast",
                                     steps={"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}}),
                        transport=FunctionTransport(lambda call: f"from {call.tier}"), tracer_provider=provider)
    book = router._dispatcher.latency
    book.clock = lambda: clock[0]
    seen(book, clock, fast=2300, standard=700)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        first = router.complete(StepRequest("answer", MESSAGES))
        second = router.complete(StepRequest("answer", MESSAGES))
    note = "latency: 'fast' p95 2300 ms > max_latency_ms 1000, moved to 'standard'"
    for result in (first, second):
        assert result.decision.tier == "standard"
        assert result.completion.content == "from standard"
        assert result.decision.reason == f"fixed tier 'fast'; {note}"
        assert result.decision.latency_from == "fast"
        assert result.decision.model == "openai/gpt-4.1-mini"
    warnings = [r.getMessage() for r in caplog.records if "latency" in r.getMessage()]
    assert warnings == [f"steproute: step 'answer': {note} (logged once)"]
    routes = [s for s in exporter.get_finished_spans() if s.name == "route answer"]
    assert len(routes) == 2
    for span in routes:
        assert span.attributes["steproute.latency.moved_from"] == "fast"
        assert span.attributes["steproute.tier"] == "standard"
        assert note in span.attributes["steproute.decision.reason"]


def test_never_past_max_tier_never_below_min_tier():
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000,
                                                  "max_tier": "standard"}})
    seen(book, clock, fast=2300, standard=1500, strong=100)
    decision = router.decide(StepRequest("answer", MESSAGES))
    assert decision.tier == "standard"          # the fastest allowed; 'strong' is past max_tier
    assert decision.reason.endswith("latency: no allowed tier fits max_latency_ms 1000 ('fast' p95 2300 ms, "
                                    "'standard' p95 1500 ms); the fastest is 'standard'")
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}})
    seen(book, clock, fast=10, standard=1500, strong=100)
    decision = router.decide(StepRequest("answer", MESSAGES, hint=Hint(min_tier="standard")))
    assert decision.tier == "strong"            # from the clamped tier upward, never back to 'fast'
    assert decision.reason == ("fixed tier 'fast'; raised to min_tier 'standard'; latency: 'standard' p95 1500 ms "
                               "> max_latency_ms 1000, moved to 'strong'")


def test_a_fixed_tier_is_never_moved():
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}},
                                      guards={"pii": {"tier": "fast", "detectors": ["email"]}})
    seen(book, clock, fast=5000, standard=10)
    hinted = router.decide(StepRequest("answer", MESSAGES, hint=Hint(tier="fast")))
    assert (hinted.tier, hinted.latency_from, hinted.reason) == ("fast", None, "tier hint 'fast'")
    guarded, _ = router.route(StepRequest("answer", [{"role": "user", "content": "mail me at a@b.example"}]))
    assert (guarded.tier, guarded.latency_from) == ("fast", None)


def test_a_threads_pin_decides_as_for_any_decision():
    """The first pin of a thread is made at the tier the budget chose; a sticky pin keeps the
    conversation there (no latency move on its decision), upgrade_only follows a move up."""
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}})
    first, _ = router.route(StepRequest("answer", MESSAGES, thread="t1"))
    assert (first.tier, first.latency_from) == ("fast", None)
    seen(book, clock, fast=2300)
    kept, _ = router.route(StepRequest("answer", MESSAGES, thread="t1"))
    assert (kept.tier, kept.pinned, kept.latency_from) == ("fast", True, None)
    assert kept.reason.startswith("pinned to tier 'fast' (sticky")
    fresh, _ = router.route(StepRequest("answer", MESSAGES, thread="t2"))
    assert (fresh.tier, fresh.latency_from) == ("standard", "fast")
    assert router.pin_store.get("t2", "answer").tier == "standard"
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000,
                                                  "pinning": {"mode": "upgrade_only"}}})
    router.route(StepRequest("answer", MESSAGES, thread="t1"))
    seen(book, clock, fast=2300)
    upgraded, _ = router.route(StepRequest("answer", MESSAGES, thread="t1"))
    assert (upgraded.tier, upgraded.latency_from) == ("standard", "fast")
    assert upgraded.reason.endswith("moved to 'standard' (no observations yet); upgraded from pinned tier 'fast'")


def test_the_run_deadline_in_metadata_is_a_budget():
    router, book, clock = router_with({})
    book.wall_clock = lambda: 5000.0
    seen(book, clock, fast=400, standard=100)
    relaxed = router.decide(StepRequest("answer", MESSAGES, metadata={DEADLINE_KEY: 5001.0}))
    assert (relaxed.tier, relaxed.latency_from) == ("fast", None)
    rushed = router.decide(StepRequest("answer", MESSAGES, metadata={DEADLINE_KEY: 5000.3}))
    assert rushed.tier == "standard"
    assert rushed.reason.endswith("latency: 'fast' p95 400 ms > the run's deadline (300 ms left), moved to 'standard'")
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 200}})
    book.wall_clock = lambda: 5000.0
    seen(book, clock, fast=400, standard=100)
    bound = router.decide(StepRequest("answer", MESSAGES, metadata={DEADLINE_KEY: 5000.3}))   # 200 ms < 300 ms left
    assert bound.reason.endswith("latency: 'fast' p95 400 ms > max_latency_ms 200, moved to 'standard'")


def test_a_deadline_that_is_not_a_number_is_ignored_and_said_once(caplog):
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}})
    seen(book, clock, fast=2000)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for _ in range(2):
            decision = router.decide(StepRequest("answer", MESSAGES, metadata={DEADLINE_KEY: "sk-secret-tomorrow"}))
            assert decision.tier == "standard"  # max_latency_ms still applies
    said = [r.getMessage() for r in caplog.records if DEADLINE_KEY in r.getMessage()]
    assert said == ["steproute: step 'answer': run metadata 'steproute_deadline' is not a number of seconds since the epoch; "
                    "the deadline is ignored (logged once)"]
    assert "sk-secret" not in caplog.text


def test_a_cascade_starts_past_its_cheap_tier_when_an_escalation_cannot_fit():
    transport = FunctionTransport(lambda call: f"from {call.tier}")
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", steps={"answer": {
        "policy": "cascade", "tiers": ["fast", "strong"], "max_latency_ms": 1000}}), transport=transport)
    book, clock = router._dispatcher.latency, [1000.0]
    book.clock = lambda: clock[0]
    seen(book, clock, fast=300, strong=900, standard=1)
    result = router.complete(StepRequest("answer", MESSAGES))
    assert result.decision.tier == "strong"
    assert result.decision.attempts == 1        # no cheap attempt was made
    assert [c.tier for c in transport.calls] == ["strong"]
    assert ("latency: 'fast' p95 300 ms + an escalation to 'strong' p95 900 ms > max_latency_ms 1000, "
            "moved to 'strong'") in result.decision.reason


def test_the_configured_order_comes_back_once_observations_age_out():
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}},
                                      latency={"max_age_s": 30})
    seen(book, clock, fast=2300)
    assert router.decide(StepRequest("answer", MESSAGES)).tier == "standard"
    clock[0] += 31
    back = router.decide(StepRequest("answer", MESSAGES))
    assert (back.tier, back.reason, back.latency_from) == ("fast", "fixed tier 'fast'", None)


def test_latency_settings_are_validated():
    for bad in ({"latency": {"window": 0}}, {"latency": {"half_life_s": 0}}, {"latency": {"nope": 1}},
                {"steps": {"a": {"policy": "fixed", "tier": "fast", "max_latency_ms": 0}}}):
        with pytest.raises(ConfigError):
            RouterConfig(tiers=TIERS, default="fast", **bad)


# -- fed where the calls end, exported as metrics -------------------------------------------------


def slow_fast_tier(call: TierCall) -> str:
    if call.tier == "fast":
        time.sleep(0.05)
    return "one two three"


def test_calls_feed_the_book_and_the_metrics():
    reader = InMemoryMetricReader()
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=FunctionTransport(slow_fast_tier),
                        meter_provider=MeterProvider(metric_readers=[reader]))
    book = router._dispatcher.latency
    router.complete(StepRequest("a", MESSAGES))
    asyncio.run(router.acomplete(StepRequest("a", MESSAGES)))
    assert "".join(getattr(c, "content", "") for c in router.stream(StepRequest("a", MESSAGES, hint=Hint(tier="strong"))))
    p50, p95 = book.quantiles("fast", time.monotonic())
    assert 50 <= p50 <= p95 < 1000
    assert book.quantiles("strong", time.monotonic(), kind=TTFT) is not None
    assert book.quantiles("fast", time.monotonic(), kind=TTFT) is None     # no stream on 'fast'
    metrics = {m.name: m for rm in reader.get_metrics_data().resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics}
    points = {(p.attributes["steproute.tier"], p.attributes["steproute.latency.kind"]): p
              for p in metrics["steproute.deployment.latency"].data.data_points}
    assert points[("fast", "total")].count == 2 and points[("fast", "total")].min >= 0.05
    assert points[("strong", "ttft")].count == 1
    gauge = {(p.attributes["steproute.tier"], p.attributes["gen_ai.request.model"], p.attributes["steproute.latency.kind"]):
             p.value for p in metrics["steproute.deployment.latency.p95"].data.data_points}
    assert gauge[("fast", "openai/gpt-4o-mini", "total")] >= 0.05
    assert ("strong", "openai/gpt-4o", "ttft") in gauge
    assert "steproute.deployment.latency.p50" in metrics


def test_a_timed_out_deployment_counts_its_time_other_failures_do_not():
    def answer(call: TierCall) -> str:
        if call.tier == "fast":
            time.sleep(0.03)
            raise TimeoutError("slow")
        if call.tier == "standard":
            raise ConnectionError("down")
        return "ok"

    router = StepRouter(RouterConfig(tiers=TIERS, default="fast", steps={"a": {"policy": "fixed", "tier": "fast",
                                                                               "tier_fallback": "stronger"}}),
                        transport=FunctionTransport(answer))
    assert router.complete(StepRequest("a", MESSAGES)).decision.tier == "strong"
    book, now = router._dispatcher.latency, time.monotonic()
    assert book.quantiles("fast", now)[1] >= 30
    assert book.quantiles("standard", now) is None
    assert book.quantiles("strong", now) is not None


def test_a_streams_time_is_the_providers_not_the_consumers():
    """A consumer that takes 100 ms over each chunk (a UI rendering it) does not make the tier
    look slow: only the time spent waiting for the provider's chunks is counted, sync and async."""
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"),
                        transport=FunctionTransport(lambda call: "one two three four five"))
    book = router._dispatcher.latency
    chunks = 0
    for _ in router.stream(StepRequest("a", MESSAGES)):
        chunks += 1
        time.sleep(0.1)
    assert chunks >= 5
    assert book.quantiles("fast", time.monotonic())[1] < 100

    async def consume() -> None:
        async for _ in router.astream(StepRequest("a", MESSAGES, hint=Hint(tier="strong"))):
            await asyncio.sleep(0.1)

    asyncio.run(consume())
    assert book.quantiles("strong", time.monotonic())[1] < 100
    assert book.quantiles("strong", time.monotonic(), kind=TTFT) is not None


def test_no_time_left_takes_the_fastest_observed_tier_never_an_unobserved_one():
    """An unobserved tier counts as fitting only a positive budget: with no time left (or when no
    tier fits), the fastest tier seen is taken, not the untried (and most expensive) one."""
    tiers = ("fast", "standard", "strong")
    left = "the run's deadline (0 ms left)"
    for budget in (0.0, -5000.0):
        assert choose_tier(tiers, {"fast": 301.0, "standard": 1.0, "strong": None}, budget, left, judged=False) == (
            "standard", f"latency: no allowed tier fits {left} ('fast' p95 301 ms, 'standard' p95 1 ms, "
                        "'strong' not observed); the fastest observed is 'standard'")
    assert choose_tier(tiers, {"fast": 0.0, "standard": None, "strong": None}, 0.0, left, judged=False) == (
        "fast", f"latency: no allowed tier fits {left} ('fast' p95 0 ms, 'standard' not observed, "
                "'strong' not observed); the fastest observed is 'fast', kept")
    # a positive budget: the unobserved tier is tried (the configured order, until it is known)
    assert choose_tier(tiers, {"fast": 301.0, "standard": 1.0, "strong": None}, 0.5, LIMIT, judged=False)[0] == "strong"
    router, book, clock = router_with({})
    book.wall_clock = lambda: 5000.0
    seen(book, clock, fast=301, standard=1)
    late = router.decide(StepRequest("answer", MESSAGES, metadata={DEADLINE_KEY: 4995.0}))
    assert (late.tier, late.latency_from) == ("standard", "fast")


def test_a_deadline_in_milliseconds_is_ignored_and_said_once(caplog):
    """``time.time() * 1000 + 100`` (milliseconds, a common mistake) reads as ~50,000 years ahead:
    it is ignored and said once, without its value."""
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}})
    book.wall_clock = lambda: 1_700_000_000.0
    seen(book, clock, fast=2000)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for _ in range(2):
            decision = router.decide(StepRequest("answer", MESSAGES, metadata={DEADLINE_KEY: 1_700_000_000_100.0}))
            assert decision.tier == "standard"   # max_latency_ms still applies
            assert "deadline" not in decision.reason
    said = [r.getMessage() for r in caplog.records if DEADLINE_KEY in r.getMessage()]
    assert said == ["steproute: step 'answer': run metadata 'steproute_deadline' is more than a year ahead "
                    "(milliseconds since the epoch?); it is read as seconds since the epoch, so the deadline is "
                    "ignored (logged once)"]
    assert "1700000000100" not in caplog.text
    assert budget_of(None, 1000.0 + 300 * 86400, 1000.0) is not None     # under a year ahead is a deadline
    with pytest.raises(ValueError):
        budget_of(None, 1000.0 + 400 * 86400, 1000.0)


def test_a_pin_that_keeps_the_call_is_what_the_reason_and_the_log_say(caplog):
    """The latency check decides before the thread's pin: a move the pin overrides is not said
    (the call did not move); a pin that keeps the call on a tier over the budget is, on the
    reason and once in the log. A move the decision followed is said, with the steproute prefix."""
    router, book, clock = router_with({"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 200}})
    note = "latency: 'fast' p95 251 ms > max_latency_ms 200"
    with caplog.at_level(logging.WARNING, logger="steproute"):
        router.route(StepRequest("answer", MESSAGES, thread="t1"))          # pinned at 'fast', nothing observed
        seen(book, clock, fast=251)
        for _ in range(2):
            kept, _ = router.route(StepRequest("answer", MESSAGES, thread="t1"))
            assert (kept.tier, kept.pinned, kept.latency_from) == ("fast", True, None)
            assert kept.reason.startswith("pinned to tier 'fast' (sticky")
            assert kept.reason.endswith(f"; {note}, kept by the pin")
        said = [r.getMessage() for r in caplog.records]
        assert said == [f"steproute: step 'answer': {note}, kept by the pin (logged once)"]
        caplog.clear()
        moved, _ = asyncio.run(router.aroute(StepRequest("answer", MESSAGES, thread="t2")))
        assert (moved.tier, moved.latency_from) == ("standard", "fast")
        assert [r.getMessage() for r in caplog.records] == [
            f"steproute: step 'answer': {note}, moved to 'standard' (no observations yet) (logged once)"]
        caplog.clear()
        seen(book, clock, standard=303)             # the pin on 'standard' keeps t2 there, over the budget too
        again, _ = asyncio.run(router.aroute(StepRequest("answer", MESSAGES, thread="t2")))
        assert (again.tier, again.pinned, again.latency_from) == ("standard", True, None)
        assert again.reason.endswith("; latency: 'standard' p95 303 ms > max_latency_ms 200, kept by the pin")
        assert [r.getMessage() for r in caplog.records] == [
            "steproute: step 'answer': latency: 'standard' p95 303 ms > max_latency_ms 200, kept by the pin (logged once)"]
    assert all("moved to 'strong'" not in r.getMessage() for r in caplog.records)
