"""``steproute report``: per-step cost, savings, tier mix and escalation rate from a decision log.

As a text table, or as one self-contained HTML page whose charts are inline SVG (no script,
no network): cost and savings per step, tier mix per step, and cost over time against the
baseline.
"""

from __future__ import annotations

import html
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steproute._text_table import text_table
from steproute.config import RouterConfig
from steproute.decision_log import LogContents
from steproute.errors import shown

__all__ = ["ConfigDrift", "StepSummary", "check_decisions", "config_drift", "format_drift", "format_table", "summarise",
           "write_html"]

_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")


@dataclass
class StepSummary:
    """Totals of one step (or of all steps, for the ``TOTAL`` row)."""

    step: str
    calls: int = 0
    errors: int = 0
    escalations: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    tiers: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    """Calls a tenant budget refused before any model call (logged with ``outcome: refused``;
    not in ``calls``)."""
    refused_tenants: Counter[str] = field(default_factory=Counter)
    """The refused calls by tenant."""

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_share(self) -> float:
        return self.savings_usd / self.baseline_cost_usd if self.baseline_cost_usd else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalations / self.calls if self.calls else 0.0

    def add(self, decision: dict[str, Any]) -> None:
        if decision.get("outcome") == "refused":
            self.refused += 1
            self.refused_tenants[str(decision.get("tenant"))] += 1
            return
        self.calls += 1
        self.errors += bool(decision.get("error"))
        self.escalations += bool(decision.get("escalated_from"))
        self.cost_usd += float(decision.get("cost_usd") or 0.0)
        self.baseline_cost_usd += float(decision.get("baseline_cost_usd") or 0.0)
        self.tiers[str(decision.get("tier"))] += 1


_LATEST_TS = 253402300799.0
"""The last second of the year 9999: a later timestamp cannot be a time of a decision."""


def check_decisions(contents: LogContents) -> str | None:
    """What makes the log's decisions unfit for a report (a cost that is not a number, a
    timestamp outside years 1970 to 9999), as one line; ``None`` when they are fit.

    Example:
        >>> check_decisions(LogContents(decisions=[{"id": "a", "cost_usd": "lots"}]))
        'decision 1: cost_usd must be a number (USD)'
    """
    bad: list[str] = []
    for i, decision in enumerate(contents.decisions, 1):
        for key, what in (("cost_usd", "a number (USD)"), ("baseline_cost_usd", "a number (USD)"),
                          ("ts", "a Unix time in seconds")):
            value = decision.get(key)
            if value is None:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not number or (key == "ts" and not 0 <= value <= _LATEST_TS):
                bad.append(f"decision {i}: {key} must be {what}")
    if not bad:
        return None
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return bad[0] + more


def summarise(contents: LogContents) -> list[StepSummary]:
    """One summary per step, in order of first appearance, then a ``TOTAL`` summary."""
    steps: dict[str, StepSummary] = {}
    total = StepSummary("TOTAL")
    for decision in contents.decisions:
        name = str(decision.get("step"))
        steps.setdefault(name, StepSummary(name)).add(decision)
        total.add(decision)
    return [*steps.values(), total]


def _mix(tiers: Counter[str], calls: int) -> str:
    return ", ".join(f"{tier} {count / calls:.0%}" for tier, count in tiers.most_common()) if calls else "-"


def format_table(summaries: Sequence[StepSummary]) -> str:
    """The summaries as a plain-text table; with calls refused by a tenant budget, a ``refused``
    column and a line of the refusals by tenant."""
    header: tuple[str, ...] = ("step", "calls", "cost $", "baseline $", "saved $", "saved", "tier mix", "escalated",
                               "errors")
    rows: list[tuple[str, ...]] = [
        (s.step, str(s.calls), f"{s.cost_usd:.6f}", f"{s.baseline_cost_usd:.6f}", f"{s.savings_usd:.6f}",
         f"{s.savings_share:.0%}", _mix(s.tiers, s.calls), f"{s.escalation_rate:.0%}", str(s.errors))
        for s in summaries]
    if not any(s.refused for s in summaries):
        return text_table(header, rows)
    table = text_table((*header, "refused"), [(*row, str(s.refused)) for row, s in zip(rows, summaries, strict=True)])
    steps = [s for s in summaries if s.step != "TOTAL"] or summaries
    tenants = sum((s.refused_tenants for s in steps), Counter[str]())
    said = ", ".join(f"tenant {shown(t)} {n}" for t, n in tenants.most_common())
    return f"{table}\nrefused by budget: {said}"


