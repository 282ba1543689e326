"""What one configuration measured on one workload: per task, per step, and summed up as JSON.

Example:
    >>> lo, hi = wilson(8, 10)
    >>> round(lo, 3), round(hi, 3)
    (0.49, 0.943)
    >>> run = TaskRun("t1", True, "42 == 42", (StepCall("plan", "small", ("small",), 0.002, 1.5, False),))
    >>> result = ConfigResult("static", "by hand", "per-step", [run])
    >>> sorted(result.to_json())[:5]
    ['cached_calls', 'calls', 'cost_per_task_usd', 'cost_usd', 'description']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from steproute._report_shadow import wilson as shadow_wilson

__all__ = ["ConfigResult", "StepCall", "TaskRun", "summary_json", "wilson"]


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a success rate (steproute's own, as in its shadow reports);
    ``(0, 1)`` for no trials."""
    return shadow_wilson(successes, n) or (0.0, 1.0)


@dataclass(frozen=True)
class StepCall:
    """One routed call of one step: the tier that answered, every tier tried, cost and latency."""

    step: str
    tier: str
    attempts: tuple[str, ...]
    """Tiers called in order (a cascade's rejected attempts first); one for a plain call."""
    cost_usd: float
    """Every attempt paid for."""
    latency_s: float
    """Model time of every attempt, as first measured (cached answers keep theirs)."""
    cached: bool
    """Every attempt was answered from the cache."""


@dataclass(frozen=True)
class TaskRun:
    """One task under one configuration."""

    task_id: str
    success: bool
    detail: str
    calls: tuple[StepCall, ...] = ()

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s for c in self.calls)


@dataclass
class ConfigResult:
    """A configuration's runs over the workload's tasks."""

    name: str
    description: str
    family: str
    """``always``, ``per-request``, ``per-step``."""
    runs: list[TaskRun] = field(default_factory=list)

    @property
    def successes(self) -> int:
        return sum(1 for r in self.runs if r.success)

    @property
    def success(self) -> float:
        return self.successes / len(self.runs) if self.runs else 0.0

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.runs)

    @property
    def latency_s(self) -> float:
        """Mean model time per task."""
        return sum(r.latency_s for r in self.runs) / len(self.runs) if self.runs else 0.0

    def steps(self) -> dict[str, dict[str, Any]]:
        """Per step: calls, cost, latency, the tiers that answered, escalations, its share of the cost."""
        by_step: dict[str, list[StepCall]] = {}
        for run in self.runs:
            for call in run.calls:
                by_step.setdefault(call.step, []).append(call)
        total = self.cost_usd or 1.0
        out = {}
        for step, calls in by_step.items():
            cost = sum(c.cost_usd for c in calls)
            out[step] = {
                "calls": len(calls),
                "cost_usd": round(cost, 8),
                "cost_share": round(cost / total, 4),
                "latency_s": round(sum(c.latency_s for c in calls) / len(self.runs), 3),
                "tiers": dict(sorted(Counter(c.tier for c in calls).items())),
                "escalated": sum(1 for c in calls if len(c.attempts) > 1),
            }
        return out

    def to_json(self, reference: ConfigResult | None = None) -> dict[str, Any]:
        """The configuration's figures; ``reference`` (always-strongest) adds the ratios to it."""
        lo, hi = wilson(self.successes, len(self.runs))
        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "family": self.family,
            "tasks": len(self.runs), "successes": self.successes,
            "success": round(self.success, 4), "success_ci95": [round(lo, 4), round(hi, 4)],
            "cost_usd": round(self.cost_usd, 8),
            "cost_per_task_usd": round(self.cost_usd / len(self.runs), 8) if self.runs else 0.0,
            "latency_s": round(self.latency_s, 3),
            "cached_calls": sum(1 for r in self.runs for c in r.calls if c.cached),
            "calls": sum(len(r.calls) for r in self.runs),
            "steps": self.steps(),
            "tasks_detail": [{"id": r.task_id, "success": r.success, "detail": r.detail[:200],
                              "tiers": [c.tier for c in r.calls]} for r in self.runs],
        }
        if reference is not None and reference.runs:
            out["success_vs_strongest"] = round(self.success / reference.success, 4) if reference.success else None
            out["cost_vs_strongest"] = round(self.cost_usd / reference.cost_usd, 4) if reference.cost_usd else None
        return out


def summary_json(workload: str, results: Sequence[ConfigResult], reference: str, **extra: Any) -> dict[str, Any]:
    """The benchmark's one JSON object: ``configs`` (each :meth:`ConfigResult.to_json`) and the run's facts."""
    ref = next((r for r in results if r.name == reference), None)
    return {"workload": workload, **extra, "reference": reference,
            "configs": [r.to_json(ref) for r in results]}
