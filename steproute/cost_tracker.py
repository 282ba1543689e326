"""A LangChain callback handler that keeps the bill of a run: one line per routed call.

Pass it in a run's ``callbacks`` and read, per step, the tier and model that answered, tokens,
latency, cost and what the baseline tier would have cost.

Example:
    >>> from steproute import RouterConfig, StepRouter
    >>> router = StepRouter(RouterConfig(tiers={
    ...     "fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "hi"}]},
    ...     "strong": {"models": [{"model": "openai/gpt-4o", "mock_response": "hello"}]}}, default="fast"))
    >>> tracker = StepCostTracker()
    >>> _ = router.chat_model(step="greet").invoke("hello", config={"callbacks": [tracker]})
    >>> [(c.step, c.tier, c.model) for c in tracker.calls]
    [('greet', 'fast', 'openai/gpt-4o-mini')]
    >>> tracker.total_cost_usd < tracker.total_baseline_cost_usd
    True
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from steproute._text_table import text_table
from steproute.telemetry import usd

__all__ = ["StepCall", "StepCostTracker"]


@dataclass(frozen=True)
class StepCall:
    """One routed model call of a run."""

    step: str
    kind: str | None
    tier: str
    model: str
    """The deployment that answered."""
    reason: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    """From the call's start to its answer, as LangChain's callbacks saw it."""
    cost_usd: float
    baseline_cost_usd: float
    """What the same tokens would have cost on the baseline tier."""
    logprobs: int = 0
    """Number of tokens that came back with a log-probability."""

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd


class StepCostTracker(BaseCallbackHandler):
    """Collects a :class:`StepCall` for every answer that steproute routed. Thread-safe."""

    def __init__(self) -> None:
        self.calls: list[StepCall] = []
        self._started: dict[UUID, float] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._started[run_id] = time.perf_counter()

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        ended = time.perf_counter()
        with self._lock:
            started = self._started.pop(run_id, ended)
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                routed = (getattr(message, "response_metadata", None) or {}).get("steproute")
                if message is None or routed is None:
                    continue
                usage = message.usage_metadata or {}
                logprobs = (message.response_metadata.get("logprobs") or {}).get("content") or ()
                call = StepCall(
                    step=routed["step"], kind=routed.get("kind"), tier=routed["tier"], model=routed["model"],
                    reason=routed["reason"], input_tokens=usage.get("input_tokens", 0),
                    output_tokens=usage.get("output_tokens", 0), latency_s=ended - started,
                    cost_usd=routed["cost_usd"], baseline_cost_usd=routed["baseline_cost_usd"], logprobs=len(logprobs),
                )
                with self._lock:
                    self.calls.append(call)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._started.pop(run_id, None)

    @property
    def total_cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    @property
    def total_baseline_cost_usd(self) -> float:
        return sum(c.baseline_cost_usd for c in self.calls)

    def table(self, *, reasons: bool = False, per_step: bool = False) -> str:
        """The bill as a plain-text table, one row per call (``per_step``: per step, with its
        calls counted, e.g. one row per agent of a multi-agent app) and a total row."""
        if per_step:
            return self._per_step_table()
        header = ["step", "tier", "model", "tokens in/out", "latency", "cost", "baseline", "saving"]
        if reasons:
            header.append("why")
        rows: list[list[str]] = []
        for c in self.calls:
            row = [c.step, c.tier, c.model, f"{c.input_tokens}/{c.output_tokens}", f"{c.latency_s:.2f}s",
                   usd(c.cost_usd), usd(c.baseline_cost_usd), _share(c.savings_usd, c.baseline_cost_usd)]
            rows.append([*row, c.reason] if reasons else row)
        total, baseline = self.total_cost_usd, self.total_baseline_cost_usd
        latency = sum(c.latency_s for c in self.calls)
        rows.append(["TOTAL", "", "", f"{sum(c.input_tokens for c in self.calls)}/{sum(c.output_tokens for c in self.calls)}",
                     f"{latency:.2f}s", usd(total), usd(baseline), _share(baseline - total, baseline)]
                    + ([""] if reasons else []))
        return text_table(header, rows)


    def _per_step_table(self) -> str:
        groups: dict[str, list[StepCall]] = {}
        for c in self.calls:
            groups.setdefault(c.step, []).append(c)
        rows = []
        for step, calls in groups.items():
            cost, baseline = sum(c.cost_usd for c in calls), sum(c.baseline_cost_usd for c in calls)
            tiers = ", ".join(dict.fromkeys(c.tier for c in calls))
            rows.append([step, str(len(calls)), tiers, f"{sum(c.input_tokens for c in calls)}/"
                         f"{sum(c.output_tokens for c in calls)}", usd(cost), usd(baseline),
                         _share(baseline - cost, baseline)])
        total, baseline = self.total_cost_usd, self.total_baseline_cost_usd
        rows.append(["TOTAL", str(len(self.calls)), "", f"{sum(c.input_tokens for c in self.calls)}/"
                     f"{sum(c.output_tokens for c in self.calls)}", usd(total), usd(baseline),
                     _share(baseline - total, baseline)])
        return text_table(["step", "calls", "tiers", "tokens in/out", "cost", "baseline", "saving"], rows)


def _share(saved: float, baseline: float) -> str:
    return f"{saved / baseline:.0%}" if baseline else "-"
