"""What a routed call returns: :class:`RoutedCompletion` (a call) and :class:`StreamSummary`
(the last item of a stream), each with its decision and what it cost beside the baseline.

Example:
    >>> from steproute.types import Decision, Usage
    >>> d = Decision(step="plan", kind=None, tier="fast", model="openai/gpt-4o-mini", policy="fixed", reason="r")
    >>> StreamSummary(d, Usage(10, 5), cost_usd=0.001, baseline_cost_usd=0.004).savings_usd
    0.003
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steproute.dispatch import Completion, StreamCollector
from steproute.types import Decision, Usage

__all__ = ["RoutedCompletion", "StreamState", "StreamSummary", "batch_results", "summary_of"]


@dataclass(frozen=True)
class RoutedCompletion:
    """A routed call's answer, its decision and what it cost."""

    decision: Decision
    """The decision, with ``model`` set to the deployment that answered."""
    completion: Completion
    cost_usd: float
    baseline_cost_usd: float
    """The same token usage priced at the baseline tier's first model."""

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd


@dataclass(frozen=True)
class StreamSummary:
    """The last item of :meth:`StepRouter.stream`: decision and cost of the streamed call."""

    decision: Decision
    usage: Usage
    cost_usd: float
    baseline_cost_usd: float
    finish_reason: str | None = None
    content: str = ""
    """The streamed text, joined."""

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd


def summary_of(routed: RoutedCompletion) -> StreamSummary:
    """A call's result as the last item of a stream gives it."""
    completion = routed.completion
    return StreamSummary(routed.decision, completion.usage, routed.cost_usd, routed.baseline_cost_usd,
                         completion.finish_reason, completion.content)


class StreamState(StreamCollector):
    """A tier's live stream: its chunks so far, and the decision of the tier that streams them."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.model)
        self.decision = decision


def batch_results(results: list[Any], return_exceptions: bool) -> list[Any]:
    """A batch's results in order; the first error raised unless ``return_exceptions``."""
    if not return_exceptions:
        for item in results:
            if isinstance(item, BaseException):
                raise item
    return results
