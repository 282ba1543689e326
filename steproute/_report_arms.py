"""``steproute report --by arm``: an A/B experiment's arms compared, step by step, from a decision log.

Per experiment, per arm and step: calls, cost per call, tier mix, escalation rate and the quality
from feedback, each mean with a 95% interval, and each arm's difference from the control (its
first arm) with a 95% interval. Calls that had no unit id (no thread, or no tenant) went to the
control unassigned: they are counted apart and left out, since they were not randomised.

Intervals: a percentile bootstrap (:data:`RESAMPLES` resamples, a fixed seed, so a report reads the
same every time) while both samples hold at most :data:`BOOTSTRAP_MAX` values; above that, the normal
approximation (mean ± 1.96 standard errors; Welch's for a difference), which the bootstrap agrees
with at that size. Fewer than two values: no interval.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from steproute._text_table import text_table
from steproute.decision_log import LogContents

__all__ = ["BOOTSTRAP_MAX", "RESAMPLES", "ArmReport", "ArmStep", "ExperimentArms", "arm_report", "arm_report_json",
           "diff_interval", "format_arm_report", "mean_interval"]

RESAMPLES = 1000
BOOTSTRAP_MAX = 1000
_Z95 = 1.959963984540054
Interval = tuple[float, float]


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _var(values: Sequence[float]) -> float:
    m = _mean(values)
    return math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)


def _resampled(values: Sequence[float], rng: random.Random) -> float:
    return _mean(rng.choices(values, k=len(values)))


def mean_interval(values: Sequence[float], seed: int = 0) -> Interval | None:
    """A 95% interval of the mean of ``values`` (``None``: fewer than two).

    Example:
        >>> low, high = mean_interval([0.0, 1.0] * 50)
        >>> round(low, 1), round(high, 1)
        (0.4, 0.6)
    """
    if len(values) < 2:
        return None
    if len(values) > BOOTSTRAP_MAX:
        half = _Z95 * math.sqrt(_var(values) / len(values))
        return _mean(values) - half, _mean(values) + half
    rng = random.Random(seed)
    means = sorted(_resampled(values, rng) for _ in range(RESAMPLES))
    return means[int(0.025 * RESAMPLES)], means[int(0.975 * RESAMPLES) - 1]


def diff_interval(values: Sequence[float], control: Sequence[float], seed: int = 0) -> Interval | None:
    """A 95% interval of ``mean(values) - mean(control)`` (independent samples; ``None``: either
    has fewer than two values).

    Example:
        >>> low, high = diff_interval([1.0] * 40 + [0.0] * 60, [1.0] * 80 + [0.0] * 20)
        >>> low < -0.4 < high < 0
        True
    """
    if len(values) < 2 or len(control) < 2:
        return None
    delta = _mean(values) - _mean(control)
    if max(len(values), len(control)) > BOOTSTRAP_MAX:
        half = _Z95 * math.sqrt(_var(values) / len(values) + _var(control) / len(control))
        return delta - half, delta + half
    rng = random.Random(seed)
    deltas = sorted(_resampled(values, rng) - _resampled(control, rng) for _ in range(RESAMPLES))
    return deltas[int(0.025 * RESAMPLES)], deltas[int(0.975 * RESAMPLES) - 1]


@dataclass
class ArmStep:
    """One arm's calls at one step."""

    arm: str
    step: str
    costs: list[float] = field(default_factory=list)
    tiers: Counter[str] = field(default_factory=Counter)
    escalations: int = 0
    errors: int = 0
    ratings: list[float] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.costs)

    @property
    def cost_per_call(self) -> float:
        return _mean(self.costs) if self.costs else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalations / self.calls if self.calls else 0.0

    @property
    def quality(self) -> float | None:
        return _mean(self.ratings) if self.ratings else None


@dataclass
class ExperimentArms:
    """One experiment's arms as a log shows them."""

    name: str
    unit: str
    control: str
    arms: list[str] = field(default_factory=list)
    """Control first, then in order of first appearance."""
    rows: dict[tuple[str, str], ArmStep] = field(default_factory=dict)
    units: dict[str, set[str]] = field(default_factory=dict)
    """Arm → the distinct threads (or tenants) assigned to it."""
    unassigned: int = 0
    """Calls with no unit id (sent to the control, left out of the comparison)."""

    def row(self, arm: str, step: str) -> ArmStep:
        if arm not in self.arms:
            self.arms.append(arm)
        return self.rows.setdefault((arm, step), ArmStep(arm, step))

    def ordered(self) -> list[ArmStep]:
        """The rows, arm by arm (control first), steps in order of first appearance."""
        rank = {a: i for i, a in enumerate(sorted(self.arms, key=lambda a: a != self.control))}
        return sorted(self.rows.values(), key=lambda r: rank[r.arm])


@dataclass(frozen=True)
class ArmReport:
    """Every experiment of a log (see :func:`arm_report`)."""

    experiments: tuple[ExperimentArms, ...]


