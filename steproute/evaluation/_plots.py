"""PNG plots of evaluation curves (matplotlib, the ``learn`` extra; imported only here)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from steproute.evaluation._evaluate import Evaluation

__all__ = ["plot_evaluations"]


def plot_evaluations(evaluations: Sequence[Evaluation], path: str | os.PathLike[str], title: str = "") -> str:
    """Quality vs strong-call share (left) and vs cost (right) for one or more policies on the
    same rows, with random, always-cheapest, always-strongest and the oracle for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not evaluations:
        raise ValueError("nothing to plot")
    ref = evaluations[0].summary
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    weak, strong = ref.weak_quality, ref.strong_quality
    left.plot([0, 1], [weak, strong], "--", color="grey", label="random")
    left.plot(evaluations[0].oracle.shares, evaluations[0].oracle.qualities, ":", color="black", label="oracle")
    right.plot(evaluations[0].oracle.costs, evaluations[0].oracle.qualities, ":", color="black", label="oracle")
    right.plot([ref.weak_cost_usd, ref.strong_cost_usd], [weak, strong], "--", color="grey", label="random")
    for name, x, y, marker in (("always cheapest", 0.0, weak, "v"), ("always strongest", 1.0, strong, "^")):
        left.scatter([x], [y], marker=marker, s=70, zorder=3, label=name)
    right.scatter([ref.weak_cost_usd], [weak], marker="v", s=70, zorder=3, label="always cheapest")
    right.scatter([ref.strong_cost_usd], [strong], marker="^", s=70, zorder=3, label="always strongest")
    for ev in evaluations:
        s = ev.summary
        label = f"{ev.policy} (APGR {s.apgr:.2f}, CPT50 {s.cpt50:.0%})"
        if len(ev.curve.points) > 1:
            (line,) = left.plot(ev.curve.shares, ev.curve.qualities, label=label)
            right.plot(ev.curve.costs, ev.curve.qualities, color=line.get_color(),
                       label=f"{ev.policy} (AIQ {s.aiq:.3f})" if s.aiq is not None else ev.policy)
            color = line.get_color()
        else:
            color = None
        left.scatter([s.strong_share], [s.quality], color=color, edgecolor="black", s=60, zorder=4,
                     label=f"{ev.policy}: operating point" if len(evaluations) == 1 else None)
        right.scatter([s.cost_usd], [s.quality], color=color, edgecolor="black", s=60, zorder=4)
    left.set_xlabel("share of calls on stronger tiers")
    left.set_ylabel("mean quality")
    left.set_xlim(-0.02, 1.02)
    right.set_xlabel("total cost (USD)")
    right.set_ylabel("mean quality")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    lo = min(weak, strong, float(np.min(evaluations[0].oracle.qualities)))
    hi = float(np.max(evaluations[0].oracle.qualities))
    for ax in (left, right):
        ax.set_ylim(lo - 0.03, hi + 0.03)
    fig.suptitle(title or f"{ref.rows} queries")
    fig.tight_layout()
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return os.fspath(path)
