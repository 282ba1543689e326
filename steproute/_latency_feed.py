"""Where a deployment's call ends: each tier's client, timed, feeding the router's
:class:`~steproute.latency.LatencyBook`.

Every call to a tier goes through its client (the walk's attempts, a cascade's probes, the
``llm`` policy's question), so wrapping the client once is the one place every outcome passes.
An answer counts from its request, or from the end of the last deployment that failed before it
(in-tier fallback), to its last token; a stream also counts its first chunk; a stream its
consumer stopped counts its first chunk only. A stream's total leaves out the time its consumer
spent with each chunk (between a chunk handed over and the next one asked for): a UI that takes
100 ms to render each chunk does not make the provider look slow. A deployment that timed out counts its time too
(it was that slow); other failures are not latencies and are not counted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from steproute.completions import Completion, CompletionChunk
from steproute.errors import Attempt, DispatchError
from steproute.latency import TOTAL, TTFT, LatencyBook
from steproute.tier_client import TierClient

__all__ = ["TimedTier"]


class TimedTier:
    """``client``, the tier ``tier``'s, with every call's latency put in ``book``.

    Example:
        >>> timed = TimedTier(client, "fast", book)    # what the dispatcher holds   # doctest: +SKIP
    """

    __slots__ = ("_book", "_client", "_tier")

    def __init__(self, client: TierClient, tier: str, book: LatencyBook) -> None:
        self._client, self._tier, self._book = client, tier, book

    @property
    def client(self) -> TierClient:
        """The tier's own client, untimed."""
        return self._client

    def _ended(self, model: str | None, started_ns: int, first_ns: int | None, ended_ns: int | None,
               failed: Sequence[Attempt]) -> None:
        book, tier, now = self._book, self._tier, time.monotonic()
        self._timeouts(failed, now)
        if model is None:
            return
        begin = max([started_ns, *(a.ended_ns for a in failed if a.ended_ns)])
        if first_ns is not None:
            book.observe(tier, model, TTFT, max(first_ns - begin, 0) / 1e9, now)
        if ended_ns is not None:
            book.observe(tier, model, TOTAL, max(ended_ns - begin, 0) / 1e9, now)

    def _timeouts(self, attempts: Sequence[Attempt], now: float) -> None:
        for a in attempts:
            if a.model and a.started_ns and a.ended_ns and "Timeout" in a.error_type:
                self._book.observe(self._tier, a.model, TOTAL, max(a.ended_ns - a.started_ns, 0) / 1e9, now)

    def complete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                 prefer: str | None = None) -> Completion:
        started = time.time_ns()
        try:
            completion = self._client.complete(step, messages, params, prefer)
        except DispatchError as exc:
            self._timeouts(exc.attempts, time.monotonic())
            raise
        self._ended(completion.model, started, None, time.time_ns(), completion.failed_attempts)
        return completion

    async def acomplete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                        prefer: str | None = None) -> Completion:
        started = time.time_ns()
        try:
            completion = await self._client.acomplete(step, messages, params, prefer)
        except DispatchError as exc:
            self._timeouts(exc.attempts, time.monotonic())
            raise
        self._ended(completion.model, started, None, time.time_ns(), completion.failed_attempts)
        return completion

    def stream(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
               prefer: str | None = None) -> Iterator[CompletionChunk]:
        clock = _StreamClock()
        chunks = self._client.stream(step, messages, params, prefer)
        try:
            for chunk in chunks:
                clock.received(chunk)
                yield chunk
                clock.taken_back()
            clock.done()
        except DispatchError as exc:
            clock.failed = exc.attempts
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self._ended(clock.model, clock.started, clock.first, clock.ended, clock.failed)

    async def astream(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                      prefer: str | None = None) -> AsyncIterator[CompletionChunk]:
        clock = _StreamClock()
        chunks = self._client.astream(step, messages, params, prefer)
        try:
            async for chunk in chunks:
                clock.received(chunk)
                yield chunk
                clock.taken_back()
            clock.done()
        except DispatchError as exc:
            clock.failed = exc.attempts
            raise
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            self._ended(clock.model, clock.started, clock.first, clock.ended, clock.failed)


class _StreamClock:
    """One stream's times: its start, its first chunk, and its end less the time the consumer
    held the chunks (the consumer's time with a chunk is not the provider's)."""

    def __init__(self) -> None:
        self.started = time.time_ns()
        self.first: int | None = None
        self.ended: int | None = None
        self.failed: Sequence[Attempt] = ()
        self._model: str | None = None
        self._consumer = self._handed = 0

    @property
    def model(self) -> str | None:
        """The model that answered, once a chunk came (``None``: the stream gave nothing)."""
        return self._model if self.first is not None else None

    def received(self, chunk: CompletionChunk) -> None:
        now = time.time_ns()
        if self.first is None:
            self.first = now
        self._model = chunk.model or self._model
        if chunk.usage is not None:
            self.failed = chunk.failed_attempts
        self._handed = time.time_ns()

    def taken_back(self) -> None:
        self._consumer += time.time_ns() - self._handed

    def done(self) -> None:
        self.ended = time.time_ns() - self._consumer
