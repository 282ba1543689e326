"""The HTML page of ``steproute report``: one self-contained file, inline CSS and SVG, no script,
nothing fetched. The page spreads over the window's width (a grid of charts); each tier has one
colour everywhere, on a ramp from cheap (light green) to strong (dark purple), and other series
use colours no tier has; cost axes are in ``$``, time axes carry dates (UTC)."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence

from steproute._report_stats import Report, StepSummary, bucket_name

__all__ = ["page", "tier_colours"]

_RAMP = ((0x7A, 0xD1, 0x51), (0x22, 0xA8, 0x84), (0x2A, 0x78, 0x8E), (0x41, 0x44, 0x87), (0x44, 0x01, 0x54))
"""Viridis, light to dark, without its pale yellow end (too faint on white)."""
ROUTED, BASELINE, ESCALATION = "#222222", "#A0A0A0", "#D6604D"
"""Colours of the series that are not tiers: no tier gets them."""
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 300, 78, 16, 34, 64


def tier_colours(order: Sequence[str]) -> dict[str, str]:
    """One colour per tier, cheap to strong along the ramp.

    Example:
        >>> tier_colours(["fast", "strong"])
        {'fast': '#7ad151', 'strong': '#440154'}
    """
    out = {}
    for i, tier in enumerate(order):
        x = (i / (len(order) - 1) if len(order) > 1 else 0.0) * (len(_RAMP) - 1)
        lo = min(int(x), len(_RAMP) - 2)
        f = x - lo
        rgb = [round(a + (b - a) * f) for a, b in zip(_RAMP[lo], _RAMP[lo + 1], strict=True)]
        out[tier] = "#" + "".join(f"{c:02x}" for c in rgb)
    return out


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice(top: float, n: int = 4) -> list[float]:
    """Tick values from 0 past ``top``, at a step of 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(top / step - 1e-9)
    return [i * step for i in range(count + 1)]


def _usd(value: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"${value:,.{digits}f}"


def _svg(name: str, title: str, x: str, y: str, height: int = H) -> list[str]:
    return [f'<svg class="chart" data-chart="{name}" data-x="{x}" data-y="{y}" role="img" aria-label="{_esc(title)}" '
            f'viewBox="0 0 {W} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
            'xmlns="http://www.w3.org/2000/svg">', f'<text x="8" y="20" class="title">{_esc(title)}</text>']


def _y_axis(ticks: Sequence[float], label: object, plot_h: float, axis_title: str) -> list[str]:
    top = ticks[-1] or 1.0
    parts = [f'<text x="14" y="{TOP + plot_h / 2:.0f}" class="axis" transform="rotate(-90 14 {TOP + plot_h / 2:.0f})" '
             f'text-anchor="middle">{_esc(axis_title)}</text>']
    for value in ticks:
        y = TOP + plot_h - plot_h * value / top
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis ytick">'
                     f'{_esc(label(value))}</text>')  # type: ignore[operator]
    return parts


def _legend(items: Sequence[tuple[str, str, str | None]], y: float) -> list[str]:
    """``(name, colour, tier or None)`` swatches in a row."""
    parts, x = [], float(LEFT)
    for name, colour, tier in items:
        data = f' data-tier="{_esc(tier)}"' if tier is not None else ""
        parts.append(f'<rect x="{x:.0f}" y="{y - 10:.0f}" width="12" height="12" fill="{colour}"{data}/>'
                     f'<text x="{x + 16:.0f}" y="{y:.0f}" class="axis">{_esc(name)}</text>')
        x += 30 + 7 * len(name)
    return parts