@dataclass(frozen=True)
class ConfigDrift:
    """Where a configuration and a decision log disagree."""

    not_called: tuple[str, ...]
    """``steps:`` entries that governed no call in the log."""
    not_configured: tuple[str, ...]
    """Steps in the log that no ``steps:`` entry governs, by name or by kind (routed by ``default``)."""

    def lines(self) -> list[str]:
        """One line per disagreement, or one saying there is none."""
        out = []
        if self.not_called:
            out.append(f"configured steps with no calls in the log: {', '.join(self.not_called)}")
        if self.not_configured:
            out.append(f"steps in the log with no configuration (routed by `default`): {', '.join(self.not_configured)}")
        return out or ["configuration and log agree: every configured step was called, every logged step is configured"]


def config_drift(contents: LogContents, config: RouterConfig) -> ConfigDrift:
    """Compare the log's calls with the config's ``steps:``: an entry governs a call when it is
    the call's step name, else its kind (:meth:`RouterConfig.step_entry`).

    Example:
        >>> config = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}}, default="fast",
        ...                       steps={"plan": "fast", "tool_use": "fast", "extract": "fast"})
        >>> log = LogContents(decisions=[{"step": "plan"}, {"step": "lookup", "kind": "tool_use"}, {"step": "chat"}])
        >>> config_drift(log, config)
        ConfigDrift(not_called=('extract',), not_configured=('chat',))
    """
    governing: set[str] = set()
    unconfigured: dict[str, None] = {}
    for decision in contents.decisions:
        step, kind = str(decision.get("step")), decision.get("kind")
        entry = config.step_entry(step, kind if isinstance(kind, str) else None)
        if entry is None:
            unconfigured.setdefault(step)
        else:
            governing.add(entry)
    return ConfigDrift(tuple(k for k in config.steps if k not in governing), tuple(unconfigured))


def format_drift(drift: ConfigDrift) -> str:
    """The disagreements as text lines."""
    return "\n".join(drift.lines())


