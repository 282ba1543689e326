"""Many routed calls at once (:meth:`StepRouter.complete_batch`).

A cascade's items run phase by phase: every item's current attempt, bounded by
``max_concurrency``, then only the items whose answer was rejected (or whose tier failed) go on
to their next tier, so a batch pays the cheap tier for all of it first. Other items are plain
calls, as many at once. Every item is finished — answered, or booked as failed — and its error
takes its place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from steproute import _walk_drivers as drivers
from steproute._walk_run import WalkRun
from steproute.results import RoutedCompletion
from steproute.types import StepRequest

__all__ = ["BatchCalls", "arun", "run"]

DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class BatchCalls:
    """What a batch needs of its router: which items run in phases, and how to start or make a call."""

    phased: Callable[[StepRequest], bool]
    start: Callable[[StepRequest], WalkRun]
    astart: Callable[[StepRequest], Awaitable[WalkRun]]
    complete: Callable[[StepRequest], RoutedCompletion]
    acomplete: Callable[[StepRequest], Awaitable[RoutedCompletion]]


def _bound(runs: Sequence[WalkRun]) -> int:
    """A batch's concurrency: the cascades' own ``max_concurrency``, else the default."""
    return min((r.cascade.max_concurrency for r in runs if r.cascade is not None), default=DEFAULT_CONCURRENCY)


def run(calls: BatchCalls, requests: Sequence[StepRequest], max_concurrency: int | None) -> list[Any]:
    results: list[Any] = [None] * len(requests)
    runs: dict[int, WalkRun] = {}
    plain: list[int] = []
    for i, request in enumerate(requests):
        try:
            if calls.phased(request):
                runs[i] = calls.start(request)
            else:
                plain.append(i)
        except Exception as exc:
            results[i] = exc
    bound = max_concurrency or _bound(list(runs.values()))

    def call(i: int) -> Any:
        try:
            return calls.complete(requests[i])
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, min(bound, len(plain) or 1))) as pool:
        for i, result in zip(plain, pool.map(call, plain), strict=True):
            results[i] = result
    for i, result in zip(runs, _phases(list(runs.values()), bound), strict=True):
        results[i] = result
    return results


async def arun(calls: BatchCalls, requests: Sequence[StepRequest], max_concurrency: int | None) -> list[Any]:
    results: list[Any] = [None] * len(requests)
    runs: dict[int, WalkRun] = {}
    plain: list[int] = []
    for i, request in enumerate(requests):
        try:
            if calls.phased(request):
                runs[i] = await calls.astart(request)
            else:
                plain.append(i)
        except Exception as exc:
            results[i] = exc
    bound = max_concurrency or _bound(list(runs.values()))
    gate = asyncio.Semaphore(bound)

    async def call(i: int) -> Any:
        async with gate:
            try:
                return await calls.acomplete(requests[i])
            except Exception as exc:
                return exc

    plain_results, phased = await asyncio.gather(asyncio.gather(*(call(i) for i in plain)),
                                                 _aphases(list(runs.values()), bound))
    for i, result in zip(plain, plain_results, strict=True):
        results[i] = result
    for i, result in zip(runs, phased, strict=True):
        results[i] = result
    return results


def _phases(runs: Sequence[WalkRun], max_concurrency: int) -> list[RoutedCompletion | BaseException]:
    """Phase by phase: every run's current attempt (bounded by ``max_concurrency``), then only
    the runs that must go on make their next one. A run that fails is booked and its error
    takes its place."""
    results: dict[int, RoutedCompletion | BaseException] = {}

    def one(index: int) -> bool:
        try:
            if drivers.step(runs[index]):
                results[index] = runs[index].close()
                return True
            return False
        except Exception as exc:
            runs[index].record.failed(exc)
            results[index] = exc
            return True

    pending = list(range(len(runs)))
    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(runs)))) as pool:
        while pending:
            done = list(pool.map(one, pending))
            pending = [i for i, finished in zip(pending, done, strict=True) if not finished]
    return [results[i] for i in range(len(runs))]


async def _aphases(runs: Sequence[WalkRun], max_concurrency: int) -> list[RoutedCompletion | BaseException]:
    """Async :func:`_phases`."""
    results: dict[int, RoutedCompletion | BaseException] = {}
    gate = asyncio.Semaphore(max_concurrency)

    async def one(index: int) -> bool:
        async with gate:
            try:
                if await drivers.astep(runs[index]):
                    results[index] = await runs[index].aclose()
                    return True
                return False
            except Exception as exc:
                runs[index].record.failed(exc)
                results[index] = exc
                return True

    pending = list(range(len(runs)))
    while pending:
        done = await asyncio.gather(*(one(i) for i in pending))
        pending = [i for i, finished in zip(pending, done, strict=True) if not finished]
    return [results[i] for i in range(len(runs))]
