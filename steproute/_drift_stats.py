"""The statistics of routing drift: each step's recent calls against the calls before them.

One test and one effect size per figure (see docs/drift.md for the choice and the thresholds):

==================  ==========================================  ===================================
figure              test (scipy.stats)                          effect size, must reach
==================  ==========================================  ===================================
tier mix            chi-square test of homogeneity (2 × tiers)  total variation distance ≥ 0.10
escalation rate     two-proportion z-test (the 2 × 2 chi-square Cohen's h ≥ 0.2
                    without continuity correction); Fisher's
                    exact test when an expected count is < 5
fallback rate       as escalation rate                          Cohen's h ≥ 0.2
cost per call       Mann-Whitney U, two-sided                   |A − 0.5| ≥ 0.06 (Vargha-Delaney A)
                                                                and the mean moved by ≥ 20 %
quality (feedback)  Mann-Whitney U, two-sided                   |A − 0.5| ≥ 0.06 and |Δ mean| ≥ 0.05
==================  ==========================================  ===================================

The p-values of every figure tested (over all steps at once for the command, over one step's
figures for :class:`~steproute.drift.DriftWatch`) are adjusted by Holm's step-down method, so
the chance that any figure of a steady log is flagged is at most ``alpha``. A figure *moved*
when its adjusted p-value is at most ``alpha`` and its effect reaches the threshold.
scipy is imported on first use (``pip install 'steproute[drift]'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

__all__ = [
    "FIGURES",
    "CallFacts",
    "DriftThresholds",
    "FigureChange",
    "StepDrift",
    "call_facts",
    "compare",
    "family_size",
    "holm",
    "judge",
]

FIGURES = ("tier_mix", "escalation_rate", "fallback_rate", "cost_per_call", "quality")
"""The figures compared, in the order they are shown."""


@dataclass(frozen=True)
class DriftThresholds:
    """When a step has drifted: the family-wise error rate and the smallest effects that count.

    Example:
        >>> DriftThresholds(alpha=0.05).min_calls
        30
    """

    alpha: float = 0.01
    """Family-wise false-alarm rate: Holm-adjusted p-values at most this are significant."""
    min_calls: int = 30
    """A step with fewer calls in either window gets no verdict ("not enough calls")."""
    min_rated: int = 20
    """Quality is compared only with at least this many rated calls in each window."""
    tier_mix_tvd: float = 0.10
    """Smallest total variation distance between the two tier mixes (share of calls that moved)."""
    rate_h: float = 0.2
    """Smallest Cohen's h between two rates (escalation, fallback): Cohen's "small" effect."""
    rank_a: float = 0.06
    """Smallest |A − 0.5| (Vargha-Delaney A, the Mann-Whitney effect size): their "small" effect."""
    cost_change: float = 0.20
    """Smallest relative change of the mean cost per call (0.2: 20 % up, or down to 1/1.2)."""
    quality_change: float = 0.05
    """Smallest change of the mean quality (on its 0..1 scale)."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError("DriftThresholds: alpha must be in (0, 1)")
        if isinstance(self.min_calls, bool) or not isinstance(self.min_calls, int) or self.min_calls < 2:
            raise ValueError("DriftThresholds: min_calls must be an integer of at least 2")
        if isinstance(self.min_rated, bool) or not isinstance(self.min_rated, int) or self.min_rated < 2:
            raise ValueError("DriftThresholds: min_rated must be an integer of at least 2")


class CallFacts(NamedTuple):
    """One call as drift sees it (from a decision-log entry)."""

    tier: str
    escalated: bool
    fell_back: bool
    cost_usd: float | None
    quality: float | None = None


def call_facts(entry: Mapping[str, Any], quality: float | None = None) -> CallFacts:
    """The facts of one decision-log entry: its final tier, whether a cascade escalated
    (``escalated_from``), whether a tier failed and another answered (``fallback_from``), its cost.

    Example:
        >>> call_facts({"tier": "strong", "escalated_from": "fast", "cost_usd": 0.002})
        CallFacts(tier='strong', escalated=True, fell_back=False, cost_usd=0.002, quality=None)
    """
    cost = entry.get("cost_usd")
    usd = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) else None
    return CallFacts(str(entry.get("tier")), bool(entry.get("escalated_from")), bool(entry.get("fallback_from")),
                     usd, quality)


