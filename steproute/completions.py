"""What a model call answers, as steproute passes it on: a :class:`Completion` (or the
:class:`CompletionChunk` pieces of a stream) with its tool calls, usage, cost and logprobs, and
the :class:`Deployment` that answered. Values only; :mod:`steproute.dispatch` makes them.

Example:
    >>> from steproute.types import Usage
    >>> Completion(content="hi", model="openai/gpt-4o-mini", provider="openai", usage=Usage(3, 1), cost_usd=1e-6).tool_calls
    ()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steproute._litellm import supports_logprobs, supports_response_format
from steproute.errors import Attempt
from steproute.pricing import Price
from steproute.types import Usage

__all__ = ["Completion", "CompletionChunk", "Deployment", "TokenLogprob", "ToolCall", "ToolCallChunk"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text, as the provider sent it."""


@dataclass(frozen=True)
class ToolCallChunk:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """The log-probability of one generated token (``logprobs=True``), with the runner-up
    tokens when ``top_logprobs=k`` was asked for."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """A finished answer from one deployment."""

    content: str
    model: str
    """The configured model string of the deployment that answered."""
    provider: str
    usage: Usage
    cost_usd: float
    """The call's cost, at the price of the deployment that answered."""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    response_model: str | None = None
    """The model name the provider reported."""
    response_id: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    """Per-token log-probabilities, when the call asked for them and the provider sent them."""
    failed_attempts: tuple[Attempt, ...] = ()
    """Deployments tried before the one that answered (in-tier fallback), in order."""


@dataclass(frozen=True)
class CompletionChunk:
    """One streamed piece. The last chunk of a stream carries ``usage`` and ``cost_usd``."""

    content: str = ""
    tool_call_chunks: tuple[ToolCallChunk, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    model: str | None = None
    provider: str | None = None
    failed_attempts: tuple[Attempt, ...] = ()
    """On the usage chunk: deployments tried before the one that answered."""


@dataclass(frozen=True)
class Deployment:
    """A deployment ready to call: its LiteLLM parameters, provider and price."""

    tier: str
    index: int
    model: str
    provider: str
    price: Price
    params: Mapping[str, Any] = field(repr=False)

    @property
    def id(self) -> str:
        return f"{self.tier}/{self.index}"

    def takes_response_format(self, method: str) -> bool:
        """Whether the model takes ``method``'s response format (``json_schema``, ``json_mode``)."""
        return supports_response_format(self.model, self.provider, method)

    def takes_logprobs(self) -> bool:
        """Whether the model takes the ``logprobs`` parameter (a cascade asks for them only then)."""
        return supports_logprobs(self.model, self.provider)
