"""Shadow mode in ``steproute report``: per step, how often the candidate decided the live tier,
how its judged answers fared (win, tie, loss, each with a 95% Wilson interval) and what the
shadow calls cost beside the live calls they shadowed (:mod:`steproute.shadow`).

Example:
    >>> from steproute.decision_log import LogContents
    >>> log = LogContents(
    ...     decisions=[{"id": "a", "step": "plan", "shadow": {"candidate_tier": "strong", "agree": False}},
    ...                {"id": "b", "step": "plan", "shadow": {"candidate_tier": "fast", "agree": True}}],
    ...     shadows=[{"type": "shadow", "id": "a", "tier": "strong", "quality": 1.0, "verdict": "win",
    ...               "cost_usd": 0.003, "live_cost_usd": 0.001}])
    >>> [s] = shadow_summaries(log)
    >>> s.step, s.decided, s.agreed, s.verdicts["win"], round(s.cost_delta_usd, 6)
    ('plan', 2, 1, 1, 0.002)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steproute._text_table import text_table
from steproute.decision_log import LogContents

__all__ = ["ShadowSummary", "shadow_json", "shadow_lines", "shadow_summaries", "wilson"]

VERDICTS = ("win", "tie", "loss")
Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials (``None`` when ``n`` is 0).

    Example:
        >>> [round(x, 3) for x in wilson(8, 10)]
        [0.49, 0.943]
    """
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if k <= 0 else max(0.0, centre - half)), (1.0 if k >= n else min(1.0, centre + half))  # exact at the ends


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


@dataclass
class ShadowSummary:
    """One step's shadow results."""

    step: str
    decided: int = 0
    """Calls the candidate decided (those logged with a ``shadow`` key)."""
    agreed: int = 0
    """... of which it decided the live tier."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Disagreeing, sampled calls not shadowed, by why (``concurrency``, ``budget``, ``closed``)."""
    verdicts: Counter[str] = field(default_factory=Counter)
    """Judged shadow calls by the candidate's verdict (``win``, ``tie``, ``loss``)."""
    shadow_cost_usd: float = 0.0
    """What the judged shadow calls (and their judges) cost."""
    live_cost_usd: float = 0.0
    """What the live calls they shadowed cost."""

    @property
    def judged(self) -> int:
        return sum(self.verdicts[v] for v in VERDICTS)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.decided if self.decided else None

    @property
    def cost_delta_usd(self) -> float:
        """Shadow cost minus live cost over the judged calls: what switching would add (negative: save)."""
        return self.shadow_cost_usd - self.live_cost_usd


def shadow_summaries(contents: LogContents) -> list[ShadowSummary]:
    """Per step, in order of first appearance: agreement, verdicts and the cost delta."""
    steps: dict[str, ShadowSummary] = {}
    step_of: dict[str, str] = {}
    for decision in contents.decisions:
        step_of[str(decision.get("id"))] = str(decision.get("step"))
        info = decision.get("shadow")
        if not isinstance(info, Mapping) or info.get("agree") is None:
            continue
        summary = steps.setdefault(str(decision.get("step")), ShadowSummary(str(decision.get("step"))))
        summary.decided += 1
        summary.agreed += info.get("agree") is True
        if isinstance(info.get("skipped"), str):
            summary.skipped[info["skipped"]] += 1
    for shadow in contents.shadows:
        verdict = shadow.get("verdict")
        if verdict not in VERDICTS:
            continue  # a shadow result from elsewhere, without a verdict: in the quality by tier only
        name = str(shadow.get("step") or step_of.get(str(shadow["id"]), "?"))
        summary = steps.setdefault(name, ShadowSummary(name))
        summary.verdicts[verdict] += 1
        summary.shadow_cost_usd += _number(shadow.get("cost_usd"))
        summary.live_cost_usd += _number(shadow.get("live_cost_usd"))
    return list(steps.values())


def _share(k: int, n: int) -> str:
    interval = wilson(k, n)
    if interval is None:
        return "-"
    return f"{k} ({k / n:.0%} [{interval[0]:.0%}–{interval[1]:.0%}])"


def shadow_lines(contents: LogContents) -> list[str]:
    """The report's shadow section as text (no lines when the log has no shadow results)."""
    summaries = shadow_summaries(contents)
    if not summaries:
        return []
    rows = [(s.step, str(s.decided), _share(s.agreed, s.decided), str(s.judged),
             *(_share(s.verdicts[v], s.judged) for v in VERDICTS), f"{s.shadow_cost_usd:.6f}", f"{s.live_cost_usd:.6f}",
             f"{s.cost_delta_usd:+.6f}", ", ".join(f"{k} {n}" for k, n in sorted(s.skipped.items())) or "-")
            for s in summaries]
    return ["\nshadow (candidate against the live tier; 95% Wilson intervals; cost over the judged calls):\n"
            + text_table(("step", "decided", "agree", "judged", "win", "tie", "loss", "shadow $", "live $", "delta $",
                          "skipped"), rows)]


def shadow_json(contents: LogContents) -> list[dict[str, Any]]:
    """The shadow section of ``steproute report --json``: one object per step."""
    out = []
    for s in shadow_summaries(contents):
        out.append({"step": s.step, "decided": s.decided, "agreed": s.agreed, "agreement": s.agreement,
                    "agreement_95": wilson(s.agreed, s.decided), "judged": s.judged,
                    **{v: s.verdicts[v] for v in VERDICTS},
                    **{f"{v}_95": wilson(s.verdicts[v], s.judged) for v in VERDICTS},
                    "shadow_cost_usd": s.shadow_cost_usd, "live_cost_usd": s.live_cost_usd,
                    "cost_delta_usd": s.cost_delta_usd, "skipped": dict(s.skipped)})
    return out
