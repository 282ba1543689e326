"""Test a routed graph without a server: tiers answered by a plain function.

:class:`FunctionTransport` stands in for LiteLLM behind the router (see
:mod:`steproute.tier_client`). Everything above it is real: the decision, pins, guards and
budgets, the cross-tier fallback and the cascade (one tier walk), spans, the decision log and
costs (usage counted with LiteLLM's tokenizer, priced at each deployment's configured price).

The function gets a :class:`TierCall` per deployment tried and returns the answer's text, a
:class:`Reply` (text, tool calls, a finish reason, usage), or raises to make that deployment
fail: the tier's next deployment is tried, and when every one failed the tier has failed (a
:class:`~steproute.errors.DispatchError` naming each attempt), so the walk falls back or
escalates as configured. Raise a :class:`~steproute.errors.DispatchError` (or a
:class:`~steproute.errors.ProviderError`) yourself to fail the whole tier at once with it.

Example:
    >>> from steproute import RouterConfig, StepRequest, StepRouter
    >>> def answer(call: TierCall) -> str:
    ...     if call.tier == "fast":
    ...         raise TimeoutError("the fast tier is down")
    ...     return "42"
    >>> config = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]},
    ...                              "strong": {"models": ["openai/gpt-4o"]}}, default="fast")
    >>> result = StepRouter(config, transport=FunctionTransport(answer)).complete(
    ...     StepRequest("calc", [{"role": "user", "content": "6 * 7?"}]))
    >>> result.completion.content, result.decision.tier, result.decision.fallback_from
    ('42', 'strong', 'fast')
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from steproute.completions import Completion, CompletionChunk, Deployment, ToolCall, ToolCallChunk
from steproute.config import DispatchConfig
from steproute.errors import Attempt, DispatchError
from steproute.pricing import call_cost, estimate_usage
from steproute.tier_client import TierClient
from steproute.types import Usage

__all__ = ["FunctionTransport", "Reply", "TierCall"]


@dataclass(frozen=True)
class TierCall:
    """One call the function answers: to one deployment of one tier."""

    step: str
    tier: str
    model: str
    """The configured model string of the deployment called."""
    messages: Sequence[Mapping[str, Any]]
    """The request's messages, as sent (OpenAI format, the tier's style applied)."""
    params: Mapping[str, Any]
    """LiteLLM parameters of the call (``tools``, ``temperature``, ``response_format`` …)."""
    deployment: int = 0
    """The deployment's position in the tier's ``models`` list."""


@dataclass(frozen=True)
class Reply:
    """An answer with more than text."""

    content: str = ""
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: str | None = None
    """Default: ``tool_calls`` when there are tool calls, else ``stop``."""
    usage: Usage | None = None
    """Default: counted from the messages and the answer with LiteLLM's tokenizer."""
    extra: Mapping[str, Any] = field(default_factory=dict)


Answer = str | Reply | Completion
Handler = Callable[[TierCall], Answer | Awaitable[Answer]]


class FunctionTransport:
    """A :class:`~steproute.tier_client.Transport` whose tiers are answered by ``handler``
    (sync, or async for async calls). ``calls`` lists every :class:`TierCall` made, in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[TierCall] = []

    def client(self, tier: str, deployments: Sequence[Deployment], settings: DispatchConfig,
               tool_calling: str) -> TierClient:
        return _FunctionTier(self, tier, tuple(deployments))


class _FunctionTier:
    def __init__(self, transport: FunctionTransport, tier: str, deployments: tuple[Deployment, ...]) -> None:
        self._transport, self._tier, self._deployments = transport, tier, deployments

    def _order(self, prefer: str | None) -> list[Deployment]:
        return sorted(self._deployments, key=lambda d: d.model != prefer) if prefer else list(self._deployments)

    def _call(self, d: Deployment, step: str, messages: Sequence[Mapping[str, Any]],
              params: Mapping[str, Any]) -> TierCall:
        call = TierCall(step, self._tier, d.model, tuple(messages), dict(params), d.index)
        self._transport.calls.append(call)
        return call

    def _completion(self, answer: Answer, d: Deployment, call: TierCall, failed: list[Attempt]) -> Completion:
        if isinstance(answer, Completion):
            return answer
        reply = answer if isinstance(answer, Reply) else Reply(str(answer))
        usage = reply.usage or estimate_usage(d.model, call.messages, reply.content)
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        return Completion(reply.content, d.model, d.provider, usage, call_cost(d.price, usage),
                          tool_calls=tuple(reply.tool_calls), finish_reason=finish, response_model=d.model,
                          response_id=f"function-{len(self._transport.calls)}", failed_attempts=tuple(failed))

    def _failed(self, step: str, failed: list[Attempt]) -> DispatchError:
        return DispatchError(step, self._tier, tuple(failed))

    def _tries(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
               prefer: str | None) -> Iterator[tuple[Deployment, TierCall, int]]:
        for d in self._order(prefer):
            yield d, self._call(d, step, messages, params), time.time_ns()

    @staticmethod
    def _failure(d: Deployment, error: Exception, started: int) -> Attempt:
        if isinstance(error, DispatchError):  # the handler failed the whole tier itself
            raise error
        return Attempt(d.model, type(error).__name__, d.provider, started, time.time_ns())

    def complete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                 prefer: str | None = None) -> Completion:
        failed: list[Attempt] = []
        for d, call, started in self._tries(step, messages, params, prefer):
            try:
                answer = self._transport.handler(call)
                if inspect.isawaitable(answer):
                    getattr(answer, "close", lambda: None)()  # never awaited: closed, no warning
                    raise TypeError("an async handler answers async calls only (acomplete, astream, ainvoke)")
            except Exception as exc:
                failed.append(self._failure(d, exc, started))
                continue
            return self._completion(answer, d, call, failed)
        raise self._failed(step, failed)

    async def acomplete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                        prefer: str | None = None) -> Completion:
        failed: list[Attempt] = []
        for d, call, started in self._tries(step, messages, params, prefer):
            try:
                answer = self._transport.handler(call)
                answer = await answer if inspect.isawaitable(answer) else answer
            except Exception as exc:
                failed.append(self._failure(d, exc, started))
                continue
            return self._completion(answer, d, call, failed)
        raise self._failed(step, failed)

    def stream(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
               prefer: str | None = None) -> Iterator[CompletionChunk]:
        yield from _chunks(self.complete(step, messages, params, prefer))

    async def astream(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                      prefer: str | None = None) -> AsyncIterator[CompletionChunk]:
        for chunk in _chunks(await self.acomplete(step, messages, params, prefer)):
            yield chunk


def _chunks(completion: Completion) -> Iterator[CompletionChunk]:
    """An answer streamed a word at a time, tool calls whole, then the usage chunk."""
    for piece in re.findall(r"\S+\s*|\s+", completion.content):
        yield CompletionChunk(content=piece, model=completion.model, provider=completion.provider)
    if completion.tool_calls:
        yield CompletionChunk(tool_call_chunks=tuple(ToolCallChunk(i, c.id, c.name, c.arguments)
                                                     for i, c in enumerate(completion.tool_calls)),
                              model=completion.model, provider=completion.provider)
    yield CompletionChunk(finish_reason=completion.finish_reason, model=completion.model, provider=completion.provider)
    yield CompletionChunk(usage=completion.usage, cost_usd=completion.cost_usd, model=completion.model,
                          provider=completion.provider, failed_attempts=completion.failed_attempts)