def arm_report(contents: LogContents) -> ArmReport:
    """The experiments of a log's decisions: those with ``experiment`` and ``arm`` keys (refused
    calls are left out, as in the step report).

    Example:
        >>> log = LogContents(decisions=[{"id": "a", "step": "answer", "tier": "fast", "cost_usd": 0.1,
        ...     "experiment": "e", "arm": "cheap", "control_arm": "control", "assigned": True, "thread": "t1"}])
        >>> row = arm_report(log).experiments[0].ordered()[0]
        >>> row.arm, row.calls, row.cost_per_call
        ('cheap', 1, 0.1)
    """
    experiments: dict[str, ExperimentArms] = {}
    for d in contents.decisions:
        name, arm = d.get("experiment"), d.get("arm")
        if not isinstance(name, str) or not isinstance(arm, str) or d.get("outcome") == "refused":
            continue
        unit = str(d.get("unit") or "thread")
        exp = experiments.setdefault(name, ExperimentArms(name, unit, str(d.get("control_arm") or arm)))
        if d.get("assigned") is False:
            exp.unassigned += 1
            continue
        row = exp.row(arm, str(d.get("step")))
        cost = d.get("cost_usd")
        row.costs.append(float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0.0)
        row.tiers[str(d.get("tier"))] += 1
        row.escalations += bool(d.get("escalated_from"))
        row.errors += bool(d.get("error"))
        feedback = contents.feedback.get(d.get("id", ""))
        if feedback is not None:
            row.ratings.append(float(feedback["quality"]))
        who = d.get("tenant") if unit == "tenant" else d.get("thread")
        if who is not None:
            exp.units.setdefault(arm, set()).add(str(who))
    return ArmReport(tuple(experiments.values()))


def _vs_control(row: ArmStep, control: ArmStep | None) -> dict[str, Any] | None:
    if control is None or row is control:
        return None
    quality = None if row.quality is None or control.quality is None else row.quality - control.quality
    return {"cost_per_call_usd": row.cost_per_call - control.cost_per_call,
            "cost_per_call_ci": diff_interval(row.costs, control.costs),
            "quality": quality, "quality_ci": diff_interval(row.ratings, control.ratings)}


def _row_json(row: ArmStep, control: ArmStep | None) -> dict[str, Any]:
    return {"arm": row.arm, "step": row.step, "calls": row.calls, "errors": row.errors, "cost_usd": math.fsum(row.costs),
            "cost_per_call_usd": row.cost_per_call, "cost_per_call_ci": mean_interval(row.costs),
            "tiers": {t: n / row.calls for t, n in row.tiers.most_common()},
            "escalation_rate": row.escalation_rate, "quality": row.quality, "quality_ci": mean_interval(row.ratings),
            "rated": len(row.ratings), "vs_control": _vs_control(row, control)}


def arm_report_json(report: ArmReport) -> dict[str, Any]:
    """The ``--by arm --json`` object: ``experiments``, each with its rows (arm × step) and, per
    row, ``vs_control`` (``None`` for the control's own rows, and for steps the control never called)."""
    out = []
    for exp in report.experiments:
        rows = [_row_json(r, exp.rows.get((exp.control, r.step))) for r in exp.ordered()]
        out.append({"experiment": exp.name, "unit": exp.unit, "control": exp.control, "unassigned": exp.unassigned,
                    "units": {a: len(exp.units.get(a, ())) for a in exp.arms}, "rows": rows})
    return {"experiments": out}


def _usd(value: float) -> str:
    return f"{value:.6f}"


def _ci(interval: Sequence[float] | None, money: bool = False) -> str:
    if interval is None:
        return ""
    low, high = interval
    return f" [{_usd(low)}, {_usd(high)}]" if money else f" [{low:.2f}, {high:.2f}]"


def _signed(value: float | None, interval: Sequence[float] | None, money: bool = False) -> str:
    if value is None:
        return "-"
    return (f"{value:+.6f}" if money else f"{value:+.2f}") + _ci(interval, money)


def format_arm_report(report: ArmReport) -> str:
    """The experiments as text: a header line each (unit, control, units per arm, calls left out),
    then one row per arm and step."""
    if not report.experiments:
        return "no decision in the log carries an experiment arm"
    parts = []
    for exp in report.experiments:
        left = f"; {exp.unassigned} call{'s' if exp.unassigned != 1 else ''} without a unit id left out" \
            if exp.unassigned else ""
        units = ", ".join(f"{a} {len(exp.units.get(a, ()))}" for a in sorted(exp.arms, key=lambda a: a != exp.control))
        parts.append(f"experiment {exp.name!r} (unit: {exp.unit}; control: {exp.control!r}{left})\n"
                     f"{exp.unit}s per arm: {units}")
        rows = []
        for r in exp.ordered():
            vs = _vs_control(r, exp.rows.get((exp.control, r.step)))
            mix = ", ".join(f"{t} {n / r.calls:.0%}" for t, n in r.tiers.most_common())
            quality = "-" if r.quality is None else f"{r.quality:.2f}{_ci(mean_interval(r.ratings))}"
            rows.append((r.arm, r.step, str(r.calls), _usd(r.cost_per_call) + _ci(mean_interval(r.costs), True),
                         "-" if vs is None else _signed(vs["cost_per_call_usd"], vs["cost_per_call_ci"], True),
                         mix, f"{r.escalation_rate:.0%}", quality, str(len(r.ratings)),
                         "-" if vs is None else _signed(vs["quality"], vs["quality_ci"])))
        parts.append(text_table(("arm", "step", "calls", "cost/call $ [95% CI]", "Δ cost/call vs control",
                                 "tier mix", "escalated", "quality [95% CI]", "rated", "Δ quality vs control"), rows))
    return "\n\n".join(parts)

