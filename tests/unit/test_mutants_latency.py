"""Tests that kill mutmut mutants of steproute/latency.py (see docs/architecture.md, "Mutation testing")."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from steproute.latency import DEADLINE_KEY, TOTAL, TTFT, LatencyBook, LatencyStat, LatencyWindow, budget_of, choose_tier
from steproute.types import Decision


def test_a_deadline_of_this_epoch_is_read_against_the_wall_clock():
    now = 2_000_000_000.0
    assert budget_of(None, now + 0.5, now) == (500.0, "the run's deadline (500 ms left)")


def test_a_deadline_exactly_a_year_ahead_is_still_one():
    year = 366 * 86400.0
    assert budget_of(None, year, 0.0) == (year * 1000.0, f"the run's deadline ({year * 1000.0:.0f} ms left)")


def metrics_of(reader: InMemoryMetricReader) -> dict[str, Any]:
    return {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_the_book_exports_each_observation_and_each_deployments_p50_and_p95_in_seconds():
    reader = InMemoryMetricReader()
    book = LatencyBook(("fast", "strong"), clock=lambda: 10.0)
    book.export(MeterProvider(metric_readers=[reader]).get_meter("test"))
    for seconds in (0.1, 0.2, 0.3):
        book.observe("fast", "openai/gpt-4o-mini", TOTAL, seconds, now=9.0)
    book.observe("strong", "openai/gpt-4o", TTFT, 0.5, now=9.0)
    metrics = metrics_of(reader)
    histogram = metrics["steproute.deployment.latency"]
    assert (histogram.unit, histogram.description) == (
        "s", "Latency of each deployment's calls: total and, for streams, time to first token")
    points = {tuple(sorted(p.attributes.items())): p for p in histogram.data.data_points}
    fast = (("gen_ai.request.model", "openai/gpt-4o-mini"), ("steproute.latency.kind", "total"), ("steproute.tier", "fast"))
    strong = (("gen_ai.request.model", "openai/gpt-4o"), ("steproute.latency.kind", "ttft"), ("steproute.tier", "strong"))
    assert set(points) == {fast, strong}
    assert (points[fast].count, points[fast].sum, points[strong].count) == (3, pytest.approx(0.6), 1)
    for name, fast_value, strong_value in (("p50", 0.2, 0.5), ("p95", 0.3, 0.5)):
        gauge = metrics[f"steproute.deployment.latency.{name}"]
        assert (gauge.unit, gauge.description) == ("s", f"Observed {name} latency of each deployment (decayed window)")
        values = {tuple(sorted(p.attributes.items())): p.value for p in gauge.data.data_points}
        assert values == {fast: pytest.approx(fast_value), strong: pytest.approx(strong_value)}


def test_a_step_limit_equal_to_the_time_left_names_the_step_limit():
    assert budget_of(500, 100.5, 100.0) == (500, "max_latency_ms 500")
    assert budget_of(501, 100.5, 100.0) == (500.0, "the run's deadline (500 ms left)")


def test_a_cascade_adds_the_next_tier_not_another():
    p95 = {"fast": 300.0, "standard": 900.0, "strong": 100.0}
    assert choose_tier(("fast", "standard", "strong"), p95, 1000, "max_latency_ms 1000", judged=True) == (
        "standard", "latency: 'fast' p95 300 ms + an escalation to 'standard' p95 900 ms > max_latency_ms 1000, "
                    "moved to 'standard'")


def test_a_passed_deadline_is_said_as_no_time_left():
    book = LatencyBook(("fast", "strong"), clock=lambda: 10.0, wall_clock=lambda: 100.0)
    book.observe("fast", "m", TOTAL, 0.3, now=9.0)
    book.observe("strong", "m", TOTAL, 0.9, now=9.0)
    for deadline in (99.0, 100.0004):  # passed; less than a millisecond left
        assert book.check("answer", "fast", {DEADLINE_KEY: deadline}, None, 1, None) == (
            "fast", "latency: no allowed tier fits the run's deadline (0 ms left) ('fast' p95 300 ms, 'strong' p95 900 ms); "
                    "the fastest is 'fast', kept")


def test_an_observation_exactly_max_age_old_is_forgotten():
    window = LatencyWindow(size=8, half_life_s=10, max_age_s=60)
    window.add(100, now=0.0)
    assert (window.count(now=59.5), window.count(now=60.0)) == (1, 0)
    assert window.quantiles(now=60.0) is None and window.quantiles(now=61.0) is None  # empty, asked again
    window.add(100, now=30.0)
    window.add(200, now=0.0)  # ended earlier, booked later (another thread): out of order
    assert window.quantiles(now=60.0) == (100.0, 100.0)


def test_a_cascade_fits_when_the_tier_and_its_escalation_take_the_budget_exactly():
    assert choose_tier(("fast", "standard"), {"fast": 300.0, "standard": 700.0}, 1000, "max_latency_ms 1000",
                       judged=True) is None


def test_a_p95_of_0_ms_is_the_fastest():
    assert choose_tier(("fast", "standard"), {"fast": 0.5, "standard": 0.0}, 0.0, "the run's deadline (0 ms left)",
                       judged=False) == ("standard", "latency: no allowed tier fits the run's deadline (0 ms left) "
                                                     "('fast' p95 0 ms, 'standard' p95 0 ms); the fastest is 'standard'")


def test_the_book_knows_nothing_of_a_tier_or_kind_it_does_not_have():
    book = LatencyBook(("fast",))
    book.observe("fast", "m", TOTAL, 0.1, now=0.0)
    assert book.quantiles("nope", 1.0) is None and book.quantiles("fast", 1.0, kind="nope") is None


def test_stats_give_each_deployments_p50_p95_and_count():
    book = LatencyBook(("fast",))
    for seconds in (0.1, 0.2, 0.3):
        book.observe("fast", "m", TOTAL, seconds, now=0.0)
    assert book.stats(now=1.0) == [LatencyStat("fast", "m", TOTAL, 200.0, 300.0, 3)]


def test_a_cumulative_weight_short_of_the_quantile_by_the_float_slack_reaches_it():
    # weights 0.9999999999980002 and 1.0: the first is exactly half the total less 1e-12
    window = LatencyWindow(size=8, half_life_s=1.0, max_age_s=60)
    window.add(100, now=-2.885111353808645e-12)
    window.add(200, now=0.0)
    assert window.quantiles(now=0.0) == (100.0, 200.0)


def test_weights_are_relative_to_the_newest_observation_on_a_clock_far_from_0():
    window = LatencyWindow(size=8, half_life_s=60, max_age_s=300)
    window.add(100, now=100_000.0)  # a monotonic clock after a day of uptime
    window.add(300, now=100_120.0)  # weights 1/4 and 1
    assert window.quantiles(now=100_121.0) == (300.0, 300.0)


def test_a_call_of_0_seconds_is_observed():
    book = LatencyBook(("fast",))
    book.observe("fast", "m", TOTAL, 0.0, now=0.0)
    book.observe("fast", "m", TOTAL, float("nan"), now=0.0)  # not a time: ignored
    book.observe("fast", "m", TOTAL, -1.0, now=0.0)
    assert book.quantiles("fast", 1.0) == (0.0, 0.0) and book.stats(1.0)[0].count == 1


def pinned_book() -> LatencyBook:
    book = LatencyBook(("fast", "strong"), clock=lambda: 1.0, wall_clock=lambda: 100.0)
    book.observe("fast", "m", TOTAL, 0.3, now=0.0)
    return book


def test_only_a_pinned_decision_is_said_to_be_kept_over_its_budget():
    book = pinned_book()
    fixed = Decision("answer", None, "fast", "m", "fixed", "hint tier 'fast'")
    assert book.settle(fixed, None, {}, 200) is fixed
    pinned = replace(fixed, pinned=True, reason="pinned to tier 'fast'")
    assert book.settle(pinned, None, None, None) is pinned  # no budget at all: no metadata, no limit
    for within in (300, 500):  # the tier's p95 (300 ms) fits: nothing to say
        assert book.settle(pinned, None, {}, within) is pinned
    assert book.settle(replace(pinned, tier="strong"), None, {}, 200).reason == "pinned to tier 'fast'"  # not observed
    assert book.settle(pinned, None, None, 200).reason == (
        "pinned to tier 'fast'; latency: 'fast' p95 300 ms > max_latency_ms 200, kept by the pin")


def test_a_bad_deadline_met_when_settling_a_pin_is_said_naming_the_step(caplog):
    book = pinned_book()
    pinned = Decision("answer", None, "fast", "m", "pin", "pinned to tier 'fast'", pinned=True)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        assert book.settle(pinned, None, {DEADLINE_KEY: "soon"}, None) is pinned
    assert [r.getMessage() for r in caplog.records] == [
        "steproute: step 'answer': run metadata 'steproute_deadline' is not a number of seconds since the epoch; "
        "the deadline is ignored (logged once)"]


def test_a_pin_kept_over_its_budget_is_said_even_after_a_move_to_a_tier_named_pin(caplog):
    """What the log says once is keyed by its kind: a move to a tier called ``pin`` is not the pin's note."""
    book = LatencyBook(("fast", "pin"), clock=lambda: 1.0)
    book.observe("fast", "m", TOTAL, 0.3, now=0.0)
    moved = Decision("answer", None, "pin", "m", "rules", "rule picked 'fast'", latency_from="fast")
    pinned = Decision("answer", None, "fast", "m", "pin", "pinned to tier 'fast'", pinned=True)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        book.settle(moved, "latency: 'fast' p95 300 ms > max_latency_ms 200, moved to 'pin'", {}, 200)
        book.settle(pinned, None, {}, 200)
    assert [r.getMessage() for r in caplog.records] == [
        "steproute: step 'answer': latency: 'fast' p95 300 ms > max_latency_ms 200, moved to 'pin' (logged once)",
        "steproute: step 'answer': latency: 'fast' p95 300 ms > max_latency_ms 200, kept by the pin (logged once)"]