@dataclass(frozen=True)
class FigureChange:
    """One figure of one step, before → after, with its test.

    ``before``/``after`` are a rate or a mean (a float), or for ``tier_mix`` the share of each
    tier. ``p_value`` is ``None`` when the figure was not tested (``note`` says why).
    """

    figure: str
    before: float | dict[str, float] | None
    after: float | dict[str, float] | None
    n_before: int
    n_after: int
    test: str | None = None
    p_value: float | None = None
    effect_name: str | None = None
    effect: float | None = None
    large_enough: bool = False
    """Whether the effect reaches its threshold (:class:`DriftThresholds`)."""
    p_adjusted: float | None = None
    """Holm-adjusted p-value (set by :func:`judge`)."""
    moved: bool = False
    """Significant after the correction and large enough (set by :func:`judge`)."""
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the figure."""
        return {"before": self.before, "after": self.after, "n_before": self.n_before, "n_after": self.n_after,
                "test": self.test, "p_value": self.p_value, "p_adjusted": self.p_adjusted,
                "effect_name": self.effect_name, "effect": self.effect, "large_enough": self.large_enough,
                "moved": self.moved, "note": self.note}


@dataclass(frozen=True)
class StepDrift:
    """One step's verdict: ``drifted`` when any figure moved; ``enough`` is false (and
    ``figures`` empty) when either window has fewer than ``min_calls`` calls."""

    step: str
    calls_before: int
    calls_recent: int
    enough: bool
    figures: tuple[FigureChange, ...] = field(default_factory=tuple)
    drifted: bool = False

    @property
    def moved(self) -> tuple[FigureChange, ...]:
        """The figures that moved."""
        return tuple(f for f in self.figures if f.moved)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``step``, ``drifted``, the windows' sizes and each figure by name."""
        return {"step": self.step, "drifted": self.drifted, "enough_calls": self.enough,
                "calls_before": self.calls_before, "calls_recent": self.calls_recent,
                "moved": [f.figure for f in self.moved], "figures": {f.figure: f.as_dict() for f in self.figures}}


def _stats() -> Any:
    try:
        from scipy import stats
    except ImportError as exc:  # pragma: no cover - the drift extra is installed in tests
        raise ImportError("drift detection needs scipy: pip install 'steproute[drift]'") from exc
    return stats


def compare(step: str, before: Sequence[CallFacts], recent: Sequence[CallFacts],
            thresholds: DriftThresholds = DriftThresholds()) -> StepDrift:
    """Every figure of one step, before → recent, with raw p-values (no verdict yet: :func:`judge`).

    Example:
        >>> calm = [CallFacts("fast", False, False, 0.001)] * 40
        >>> compare("plan", calm, calm).figures[0].note
        'not tested: the same in both windows'
    """
    if len(before) < thresholds.min_calls or len(recent) < thresholds.min_calls:
        return StepDrift(step, len(before), len(recent), enough=False)
    stats = _stats()
    figures = (
        _tier_mix(stats, before, recent, thresholds),
        _rate(stats, "escalation_rate", [c.escalated for c in before], [c.escalated for c in recent], thresholds),
        _rate(stats, "fallback_rate", [c.fell_back for c in before], [c.fell_back for c in recent], thresholds),
        _ranks(stats, "cost_per_call", [c.cost_usd for c in before if c.cost_usd is not None],
               [c.cost_usd for c in recent if c.cost_usd is not None], thresholds, 2),
        _ranks(stats, "quality", [c.quality for c in before if c.quality is not None],
               [c.quality for c in recent if c.quality is not None], thresholds, thresholds.min_rated),
    )
    return StepDrift(step, len(before), len(recent), enough=True, figures=figures)


_SAME = "not tested: the same in both windows"


def _tier_mix(stats: Any, before: Sequence[CallFacts], recent: Sequence[CallFacts],
              thresholds: DriftThresholds) -> FigureChange:
    tiers = sorted({c.tier for c in before} | {c.tier for c in recent})
    counts = [[sum(c.tier == t for c in window) for t in tiers] for window in (before, recent)]
    shares = [{t: n / len(window) for t, n in zip(tiers, row, strict=True)}
              for row, window in zip(counts, (before, recent), strict=True)]
    figure = FigureChange("tier_mix", shares[0], shares[1], len(before), len(recent))
    if len(tiers) < 2:
        return replace(figure, note=_SAME)
    tvd = 0.5 * sum(abs(shares[1][t] - shares[0][t]) for t in tiers)
    table = counts
    if len(tiers) == 2 and _small_expected(table):
        p = float(stats.fisher_exact(table).pvalue)
        test = "Fisher's exact test"
    else:
        p = float(stats.chi2_contingency(table, correction=False).pvalue)
        test = "chi-square test of homogeneity"
    return replace(figure, test=test, p_value=p, effect_name="total variation distance", effect=tvd,
                   large_enough=tvd >= thresholds.tier_mix_tvd)


