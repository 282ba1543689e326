"""The latency window's documented defaults (64 observations, a 60 s half-life, dropped after 300 s),
for a window made alone and for each tier's window of a book: read through what a window reports."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from steproute.latency import TOTAL, LatencyBook, LatencyWindow


def window_alone() -> tuple[Callable[[float, float], None], Callable[[float], int], Callable[[float], object]]:
    w = LatencyWindow()
    return w.add, w.count, w.quantiles


def window_of_a_book() -> tuple[Callable[[float, float], None], Callable[[float], int], Callable[[float], object]]:
    """A book's deployment window (``count``, through ``stats``) and its tier window (``quantiles``)."""
    book = LatencyBook(["fast"])

    def add(ms: float, now: float) -> None:
        book.observe("fast", "m", TOTAL, ms / 1000, now)

    def count(now: float) -> int:
        return next((s.count for s in book.stats(now) if (s.tier, s.model, s.kind) == ("fast", "m", TOTAL)), 0)

    return add, count, lambda now: book.quantiles("fast", now)


WINDOWS = [pytest.param(window_alone, id="LatencyWindow()"), pytest.param(window_of_a_book, id="LatencyBook(tiers)")]


@pytest.mark.parametrize("make", WINDOWS)
def test_a_window_keeps_the_last_64_observations(make):
    add, count, quantiles = make()
    add(1000.0, 0.0)  # the oldest, pushed out by the 64 after it
    for i in range(64):
        add(10.0, 1.0 + i / 1000)
    assert count(2.0) == 64
    assert quantiles(2.0) == (10.0, 10.0)


@pytest.mark.parametrize("make", WINDOWS)
def test_an_observation_is_dropped_300_seconds_after_it_was_made(make):
    add, count, quantiles = make()
    add(100.0, 0.0)
    assert count(299.9) == 1 and count(300.0) == 0
    assert quantiles(299.9) == (100.0, 100.0) and quantiles(300.5) is None


@pytest.mark.parametrize("make", WINDOWS)
def test_an_observations_weight_halves_every_60_seconds(make):
    """Two observations 60 s older than a third weigh 1/2 each, together exactly the newest's 1: the p50
    (the smallest value whose cumulative weight reaches half the total) is the old value. With any
    other half-life the two old ones weigh more or less than half, and the p50 moves or not."""
    add, _, quantiles = make()
    add(10.0, 0.0)
    add(10.0, 0.0)
    add(20.0, 60.0)
    # sorted: 10 (w 1/2), 10 (w 1/2), 20 (w 1); total 2; p50 needs 1: reached exactly by the two old ones
    # (a shorter half-life leaves them short of it)
    assert quantiles(60.0) == (10.0, 20.0)
    add2, _, quantiles2 = make()
    add2(20.0, 0.0)
    add2(20.0, 0.0)
    add2(10.0, 60.0)
    # sorted: 10 (w 1), 20 (w 1/2), 20 (w 1/2): the new one alone is exactly half (a longer half-life: less)
    assert quantiles2(60.0) == (10.0, 20.0)
