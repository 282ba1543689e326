"""Interleaved timing shared by the benchmarks: every variant measured in the same rounds."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


def timed(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``fn``, over ``calls`` calls in a row."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def interleaved(
    variants: Mapping[str, Callable[[], object]],
    rounds: int,
    calls: int,
    *,
    warmup: int = 20,
    after_round: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one figure per round; variants take turns each round,
    so a slow moment on a shared machine hits them all alike."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(timed(fn, calls))
        if after_round is not None:
            after_round()
    return times
