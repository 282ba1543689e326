"""The bookkeeping of one routed call: its spans, metrics and decision-log entry.

The router opens a :class:`CallRecord` before deciding and closes it with the answer or the
error; sync, async and streaming calls share it, so all of them are observed the same way.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steproute.decision_log import DecisionLog
    from steproute.dispatch import Deployment
    from steproute.telemetry import Telemetry
    from steproute.types import Decision, StepRequest, Usage

__all__ = ["CallRecord"]


class CallRecord:
    """Spans, metrics and the log entry of one call, from decision to answer."""

    __slots__ = ("_chat", "_deployment", "_log", "_route", "_started", "_telemetry", "decision", "request")

    def __init__(self, telemetry: Telemetry, log: DecisionLog | None, request: StepRequest) -> None:
        self._telemetry = telemetry
        self._log = log
        self.request = request
        self._started = time.perf_counter()
        self._route = telemetry.start_route(request)
        self._chat: Any = None
        self._deployment: Deployment | None = None
        self.decision: Decision | None = None

    def decided(self, decision: Decision, deployment: Deployment) -> None:
        self.decision = decision
        self._deployment = deployment
        self._telemetry.decided(self._route, decision, time.perf_counter() - self._started)
        self._chat = self._telemetry.start_chat(self._route, deployment)

    def answered(
        self,
        decision: Decision,
        *,
        usage: Usage,
        cost_usd: float,
        baseline_cost_usd: float,
        provider: str,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reason: str | None = None,
        response: str | None = None,
    ) -> None:
        """The call succeeded; ``decision.model`` is the deployment that answered."""
        self._telemetry.end_chat(self._chat, decision, model=decision.model, provider=provider, usage=usage,
                                 cost_usd=cost_usd, response_model=response_model, response_id=response_id,
                                 finish_reason=finish_reason)
        self._telemetry.end_route(self._route, cost_usd, baseline_cost_usd)
        if self._log is not None:
            entry = self._entry(decision, usage, cost_usd, baseline_cost_usd)
            if self._log.include_prompts and response is not None:
                entry["response"] = response
            self._log.write(entry)

    def failed(self, error: BaseException) -> None:
        decision = self.decision
        if decision is not None and self._chat is not None and self._deployment is not None:
            self._telemetry.end_chat(self._chat, decision, model=decision.model, provider=self._deployment.provider,
                                     usage=None, cost_usd=0.0, error=error)
        self._telemetry.end_route(self._route, 0.0, 0.0, error)
        if self._log is not None and decision is not None:
            entry = self._entry(decision, None, 0.0, 0.0)
            entry["error"] = type(error).__name__
            self._log.write(entry)

    def _entry(self, decision: Decision, usage: Usage | None, cost: float, baseline: float) -> dict[str, Any]:
        request = self.request
        entry: dict[str, Any] = {
            "type": "decision",
            "id": decision.id,
            "ts": time.time(),
            "step": decision.step,
            "kind": decision.kind,
            "tier": decision.tier,
            "model": decision.model,
            "policy": decision.policy,
            "reason": decision.reason,
            "score": decision.score,
            "pinned": decision.pinned,
            "escalated_from": decision.escalated_from,
            "thread": decision.thread,
            "tenant": request.tenant,
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "cost_usd": cost,
            "baseline_cost_usd": baseline,
            "latency_s": round(time.perf_counter() - self._started, 6),
            "trace_id": self._telemetry.trace_id(self._route),
        }
        if self._log is not None and self._log.include_prompts:
            entry["messages"] = list(request.messages)
        return entry
