"""The drivers of a tier walk: one call, one stream, sync and async (batches:
:mod:`steproute._batch`).

Each makes the calls a :class:`~steproute._walk_run.WalkRun` asks for and feeds the outcomes
back; none decides anything (that is :mod:`steproute.tier_walk`'s job).

Streaming: an attempt whose answer may still be rejected (a cascade's tiers but its last) is
fetched whole and replayed as a stream once accepted; any other attempt streams live, and moves
to the next tier only when it failed before its first chunk — text already shown cannot be
taken back. A stream its consumer stops is booked at what was generated so far. Speculative
routing (async calls to a cascade with a ``start`` policy): the first tier's call starts while
``start`` decides, and is cancelled when it picks a stronger tier.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from dataclasses import replace

from steproute._walk_run import Pending, WalkRun, answer_of
from steproute.dispatch import Completion, CompletionChunk, chunks_of
from steproute.errors import DispatchError
from steproute.results import RoutedCompletion, StreamState, StreamSummary, summary_of

__all__ = ["arun", "astep", "astream", "run", "step", "stream"]


# -- one attempt -----------------------------------------------------------------------------


def step(run: WalkRun) -> bool:
    """Make the current attempt; ``True`` once the call has its answer (raises its error)."""
    pending = run.pending()
    try:
        completion = run.client(pending.tier).complete(
            run.request.step, pending.messages, pending.params, pending.prefer)
    except DispatchError as exc:
        run.failed(pending, exc)
        return False
    return _settle(run, pending, completion)


def _settle(run: WalkRun, pending: Pending, completion: Completion) -> bool:
    if not run.walk.judges:
        run.answered(completion)
        return True
    assert run.cascade is not None
    probe = run.probe(pending)
    return run.judge(pending, completion, run.cascade.judge(run.request, answer_of(completion), probe), probe)


async def astep(run: WalkRun, first: asyncio.Task[Completion] | None = None) -> bool:
    """Async :func:`step`; ``first`` is a speculative call already under way."""
    pending = run.pending()
    try:
        if first is not None:
            completion = await first
        else:
            completion = await run.client(pending.tier).acomplete(
                run.request.step, pending.messages, pending.params, pending.prefer)
    except DispatchError as exc:
        run.failed(pending, exc)
        return False
    if not run.walk.judges:
        run.answered(completion)
        return True
    assert run.cascade is not None
    probe = run.probe(pending)
    if run.cascade.calls_models:  # its signals make blocking model calls: off the event loop
        verdict = await asyncio.to_thread(run.cascade.judge, run.request, answer_of(completion), probe)
    else:
        verdict = run.cascade.judge(run.request, answer_of(completion), probe)
    return run.judge(pending, completion, verdict, probe)


async def speculate(run: WalkRun) -> asyncio.Task[Completion] | None:
    """Speculative routing: the first tier's call starts while ``start`` decides. Returns the
    call to await, or ``None`` when ``start`` picked a stronger tier (the call is cancelled
    and booked as such)."""
    policy = run.cascade
    assert policy is not None and policy.start is not None
    start = policy.start
    pending = run.pending()
    task = asyncio.create_task(run.client(pending.tier).acomplete(
        run.request.step, pending.messages, pending.params, pending.prefer))
    try:
        picked = await asyncio.to_thread(start.choose, run.request) if policy.blocking else start.choose(run.request)
    except BaseException:
        task.cancel()
        raise
    choice = policy.from_start(picked)
    rank = run.ctx.rank
    picked_tier = run.ctx.tiers[min(max(rank[choice.tier], run.plan.low), run.plan.high)]
    tier = run.servable(picked_tier, pending.tier)
    if rank[tier] <= rank[pending.tier]:  # agreed, or picked a tier that cannot serve the call and none above it can
        said = "agreed" if tier == picked_tier else \
            f"picked {picked_tier!r}, which cannot serve the call; the {pending.tier!r} call goes on"
        run.walk.note(f"speculative: {start.name} {said} ({choice.reason})")
        return task
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, DispatchError):
        await task
    cannot = f"; it cannot serve the call: tier {tier!r}" if tier != picked_tier else ""
    run.cancelled(pending, tier,
                  f"speculative: {start.name} picked {picked_tier!r}, the {pending.tier!r} call was cancelled{cannot}")
    return None


def _speculates(run: WalkRun) -> bool:
    """Speculative routing applies: configured, and the cascade itself decided (no pin, no guard)."""
    return (run.cascade is not None and run.cascade.speculative and run.decision.policy == "cascade"
            and run.decision.guard is None and run.judged)


# -- one call --------------------------------------------------------------------------------


def run(call: WalkRun) -> RoutedCompletion:
    while not step(call):
        pass
    return call.close()


async def arun(call: WalkRun) -> RoutedCompletion:
    first = await speculate(call) if _speculates(call) else None
    while not await astep(call, first):
        first = None
    return await call.aclose()


# -- one stream ------------------------------------------------------------------------------


def _replayed(routed: RoutedCompletion) -> Iterator[CompletionChunk | StreamSummary]:
    yield from (c for c in chunks_of(routed.completion) if c.usage is None)
    yield summary_of(routed)


def _stopped(call: WalkRun, state: StreamState | None, error: BaseException) -> None:
    """A stream that ended early: abandoned by its consumer while a tier streamed live (booked
    at what was generated so far), or failed."""
    if state is None:
        call.record.failed(error)
        return
    tier = state.decision.tier
    dispatcher = call.ctx.dispatcher
    deployment = next((d for d in dispatcher.deployments(tier) if d.model == state.model),
                      dispatcher.first_deployment(tier))
    call.record.stopped(error, state, replace(state.decision, model=state.model), deployment,
                        call.ctx.baseline_price, call.params.get("n"))


def _live(call: WalkRun, pending: Pending) -> StreamState:
    """The running state of an attempt that streams live from ``pending.tier``."""
    return StreamState(replace(call.decision, tier=pending.tier,
                               model=call.ctx.dispatcher.first_deployment(pending.tier).model))


def stream(call: WalkRun) -> Iterator[CompletionChunk | StreamSummary]:
    """Chunks, then one :class:`StreamSummary`; every outcome booked, an early stop too. Once
    the call is booked (answered), what the consumer does with the rest (closes the stream
    before its summary, or after it) books nothing more."""
    state: StreamState | None = None
    try:
        while True:
            state = None
            pending = call.pending()
            tier = call.client(pending.tier)
            if call.walk.judges:  # may be rejected: fetched whole, replayed once accepted
                try:
                    completion = tier.complete(call.request.step, pending.messages, pending.params, pending.prefer)
                except DispatchError as exc:
                    call.failed(pending, exc)
                    continue
                if _settle(call, pending, completion):
                    rest = _replayed(call.close())
                    break
                continue
            state = live = _live(call, pending)
            started = False
            try:
                for chunk in tier.stream(call.request.step, pending.messages, pending.params, pending.prefer):
                    started = True
                    live.see(chunk)
                    if chunk.usage is None:
                        yield chunk
            except DispatchError as exc:
                if started:  # text was shown: it cannot be taken back
                    raise
                call.failed(pending, exc)
                continue
            state = None
            call.answered(live.completion())
            rest = iter((summary_of(call.close()),))
            break
    except BaseException as exc:  # GeneratorExit too: the consumer stopped early
        _stopped(call, state, exc)
        raise
    yield from rest  # booked: a stop from here on is no abandoned or failed call


async def astream(call: WalkRun) -> AsyncGenerator[CompletionChunk | StreamSummary, None]:
    """Async :func:`stream` (with speculative routing when configured)."""
    state: StreamState | None = None
    try:
        first = await speculate(call) if _speculates(call) else None
        while True:
            state = None
            pending = call.pending()
            if call.walk.judges or first is not None:  # buffered (or the speculative call is this attempt)
                done = await astep(call, first)
                first = None
                if done:
                    rest = _replayed(await call.aclose())
                    break
                continue
            state = live = _live(call, pending)
            started = False
            try:
                async for chunk in call.client(pending.tier).astream(
                        call.request.step, pending.messages, pending.params, pending.prefer):
                    started = True
                    live.see(chunk)
                    if chunk.usage is None:
                        yield chunk
            except DispatchError as exc:
                if started:
                    raise
                call.failed(pending, exc)
                continue
            state = None
            call.answered(live.completion())
            rest = iter((summary_of(await call.aclose()),))
            break
    except BaseException as exc:  # CancelledError, GeneratorExit (aclose): the consumer stopped
        _stopped(call, state, exc)
        raise
    for item in rest:  # booked: a stop from here on is no abandoned or failed call
        yield item
