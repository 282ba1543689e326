"""Which deployment of a tier a stream opens next, and when the tier has failed.

A stream that breaks before its first chunk can be opened again: nothing was shown. LiteLLM's
``Router`` does that itself, by re-running its whole model group, which picks the group's
first deployment again each time and nests one wrapper stream in the next: one dropped
connection became ~475 requests to one deployment in 40–55 s, and the tier's other
deployments were never tried. So steproute opens a tier's streams itself, deployment by
deployment (:class:`StreamWalk`): each is opened at most ``1 + num_retries`` times (LiteLLM
retries a failed open within that allowance; a stream dropped before its first chunk uses one
try), then the next deployment is opened; after the last, the tier has failed, with every
attempt. A stream that broke after its first chunk is never opened again.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from steproute._litellm import Failure, collecting
from steproute.errors import Attempt, DispatchError, provider_failure

__all__ = ["StreamWalk"]

_D = TypeVar("_D")


class StreamWalk(Generic[_D]):
    """The deployments one stream may open, in turn, and the failures so far.

    ``ids`` names each deployment as the failures do; ``attempts_of`` turns failures into
    attempts, ``error_of`` makes the tier's error from the last exception and the failures.

    Example:
        >>> walk = StreamWalk(["a", "b"], 1, str, lambda f: (), lambda e, f: DispatchError("s", "t", ()))
        >>> next(iter(walk))
        'a'
    """

    def __init__(self, deployments: Sequence[_D], tries: int, ids: Callable[[_D], str],
                 attempts_of: Callable[[list[Failure]], tuple[Attempt, ...]],
                 error_of: Callable[[Exception, list[Failure]], DispatchError]) -> None:
        self._deployments = list(deployments)
        self._tries = max(1, tries)
        self._id = ids
        self._attempts_of = attempts_of
        self._error_of = error_of
        self._index = 0
        self._used = 0
        """Tries of the current deployment used so far."""
        self._opening = False
        self._opened_at: datetime.datetime | None = None
        self._reported = 0
        """Failures LiteLLM reported for the last open."""
        self.failures: list[Failure] = []
        """(deployment id, exception, start, end) of every failed attempt, in order."""
        self.started = False
        """Whether a chunk was passed on: the stream can no longer move to another deployment."""

    def __iter__(self) -> Iterator[_D]:
        while self._index < len(self._deployments):
            yield self._deployments[self._index]

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return self._attempts_of(self.failures)

    @contextlib.contextmanager
    def opening(self, deployment: _D) -> Iterator[None]:
        """Around opening ``deployment``'s stream: the failed tries LiteLLM reports are its own."""
        self._opening, self._opened_at = True, datetime.datetime.now()
        with collecting() as seen:
            try:
                yield
            finally:
                self.failures.extend((self._id(deployment), *failure[1:]) for failure in seen)
                self._reported = len(seen)
        self._opening = False

    def failed(self, deployment: _D, error: Exception) -> None:
        """``deployment``'s stream failed: move on (the same deployment while it has tries
        left and failed transiently before the first chunk; else the next), or raise the tier's
        error when the stream had started or no deployment is left."""
        if not self._opening or not self._reported:  # LiteLLM's hook did not see it (it broke once open)
            self.failures.append((self._id(deployment), error, self._opened_at, datetime.datetime.now()))
        self._used += 1
        refused = provider_failure(error).kind is not None
        if not self.started and not refused and self._used < self._tries:
            self._opening = False
            return
        self._index += 1
        self._used, self._opening = 0, False
        if self.started or self._index >= len(self._deployments):
            raise self._error_of(error, self.failures) from error


def drained_usage(stream: Any) -> Any:
    """The provider's usage from the rest of a stream (the last chunk carries it), or ``None``."""
    usage = None
    with contextlib.suppress(Exception):
        for raw in stream:
            usage = getattr(raw, "usage", None) or usage
    return usage


async def adrained_usage(stream: Any) -> Any:
    """Async :func:`drained_usage`."""
    usage = None
    with contextlib.suppress(Exception):
        async for raw in stream:
            usage = getattr(raw, "usage", None) or usage
    return usage
