"""Calling one tier: the seam between the tier walk and whatever answers.

The walk (:mod:`steproute.tier_walk`) asks a :class:`TierClient` for one tier's answer; a
:class:`Transport` makes one client per tier. The default transport is LiteLLM's
(:class:`steproute.dispatch.LiteLLMTransport`: in-tier fallback, retries, cooldowns);
:class:`steproute.testing.FunctionTransport` answers from a plain function, so a graph can be
tested without a server or a key. Either way the answers are steproute's own
:class:`~steproute.completions.Completion` and :class:`~steproute.completions.CompletionChunk`,
priced at the deployment that answered.

Example:
    >>> from steproute import RouterConfig, StepRouter, StepRequest
    >>> from steproute.testing import FunctionTransport
    >>> config = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}}, default="fast")
    >>> router = StepRouter(config, transport=FunctionTransport(lambda call: f"{call.tier} says hi"))
    >>> router.complete(StepRequest("greet", [{"role": "user", "content": "hi"}])).completion.content
    'fast says hi'
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from steproute.completions import Completion, CompletionChunk, Deployment
from steproute.config import DispatchConfig

__all__ = ["TierClient", "Transport"]


@runtime_checkable
class TierClient(Protocol):
    """One tier's deployments behind one call. Every failure of the whole tier is raised as a
    :class:`~steproute.errors.DispatchError` (a :class:`~steproute.errors.ProviderError` for a
    provider's refusal), with each failed attempt; an answer that came after failed attempts
    lists them in ``failed_attempts``."""

    def complete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                 prefer: str | None = None) -> Completion:
        """The tier's answer; ``prefer`` names a deployment's model to try first (a pinned one)."""
        ...

    async def acomplete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                        prefer: str | None = None) -> Completion:
        ...

    def stream(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
               prefer: str | None = None) -> Iterator[CompletionChunk]:
        """The tier's answer in pieces; the last chunk carries ``usage`` and ``cost_usd``. A
        failure before the first chunk may move the call to another tier; after it, it cannot."""
        ...

    def astream(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                prefer: str | None = None) -> AsyncIterator[CompletionChunk]:
        ...


class Transport(Protocol):
    """Makes the :class:`TierClient` of each tier of a configuration."""

    def client(self, tier: str, deployments: Sequence[Deployment], settings: DispatchConfig,
               tool_calling: str) -> TierClient:
        """The client of ``tier``: its ``deployments`` in fallback order (each with its price),
        the configuration's ``dispatch`` settings and the tier's ``tool_calling`` mode."""
        ...