# -- the HTML page ---------------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]], unit: str) -> str:
    """A grouped bar chart as inline SVG."""
    width, height, left, bottom, top = 720, 300, 70, 60, 30
    top_value = max([v for _, values, _ in series for v in values] + [1e-12])
    plot_w, plot_h = width - left - 20, height - bottom - top
    group = plot_w / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)
    parts = [f'<svg class="chart" role="img" aria-label="{_esc(title)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="18" class="title">{_esc(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>']
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{value:.2g}{unit}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
    for i, label in enumerate(labels):
        x0 = left + i * group + group * 0.1
        for j, (name, values, color) in enumerate(series):
            h = plot_h * values[i] / top_value
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{color}"><title>{_esc(label)} {_esc(name)}: {values[i]:.6g}{unit}</title></rect>')
        parts.append(f'<text x="{x0 + group * 0.4:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="axis">'
                     f'{_esc(label)}</text>')
    for j, (name, _, color) in enumerate(series):
        x = left + j * 150
        parts.append(f'<rect x="{x}" y="{height - 18}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16}" y="{height - 8}" class="axis">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tier_mix(summaries: Sequence[StepSummary]) -> str:
    """Stacked horizontal bars: the share of each tier per step."""
    tiers = sorted({t for s in summaries for t in s.tiers})
    colors = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(tiers)}
    width, row, left = 720, 28, 120
    height = 40 + row * len(summaries) + 30
    parts = [f'<svg class="chart" role="img" aria-label="Tier mix per step" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             '<text x="10" y="18" class="title">Tier mix per step</text>']
    for i, s in enumerate(summaries):
        y = 30 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end" class="axis">{_esc(s.step)}</text>')
        x = float(left)
        for tier in tiers:
            w = (width - left - 20) * (s.tiers[tier] / s.calls if s.calls else 0)
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{colors[tier]}">'
                             f'<title>{_esc(s.step)}: {_esc(tier)} {s.tiers[tier]}/{s.calls}</title></rect>')
            x += w
    for j, tier in enumerate(tiers):
        x = left + j * 120
        parts.append(f'<rect x="{x}" y="{height - 18}" width="12" height="12" fill="{colors[tier]}"/>'
                     f'<text x="{x + 16}" y="{height - 8}" class="axis">{_esc(tier)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _over_time(decisions: Sequence[dict[str, Any]]) -> str:
    """Cumulative cost and cumulative baseline cost over the log's time span."""
    width, height, left, top, bottom = 720, 300, 70, 30, 50
    points = sorted((float(d.get("ts") or 0.0), float(d.get("cost_usd") or 0.0), float(d.get("baseline_cost_usd") or 0.0))
                    for d in decisions)
    parts = [f'<svg class="chart" role="img" aria-label="Cost over time" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             '<text x="10" y="18" class="title">Cumulative cost over time</text>']
    if points:
        start, end = points[0][0], points[-1][0]
        span = (end - start) or 1.0
        cost = base = 0.0
        routed, baseline = [], []
        for ts, c, b in points:
            cost += c
            base += b
            routed.append((ts, cost))
            baseline.append((ts, base))
        top_value = max(base, cost, 1e-12)
        plot_w, plot_h = width - left - 20, height - top - bottom

        def path(series: list[tuple[float, float]]) -> str:
            return " ".join(f"{left + plot_w * (t - start) / span:.1f},{top + plot_h - plot_h * v / top_value:.1f}"
                            for t, v in series)

        parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>')
        parts.append(f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" class="axis">${top_value:.2g}</text>')
        for ts, anchor in ((start, "start"), (end, "end")):
            x = left + plot_w * (ts - start) / span
            parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}" class="axis">'
                         f'{time.strftime("%H:%M:%S", time.localtime(ts))}</text>')
        parts.append(f'<polyline fill="none" stroke="{_PALETTE[1]}" stroke-width="2" points="{path(baseline)}"/>')
        parts.append(f'<polyline fill="none" stroke="{_PALETTE[0]}" stroke-width="2" points="{path(routed)}"/>')
        for j, (name, color) in enumerate((("routed", _PALETTE[0]), ("all on baseline tier", _PALETTE[1]))):
            x = left + j * 150
            parts.append(f'<rect x="{x}" y="{height - 18}" width="12" height="12" fill="{color}"/>'
                         f'<text x="{x + 16}" y="{height - 8}" class="axis">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_html(contents: LogContents, path: str | Path, *, title: str = "steproute report",
               drift: ConfigDrift | None = None) -> Path:
    """Write one self-contained page (inline CSS and SVG, nothing fetched) and return its path;
    with ``drift`` (:func:`config_drift`), a section on where configuration and log disagree."""
    summaries = summarise(contents)
    steps = [s for s in summaries if s.step != "TOTAL"]
    total = summaries[-1]
    labels = [s.step for s in steps]
    cost_chart = _bars("Cost per step (USD)", labels, [
        ("routed", [s.cost_usd for s in steps], _PALETTE[0]),
        ("baseline", [s.baseline_cost_usd for s in steps], _PALETTE[1]),
        ("saved", [max(s.savings_usd, 0.0) for s in steps], _PALETTE[2]),
    ], "")
    rows = "".join(
        f"<tr><td>{_esc(s.step)}</td><td>{s.calls}</td><td>{s.cost_usd:.6f}</td><td>{s.baseline_cost_usd:.6f}</td>"
        f"<td>{s.savings_usd:.6f}</td><td>{s.savings_share:.0%}</td><td>{_esc(_mix(s.tiers, s.calls))}</td>"
        f"<td>{s.escalation_rate:.0%}</td><td>{s.errors}</td></tr>"
        for s in summaries)
    problems = "".join(f"<li>{_esc(p)}</li>" for p in contents.problems)
    drifted = "".join(f"<li>{_esc(line)}</li>" for line in drift.lines()) if drift is not None else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0 24px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child, th:nth-child(7), td:nth-child(7) {{ text-align: left; }}
tr:last-child td {{ font-weight: bold; }}
.chart {{ display: block; margin: 12px 0 24px; max-width: 100%; height: auto; }}
.chart .title {{ font-weight: bold; font-size: 14px; }}
.chart .axis {{ font-size: 11px; fill: #444; }}
</style></head><body>
<h1>{_esc(title)}</h1>
<p>{total.calls} routed calls: ${total.cost_usd:.6f} spent, ${total.baseline_cost_usd:.6f} on the baseline tier,
{total.savings_share:.0%} saved{f"; {total.refused} refused by tenant budgets" if total.refused else ""}.</p>
<table><thead><tr><th>step</th><th>calls</th><th>cost $</th><th>baseline $</th><th>saved $</th><th>saved</th>
<th>tier mix</th><th>escalated</th><th>errors</th></tr></thead><tbody>{rows}</tbody></table>
{cost_chart}
{_tier_mix(steps)}
{_over_time(contents.decisions)}
{f"<h2>Configuration and log</h2><ul>{drifted}</ul>" if drifted else ""}
{f"<h2>Lines not used</h2><ul>{problems}</ul>" if problems else ""}
</body></html>
"""
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