def test_each_budget_and_set_of_observations_has_its_own_choice():
    book = LatencyBook(("fast", "strong"), clock=lambda: 1.0)
    book.observe("fast", "m", TOTAL, 0.3, now=0.0)
    for limit in (200, 250, 200):
        assert book.check("answer", "fast", {}, limit, 1, None) == (
            "strong", f"latency: 'fast' p95 300 ms > max_latency_ms {limit}, moved to 'strong' (no observations yet)")


def test_a_bad_deadline_is_said_once_per_step(caplog):
    book = LatencyBook(("fast", "strong"), clock=lambda: 1.0)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for step in ("plan", "answer", "plan"):
            book.check(step, "fast", {DEADLINE_KEY: "soon"}, None, 1, None)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["steproute", "steproute"]
    assert ["'plan'" in caplog.records[0].getMessage(), "'answer'" in caplog.records[1].getMessage()] == [True, True]


def test_a_book_from_config_keeps_the_configured_window_and_half_life():
    from steproute.config import LatencyConfig

    book = LatencyBook.from_config(("fast", "strong"), LatencyConfig(window=2, half_life_s=1.0, max_age_s=300.0))
    for ms in (900, 100, 200):  # the window keeps the last two
        book.observe("fast", "m", TOTAL, ms / 1000, now=0.0)
    assert book.quantiles("fast", 1.0) == (100.0, 200.0)
    book.observe("strong", "m", TOTAL, 1.0, now=0.0)
    book.observe("strong", "m", TOTAL, 0.1, now=10.0)  # ten half-lives later: the slow call weighs 1/1024
    assert book.quantiles("strong", 11.0) == (100.0, 100.0)


