"""What a model's answer must be for steproute to pass it on, and the error when it is not.

A deployment may answer with something that is not an answer: a tool call without a name
(native, or in a ``tool_calling: json`` tier's reply), or a reply nested too deep to read.
steproute never passes such a call on (it would reach the agent as a call to a tool named
``''``) and never crashes on it: the tier's answer is a :class:`MalformedResponse`, a
:class:`~steproute.errors.DispatchError` that falls back to the next tier as a transient
failure does (the decision's reason, the attempt's ``chat`` span and one warning say so), or
is raised when the step has no tier to fall back to. The error names the step, the tier, the
deployment and what was wrong, never the answer's text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from steproute.errors import Attempt, DispatchError

__all__ = ["MalformedResponse", "StreamedCallNames", "first_choice_only", "usable_name"]

log = logging.getLogger("steproute")
_Chunk = TypeVar("_Chunk")
_told_choices = threading.Event()


def first_choice_only(choices: int) -> None:
    """Say once per process that a call asked for several choices (``n``) and steproute
    answers with the first: a non-streamed call's ``Completion`` holds choice 0, a stream
    streams choice 0 only (the others are never glued into its text). The others are still
    billed by the provider and counted in the call's usage.

    Example:
        >>> first_choice_only(2)  # logs one warning, the first time only
    """
    if not _told_choices.is_set():
        _told_choices.set()
        log.warning("steproute: a call asked for %d or more choices (n); steproute answers with the first choice "
                    "and streams only the first (the others are billed by the provider and counted in its usage) "
                    "(said once per process)", choices)


def usable_name(name: object) -> bool:
    """Whether a tool call's name can be called: a non-blank string.

    Example:
        >>> usable_name("add"), usable_name(""), usable_name(None), usable_name("  ")
        (True, False, False, False)
    """
    return isinstance(name, str) and bool(name.strip())


class MalformedResponse(DispatchError):
    """A deployment answered, but not with something steproute can pass on: a tool call
    without a usable name, or a ``tool_calling: json`` reply nested deeper than
    :data:`steproute.json_tools.MAX_DEPTH`. Falls back to the next tier like a transient
    failure (``tier_fallback``); raised when there is none.

    Example:
        >>> try:                                                       # doctest: +SKIP
        ...     router.complete(request, tools=tools)
        ... except MalformedResponse as err:
        ...     print(err.deployment, err.what)
        openai/gpt-4o-mini a tool call without a usable name
    """

    def __init__(self, step: str, tier: str, *, deployment: str, provider: str, what: str,
                 attempts: Sequence[Attempt] = (), started_ns: int | None = None,
                 ended_ns: int | None = None, cost_usd: float | None = None) -> None:
        self.deployment = deployment
        """The configured model string of the deployment that answered."""
        self.provider = provider
        self.what = what
        """What was wrong with the answer (never its text)."""
        self.cost_usd = cost_usd
        """What the answer cost (its usage at the deployment's price), when its usage is known."""
        answered = Attempt(deployment, type(self).__name__, provider, started_ns, ended_ns, message=what,
                           cost_usd=cost_usd)
        super().__init__(step, tier, (*attempts, answered), detail=f"{type(self).__name__}: {what}")

    @classmethod
    def at(cls, step: str, deployment: Any, what: str, attempts: Sequence[Attempt] = (),
           cost_usd: float | None = None) -> MalformedResponse:
        """The error for ``deployment``'s answer (a :class:`~steproute.dispatch.Deployment`:
        its ``tier``, ``model`` and ``provider``), which cost ``cost_usd`` when known."""
        return cls(step, deployment.tier, deployment=deployment.model, provider=deployment.provider, what=what,
                   attempts=attempts, cost_usd=cost_usd)

    def paid(self, cost_usd: float) -> MalformedResponse:
        """The same error, for an answer now known to have cost ``cost_usd`` (a stream read to its end)."""
        attempts = self.attempts[:-1]
        return type(self)(self.step, self.tier, deployment=self.deployment, provider=self.provider, what=self.what,
                          attempts=attempts, cost_usd=cost_usd)

    def _text(self) -> str:
        return (f"step '{self.step}', {self._which()}: the answer of deployment '{self.deployment}' cannot be "
                f"used: {self.what}; attempts: {self._tried()}")


class StreamedCallNames:
    """Checks a stream's tool calls as they come: the first piece of each call names it (as
    OpenAI, and LiteLLM for every provider, send them); a call whose first piece has no usable
    name raises :class:`MalformedResponse` before that piece is passed on (so a stream that
    opens with it can still fall back to the next tier).

    Example:
        >>> names = StreamedCallNames("plan", None)
        >>> list(names.seen([]))
        []
    """

    def __init__(self, step: str, deployment: Any, attempts: Sequence[Attempt] = ()) -> None:
        self._where = (step, deployment, tuple(attempts))
        self._started: set[int] = set()

    def seen(self, chunks: Iterable[_Chunk]) -> Iterator[_Chunk]:
        """Pass ``chunks`` (each with ``tool_call_chunks``) through, checking the calls' names."""
        for chunk in chunks:
            calls: Any = getattr(chunk, "tool_call_chunks", ())
            for call in calls:
                if call.index not in self._started:
                    self._started.add(call.index)
                    if not usable_name(call.name):
                        step, deployment, attempts = self._where
                        raise MalformedResponse.at(step, deployment, "a tool call without a usable name", attempts)
            yield chunk
