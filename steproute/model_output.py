"""What a model's answer must be for steproute to pass it on, and the error when it is not.

A deployment may answer with something that is not an answer: a tool call without a name
(native, or in a ``tool_calling: json`` tier's reply), a tool call whose arguments are not a
JSON object (LangChain would keep it as an ``invalid_tool_call``, which an agent's tool loop
never runs — or, streamed, parse the cut-short JSON into a call with partial arguments), or a
reply nested too deep to read.
steproute never passes such a call on (it would reach the agent as a call to a tool named
``''``) and never crashes on it: the tier's answer is a :class:`MalformedResponse`, a
:class:`~steproute.errors.DispatchError` that falls back to the next tier as a transient
failure does (the decision's reason, the attempt's ``chat`` span and one warning say so), or
is raised when the step has no tier to fall back to. The error names the step, the tier, the
deployment and what was wrong, never the answer's text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from steproute.errors import Attempt, DispatchError

__all__ = ["MalformedResponse", "StreamedCallNames", "arguments_problem", "first_choice_only", "usable_name"]

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


def arguments_problem(arguments: object) -> str | None:
    """What is wrong with a tool call's arguments as the provider sent them (``None``: they
    are a JSON object, or empty). Never quotes them.

    Example:
        >>> arguments_problem('{"a": 1}'), arguments_problem(""), arguments_problem('{"a": 1,')
        (None, None, 'the arguments of a tool call are not JSON')
    """
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return None
    if not isinstance(arguments, str):
        return "the arguments of a tool call are not text"
    try:
        value = json.loads(arguments)
    except RecursionError:
        return "the arguments of a tool call are nested too deep to read"
    except ValueError:
        return "the arguments of a tool call are not JSON"
    return None if isinstance(value, dict) else "the arguments of a tool call are not a JSON object"


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
                 ended_ns: int | None = None, cost_usd: float | None = None, usage: Any = None) -> None:
        self.deployment = deployment
        """The configured model string of the deployment that answered."""
        self.provider = provider
        self.what = what
        """What was wrong with the answer (never its text)."""
        self.cost_usd = cost_usd
        """What the answer cost (its usage at the deployment's price), when its usage is known."""
        answered = Attempt(deployment, type(self).__name__, provider, started_ns, ended_ns, message=what,
                           cost_usd=cost_usd, usage=usage)
        super().__init__(step, tier, (*attempts, answered), detail=f"{type(self).__name__}: {what}")

    @classmethod
    def at(cls, step: str, deployment: Any, what: str, attempts: Sequence[Attempt] = (),
           cost_usd: float | None = None, usage: Any = None) -> MalformedResponse:
        """The error for ``deployment``'s answer (a :class:`~steproute.dispatch.Deployment`:
        its ``tier``, ``model`` and ``provider``), which cost ``cost_usd`` for ``usage`` when known."""
        return cls(step, deployment.tier, deployment=deployment.model, provider=deployment.provider, what=what,
                   attempts=attempts, cost_usd=cost_usd, usage=usage)

    def paid(self, cost_usd: float, usage: Any = None) -> MalformedResponse:
        """The same error, for an answer now known to have cost ``cost_usd`` for ``usage`` (a
        stream read to its end)."""
        attempts = self.attempts[:-1]
        return type(self)(self.step, self.tier, deployment=self.deployment, provider=self.provider, what=self.what,
                          attempts=attempts, cost_usd=cost_usd, usage=usage)

    def _text(self) -> str:
        return (f"step '{self.step}', {self._which()}: the answer of deployment '{self.deployment}' cannot be "
                f"used: {self.what}; attempts: {self._tried()}")


class StreamedCallNames:
    """Checks a stream's tool calls: the first piece of each call names it (as OpenAI, and
    LiteLLM for every provider, send them), and a call whose first piece has no usable name
    raises :class:`MalformedResponse` at once. A call's argument pieces are held back (text
    streams live) until the chunk that finishes the choice, then checked whole and passed on
    as one piece per call: arguments that are not a JSON object raise
    :class:`MalformedResponse` too, before any of the call reached the caller (so a stream
    that carried no text yet can still fall back to the next tier).

    Example:
        >>> names = StreamedCallNames("plan", None)
        >>> list(names.seen([]))
        []
    """

    def __init__(self, step: str, deployment: Any, attempts: Sequence[Attempt] = ()) -> None:
        self._where = (step, deployment, tuple(attempts))
        self._calls: dict[int, Any] = {}
        """Each call's pieces so far, joined: index -> the first piece with ``arguments`` grown."""

    def _malformed(self, what: str) -> MalformedResponse:
        step, deployment, attempts = self._where
        return MalformedResponse.at(step, deployment, what, attempts)

    def seen(self, chunks: Iterable[_Chunk]) -> Iterator[_Chunk]:
        """Pass ``chunks`` (dataclasses with ``tool_call_chunks`` and ``finish_reason``) through,
        the tool calls held back and checked until the finishing chunk."""
        for chunk in chunks:
            calls: Any = getattr(chunk, "tool_call_chunks", ())
            for call in calls:
                held = self._calls.get(call.index)
                if held is None:
                    if not usable_name(call.name):
                        raise self._malformed("a tool call without a usable name")
                    self._calls[call.index] = dataclasses.replace(call, arguments=call.arguments or "")
                else:
                    self._calls[call.index] = dataclasses.replace(
                        held, id=held.id or call.id, arguments=held.arguments + (call.arguments or ""))
            finished = getattr(chunk, "finish_reason", None) is not None
            if finished and self._calls:
                for call in self._calls.values():
                    problem = arguments_problem(call.arguments)
                    if problem is not None:
                        raise self._malformed(problem)
                whole = tuple(self._calls[i] for i in sorted(self._calls))
                self._calls = {}
                yield dataclasses.replace(chunk, tool_call_chunks=whole)  # type: ignore[type-var]
            elif calls:
                if getattr(chunk, "content", ""):
                    yield dataclasses.replace(chunk, tool_call_chunks=())  # type: ignore[type-var]
            else:
                yield chunk