def test_two_different_bad_deadlines_on_one_step_are_each_said(caplog):
    book = LatencyBook(("fast", "strong"), clock=lambda: 1.0, wall_clock=lambda: 100.0)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for deadline in ("soon", 1e12, "later", 2e12):  # not a number; milliseconds since the epoch
            assert book.check("answer", "fast", {DEADLINE_KEY: deadline}, None, 1, None) is None
    assert [r.getMessage() for r in caplog.records] == [
        "steproute: step 'answer': run metadata 'steproute_deadline' is not a number of seconds since the epoch; "
        "the deadline is ignored (logged once)",
        "steproute: step 'answer': run metadata 'steproute_deadline' is more than a year ahead (milliseconds since the "
        "epoch?); it is read as seconds since the epoch, so the deadline is ignored (logged once)"]


def test_two_threads_making_a_deployments_first_window_together_both_count():
    barrier, lock, waits = threading.Barrier(2, timeout=5), threading.Lock(), [2]

    class MeetingName(str):
        """A model name whose first two hashes (one a thread's lookup of its deployment's window)
        wait for each other, and whose later ones (under the book's lock) wait 0.2 s: both threads
        then look the window up before either makes it. The real code passes whatever the timing."""

        def __hash__(self) -> int:
            with lock:
                first, waits[0] = waits[0] > 0, waits[0] - 1
            if first:
                barrier.wait()
            else:
                time.sleep(0.2)
            return str.__hash__(self)

    book = LatencyBook(("fast",))
    model = MeetingName("openai/gpt-4o-mini")
    threads = [threading.Thread(target=book.observe, args=("fast", model, TOTAL, s, 0.0)) for s in (0.1, 0.2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert book.stats(now=1.0) == [LatencyStat("fast", "openai/gpt-4o-mini", TOTAL, 100.0, 200.0, 2)]