def _stacked_cost(name: str, title: str, rows: Sequence[StepSummary], order: Sequence[str],
                  colours: dict[str, str]) -> str:
    """Per row: the cost stacked by tier beside what it would have cost on the baseline tier."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    ticks = _nice(max([max(s.cost_usd, s.baseline_cost_usd) for s in rows] + [0.0]))
    top = ticks[-1]
    step = ticks[1] - ticks[0]
    parts = _svg(name, title, "category", "usd") + _y_axis(ticks, lambda v: _usd(v, step), plot_h, "USD")
    group = plot_w / max(len(rows), 1)
    bar = min(group * 0.38, 60.0)
    for i, s in enumerate(rows):
        x0 = LEFT + i * group + group / 2 - bar
        y = float(TOP + plot_h)
        for tier in order:
            cost = s.tier_cost.get(tier, 0.0)
            h = plot_h * cost / top if top else 0.0
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colours[tier]}" '
                             f'data-tier="{_esc(tier)}"><title>{_esc(s.step)}: {_esc(tier)} ${cost:.6f}</title></rect>')
        h = plot_h * s.baseline_cost_usd / top if top else 0.0
        parts.append(f'<rect x="{x0 + bar + 2:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                     f'fill="{BASELINE}"><title>{_esc(s.step)}: all on the baseline tier '
                     f'${s.baseline_cost_usd:.6f}</title></rect>')
        parts.append(f'<text x="{x0 + bar:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" class="axis xtick">'
                     f'{_esc(s.step)}</text>')
        if s.baseline_cost_usd:
            parts.append(f'<text x="{x0 + bar:.1f}" y="{TOP + plot_h + 30}" text-anchor="middle" class="axis note">'
                         f'saved {s.savings_share:.0%}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')
    legend = [(t, colours[t], t) for t in order if any(s.tiers[t] for s in rows)]
    parts += _legend([*legend, ("all on the baseline tier", BASELINE, None)], H - 8)
    return "".join(parts) + "</svg>"


def _quality(report: Report, colours: dict[str, str]) -> str:
    """Per step, each tier's mean quality (feedback and shadow results), with the count rated."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = _svg("quality", "Quality per step and tier (feedback and shadow results)", "category", "quality")
    parts += _y_axis([0.0, 0.25, 0.5, 0.75, 1.0], lambda v: f"{v:.2f}", plot_h, "mean quality (0-1)")
    steps = report.steps
    tiers = [t for t in report.tier_order if any(t in s.tier_ratings for s in steps)]
    if not tiers:
        parts.append(f'<text x="{LEFT + 12}" y="{TOP + 40}" class="axis">No feedback or shadow results in this log '
                     'yet: steproute feedback DECISION_ID good|bad|0..1</text>')
    group = plot_w / max(len(steps), 1)
    bar = min(group * 0.8 / max(len(tiers), 1), 48.0)
    for i, s in enumerate(steps):
        rated = s.tier_quality()
        x0 = LEFT + i * group + (group - bar * len(tiers)) / 2
        for j, tier in enumerate(tiers):
            if tier not in rated:
                continue
            q, n = rated[tier]
            h = plot_h * q
            x = x0 + j * bar
            parts.append(f'<rect x="{x + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                         f'fill="{colours[tier]}" data-tier="{_esc(tier)}"><title>{_esc(s.step)}: {_esc(tier)} '
                         f'{q:.2f} ({n} rated)</title></rect>')
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{TOP + plot_h - h - 3:.1f}" text-anchor="middle" '
                         f'class="axis note">{n}</text>')
        parts.append(f'<text x="{LEFT + i * group + group / 2:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                     f'class="axis xtick">{_esc(s.step)}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')
    parts += _legend([(t, colours[t], t) for t in tiers], H - 8)
    return "".join(parts) + "</svg>"


def _mix(report: Report, colours: dict[str, str]) -> str:
    """Stacked horizontal bars: the share of each tier per step."""
    rows = [*report.steps, report.total]
    row = 26
    height = TOP + row * len(rows) + 56
    parts = _svg("mix", "Tier mix per step", "share", "category", height)
    left, plot_w = 110, W - 110 - RIGHT
    for k in range(5):
        x = left + plot_w * k / 4
        parts.append(f'<line x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{TOP + row * len(rows)}" stroke="#e3e3e3"/>'
                     f'<text x="{x:.1f}" y="{TOP + row * len(rows) + 14}" text-anchor="middle" class="axis xtick">'
                     f'{k * 25}%</text>')
    for i, s in enumerate(rows):
        y = TOP + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" class="axis ytick">{_esc(s.step)}</text>')
        x = float(left)
        for tier in report.tier_order:
            w = plot_w * (s.tiers[tier] / s.calls if s.calls else 0)
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{colours[tier]}" '
                             f'data-tier="{_esc(tier)}"><title>{_esc(s.step)}: {_esc(tier)} '
                             f'{s.tiers[tier]}/{s.calls}</title></rect>')
            x += w
    parts += _legend([(t, colours[t], t) for t in report.tier_order if report.total.tiers[t]], height - 8)
    return "".join(parts) + "</svg>"


def _time_ticks(start: float, end: float, plot_w: float) -> list[str]:
    span = end - start
    fmt = "%H:%M:%S" if span < 600 else "%H:%M"
    count = 1 if span <= 0 else 5
    parts = []
    for k in range(count):
        ts = start + span * k / max(count - 1, 1)
        x = LEFT + (plot_w * k / (count - 1) if count > 1 else plot_w / 2)
        anchor = "start" if k == 0 and count > 1 else "end" if k == count - 1 and count > 1 else "middle"
        moment = time.gmtime(ts)
        parts.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="{anchor}" class="axis xtick">'
                     f'<tspan x="{x:.1f}">{time.strftime("%Y-%m-%d", moment)}</tspan>'
                     f'<tspan x="{x:.1f}" dy="13">{time.strftime(fmt, moment)}</tspan></text>')
    return parts