def _small_expected(table: Sequence[Sequence[int]]) -> bool:
    total = sum(map(sum, table))
    return any(sum(row) * sum(col) / total < 5 for row in table for col in zip(*table, strict=True))


def _rate(stats: Any, name: str, before: Sequence[bool], recent: Sequence[bool],
          thresholds: DriftThresholds) -> FigureChange:
    x1, x2, n1, n2 = sum(before), sum(recent), len(before), len(recent)
    p1, p2 = x1 / n1, x2 / n2
    figure = FigureChange(name, p1, p2, n1, n2)
    if x1 + x2 in (0, n1 + n2):
        return replace(figure, note=_SAME)
    table = [[x1, n1 - x1], [x2, n2 - x2]]
    if _small_expected(table):
        p, test = float(stats.fisher_exact(table).pvalue), "Fisher's exact test"
    else:  # the pooled two-proportion z-test: z² is this chi-square (no continuity correction)
        p, test = float(stats.chi2_contingency(table, correction=False).pvalue), "two-proportion z-test"
    h = abs(2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1)))
    return replace(figure, test=test, p_value=p, effect_name="Cohen's h", effect=h, large_enough=h >= thresholds.rate_h)


def _ranks(stats: Any, name: str, before: Sequence[float], recent: Sequence[float], thresholds: DriftThresholds,
           needed: int) -> FigureChange:
    n1, n2 = len(before), len(recent)
    m1 = sum(before) / n1 if n1 else None
    m2 = sum(recent) / n2 if n2 else None
    figure = FigureChange(name, m1, m2, n1, n2)
    if n1 < needed or n2 < needed:
        what = "feedback" if name == "quality" else "costed calls"
        return replace(figure, note=f"not enough {what} (n={n1} before, {n2} recent; needs {needed} in each)")
    if len(set(before) | set(recent)) < 2:
        return replace(figure, note=_SAME)
    result = stats.mannwhitneyu(recent, before, alternative="two-sided")
    a = float(result.statistic) / (n1 * n2)  # P(recent > before) + ½ P(tie): Vargha-Delaney A
    assert m1 is not None and m2 is not None
    if name == "cost_per_call":
        ratio = m2 / m1 if m1 > 0 else (math.inf if m2 > 0 else 1.0)
        material = ratio >= 1 + thresholds.cost_change or ratio <= 1 / (1 + thresholds.cost_change)
    else:
        material = abs(m2 - m1) >= thresholds.quality_change
    return replace(figure, test="Mann-Whitney U", p_value=float(result.pvalue), effect_name="Vargha-Delaney A",
                   effect=a, large_enough=material and abs(a - 0.5) >= thresholds.rank_a)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = round(running, 15)
    return adjusted


def judge(steps: Sequence[StepDrift], alpha: float) -> list[StepDrift]:
    """The steps with their verdicts: Holm's correction over every figure tested in ``steps``;
    a figure moved when its adjusted p-value is at most ``alpha`` and its effect is large enough."""
    tested = [(s, f) for s, step in enumerate(steps) for f, fig in enumerate(step.figures) if fig.p_value is not None]
    adjusted = holm([steps[s].figures[f].p_value or 0.0 for s, f in tested])
    figures = [list(step.figures) for step in steps]
    for (s, f), p in zip(tested, adjusted, strict=True):
        fig = figures[s][f]
        figures[s][f] = replace(fig, p_adjusted=p, moved=p <= alpha and fig.large_enough)
    return [replace(step, figures=tuple(figs), drifted=any(f.moved for f in figs))
            for step, figs in zip(steps, figures, strict=True)]


def family_size(steps: Sequence[StepDrift]) -> int:
    """How many figures of ``steps`` were tested (the size of Holm's family)."""
    return sum(f.p_value is not None for step in steps for f in step.figures)