def _over_time(report: Report) -> str:
    """Cumulative cost and cumulative baseline cost over the log's time span."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    points = sorted((float(d.get("ts") or 0.0), float(d.get("cost_usd") or 0.0), float(d.get("baseline_cost_usd") or 0.0))
                    for d in report.contents.decisions)
    parts = _svg("cost-over-time", "Cumulative cost over time (UTC)", "time", "usd")
    if points:
        start, end = points[0][0], points[-1][0]
        span = (end - start) or 1.0
        cost = base = 0.0
        routed, baseline = [], []
        for ts, c, b in points:
            cost, base = cost + c, base + b
            routed.append((ts, cost))
            baseline.append((ts, base))
        ticks = _nice(max(base, cost))
        top, step = ticks[-1] or 1.0, ticks[1] - ticks[0]
        parts += _y_axis(ticks, lambda v: _usd(v, step), plot_h, "USD, cumulative")

        def path(series: list[tuple[float, float]]) -> str:
            return " ".join(f"{LEFT + plot_w * (t - start) / span:.1f},{TOP + plot_h - plot_h * v / top:.1f}"
                            for t, v in series)

        parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')
        parts += _time_ticks(start, end, plot_w)
        parts.append(f'<polyline fill="none" stroke="{BASELINE}" stroke-width="2.5" stroke-dasharray="6 4" '
                     f'points="{path(baseline)}"/>')
        parts.append(f'<polyline fill="none" stroke="{ROUTED}" stroke-width="2.5" points="{path(routed)}"/>')
        parts += _legend([("routed", ROUTED, None), ("all on the baseline tier", BASELINE, None)], H - 4)
    return "".join(parts) + "</svg>"


def _escalation(report: Report) -> str:
    """The share of calls escalated to a stronger tier, per stretch of time."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    title = f"Escalation rate per {bucket_name(report.bucket_s)} (UTC)"
    parts = _svg("escalation", title, "time", "rate") + _y_axis(
        [0.0, 0.25, 0.5, 0.75, 1.0], lambda v: f"{v:.0%}", plot_h, "calls escalated")
    busy = [b for b in report.escalation if b.calls]
    if busy:
        start, end = report.escalation[0].start, report.escalation[-1].end
        span = end - start
        slot = plot_w * report.bucket_s / span
        for b in busy:
            x = LEFT + plot_w * (b.start - start) / span
            h = plot_h * (b.rate or 0.0)
            parts.append(f'<rect x="{x + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(slot - 2, 1):.1f}" '
                         f'height="{h:.1f}" fill="{ESCALATION}"><title>{b.escalated} of {b.calls} calls escalated'
                         f'</title></rect>')
        parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')
        parts += _time_ticks(start, end, plot_w)
    return "".join(parts) + "</svg>"


def _cells(values: Sequence[object]) -> str:
    return "".join(f"<td>{_esc(v)}</td>" for v in values)


def _n(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _quality_note(report: Report) -> str | None:
    change, base = report.quality_change, report.baseline_tier
    if change.routed is None or change.baseline is None:
        return None
    how = f"paired on {change.paired} shadow results" if change.paired else "means of different calls"
    return f"{change.routed:.2f} routed, {change.baseline:.2f} on {base!r} ({how})"


def _headline(report: Report, quality: str) -> str:
    t, change = report.total, report.quality_change
    delta = "not known" if change.delta is None else f"{change.delta:+.2f}"
    cards = [
        ("saved against the baseline tier", f"{t.savings_share:.0%}",
         f"${t.cost_usd:.4f} spent, ${t.baseline_cost_usd:.4f} all on {report.baseline_tier!r}"),
        ("quality against the baseline tier", delta, _quality_note(report) or quality),
        ("calls", f"{t.calls}", f"{t.escalation_rate:.0%} escalated, ${t.rejected_cost_usd:.4f} on rejected cascade "
                                f"attempts" + (f", {t.refused} refused by budgets" if t.refused else "")),
        ("latency", f"{_n(t.latency_p50_s)} s", f"median; p95 {_n(t.latency_p95_s)} s"),
    ]
    return '<section class="headline">' + "".join(
        f'<div class="card"><div class="label">{_esc(label)}</div><div class="big">{_esc(big)}</div>'
        f'<div class="small">{_esc(small)}</div></div>' for label, big, small in cards) + "</section>"


_CSS = """
body { font: 14px system-ui, sans-serif; margin: 20px 28px; color: #222; }
h1 { margin: 0 0 4px; } h2 { margin: 28px 0 8px; font-size: 17px; }
.sub { color: #555; margin: 0 0 16px; }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 14px; margin: 8px 0 20px; }
.card { border: 1px solid #d8d8d8; border-left: 6px solid #2a788e; border-radius: 6px; padding: 10px 14px; background: #f7fafb; }
.card .label { color: #555; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .big { font-size: 28px; font-weight: 600; margin: 2px 0; }
.card .small { color: #444; font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 18px 28px; }
.chart { display: block; width: 100%; height: auto; }
.chart .title { font-weight: 600; font-size: 14px; }
.chart .axis { font-size: 11px; fill: #444; }
.chart .note { font-size: 10px; fill: #666; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td.mix, th.mix { text-align: left; }
tbody tr.total td { font-weight: bold; }
"""


def page(report: Report, *, title: str, mix: Sequence[str], quality: str, drift: Sequence[str] = ()) -> str:
    """The page's HTML; ``mix`` is each step's tier mix as text (the ``TOTAL`` row last),
    ``quality`` the line comparing quality with the baseline tier."""
    colours = tier_colours(report.tier_order)
    rows = [*report.steps, report.total]
    step_rows = "".join(
        f'<tr{" class=total" if s is report.total else ""}>' + _cells(
            [s.step, s.calls, f"{s.cost_usd:.6f}", f"{s.baseline_cost_usd:.6f}", f"{s.savings_usd:.6f}",
             f"{s.savings_share:.0%}"]) + f'<td class="mix">{_esc(m)}</td>' + _cells(
            [f"{s.escalation_rate:.0%}", f"{s.rejected_cost_usd:.6f}", _n(s.quality), s.rated, _n(s.latency_p50_s),
             _n(s.latency_p95_s), s.errors, s.refused]) + "</tr>"
        for s, m in zip(rows, mix, strict=True))
    tenant_rows = "".join("<tr>" + _cells(
        [t.step, t.calls, f"{t.cost_usd:.6f}", f"{t.baseline_cost_usd:.6f}", f"{t.savings_share:.0%}",
         f"{t.rejected_cost_usd:.6f}", _n(t.quality), t.rated, _n(t.latency_p50_s), _n(t.latency_p95_s), t.refused])
        + "</tr>" for t in report.tenants)
    tenants_named = any(t.step != "-" for t in report.tenants)
    charts = [_stacked_cost("cost", "Cost per step by tier, beside all on the baseline tier", report.steps,
                            report.tier_order, colours),
              _quality(report, colours), _mix(report, colours), _over_time(report), _escalation(report)]
    if tenants_named:
        charts.append(_stacked_cost("tenant-cost", "Cost per tenant by tier", report.tenants, report.tier_order,
                                    colours))
    filters = []
    if report.since is not None:
        filters.append("since " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.since)))
    if report.tenant_filter:
        filters.append(f"{len(report.tenant_filter)} tenant(s) selected")
    contents = report.contents
    problems = "".join(f"<li>{_esc(p)}</li>" for p in contents.problems)
    drifted = "".join(f"<li>{_esc(line)}</li>" for line in drift)
    tenant_table = (
        "<h2>Per tenant</h2><div class=wide><table><thead><tr><th>tenant</th><th>calls</th><th>cost $</th>"
        "<th>baseline $</th><th>saved</th><th>rejected $</th><th>quality</th><th>rated</th><th>p50 s</th>"
        f"<th>p95 s</th><th>refused</th></tr></thead><tbody>{tenant_rows}</tbody></table></div>"
        if tenants_named else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>
<h1>{_esc(title)}</h1>
<p class="sub">{len(contents.decisions)} decisions{(" (" + "; ".join(filters) + ")") if filters else ""};
tiers cheap to strong: {_esc(", ".join(report.tier_order))}; baseline tier {_esc(report.baseline_tier)}.</p>
{_headline(report, quality)}
<div class="wide"><table><thead><tr><th>step</th><th>calls</th><th>cost $</th><th>baseline $</th><th>saved $</th>
<th>saved</th><th class=mix>tier mix</th><th>escalated</th><th>rejected $</th><th>quality</th><th>rated</th><th>p50 s</th>
<th>p95 s</th><th>errors</th><th>refused</th></tr></thead><tbody>{step_rows}</tbody></table></div>
<div class="charts">{"".join(charts)}</div>
{tenant_table}
{f"<h2>Configuration and log</h2><ul>{drifted}</ul>" if drifted else ""}
{f"<h2>Lines not used</h2><ul>{problems}</ul>" if problems else ""}
</main></body></html>
"""
