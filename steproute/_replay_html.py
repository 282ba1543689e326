"""The HTML page of ``steproute replay --html``: one self-contained file (inline CSS and SVG, no
script, nothing fetched), in the style of ``steproute report``'s page: the table per step and a
chart of each step's recorded cost beside the candidate's, with its 95% interval."""

from __future__ import annotations

import html

from steproute.replay import Interval, ReplayReport, StepReplay

__all__ = ["replay_page"]

RECORDED, CANDIDATE = "#A0A0A0", "#2A788E"
_CSS = """
body { font: 14px system-ui, sans-serif; margin: 20px 28px; color: #222; }
h1 { margin: 0 0 4px; } h2 { margin: 28px 0 8px; font-size: 17px; }
.sub { color: #555; margin: 0 0 16px; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, td.why, th.why, td.note { text-align: left; }
td.why { white-space: normal; color: #8a3b12; }
.chart { display: block; width: 100%; max-width: 900px; height: auto; }
.chart .axis { font-size: 11px; fill: #444; } .chart .title { font-weight: 600; font-size: 14px; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ci(interval: Interval | None, fmt: str) -> str:
    return f"{format(interval.low, fmt)}–{format(interval.high, fmt)}" if interval is not None else "–"


def _q(value: float | None, n: int) -> str:
    return f"{value:.2f} (n={n})" if value is not None else "–"


def _row(s: StepReplay) -> str:
    if s.replayable and s.changed is not None and s.candidate_cost_usd is not None:
        cells = [s.step, s.calls, f"{s.changed:.0%}", _ci(s.changed_ci, ".0%"), f"{s.cost_usd:.6f}",
                 f"{s.candidate_cost_usd:.6f}", _ci(s.candidate_cost_ci, ".6f"), _q(s.quality, s.quality_n),
                 _q(s.candidate_quality, s.candidate_quality_n)]
        note = ", ".join(f"{t} {n}" for t, n in s.candidate_tiers.items())
        cls = " class=note"
    else:
        cells = [s.step, s.calls, "–", "–", f"{s.cost_usd:.6f}", "–", "–", _q(s.quality, s.quality_n), "–"]
        note, cls = f"not replayed: {s.why_not}", " class=why"
    return "<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + f"<td{cls}>{_esc(note)}</td></tr>"


def _chart(report: ReplayReport) -> str:
    steps = [s for s in report.steps if s.replayable]
    if not steps:
        return ""
    top = max(max(s.cost_usd, s.candidate_cost_ci.high if s.candidate_cost_ci else 0.0) for s in steps) or 1.0
    row, left, width = 34, 140, 600
    height = 40 + row * len(steps) + 30
    out = [f'<svg class="chart" viewBox="0 0 {left + width + 240} {height}" role="img" '
           f'aria-label="recorded and candidate cost per step">',
           '<text class="title" x="0" y="16">Cost per step: recorded (grey) and under the candidate (blue, with '
           'its 95% interval)</text>']
    for i, s in enumerate(steps):
        y = 34 + i * row
        scale = width / top
        candidate = s.candidate_cost_usd or 0.0
        out.append(f'<text class="axis" x="{left - 8}" y="{y + 16}" text-anchor="end">{_esc(s.step)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{s.cost_usd * scale:.1f}" height="11" fill="{RECORDED}">'
                   f'<title>recorded ${s.cost_usd:.6f}</title></rect>')
        out.append(f'<rect x="{left}" y="{y + 13}" width="{candidate * scale:.1f}" height="11" fill="{CANDIDATE}">'
                   f'<title>candidate ${candidate:.6f}</title></rect>')
        if s.candidate_cost_ci is not None:
            lo, hi = left + s.candidate_cost_ci.low * scale, left + s.candidate_cost_ci.high * scale
            out.append(f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + 18.5}" y2="{y + 18.5}" stroke="#222" '
                       'stroke-width="1.5"/>')
        out.append(f'<text class="axis" x="{left + max(s.cost_usd, candidate) * scale + 6:.1f}" y="{y + 16}">'
                   f'${s.cost_usd:.6f} → ${candidate:.6f}</text>')
    out.append("</svg>")
    return "".join(out)


def replay_page(report: ReplayReport, *, log: str, config: str) -> str:
    """The page's HTML: the replay of ``log`` under ``config`` (both named as given)."""
    rows = "".join(_row(s) for s in report.steps)
    problems = "".join(f"<li>{_esc(p)}</li>" for p in report.problems)
    replayed = sum(1 for s in report.steps if s.replayable)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>steproute replay</title><style>{_CSS}</style></head><body><main>
<h1>steproute replay</h1>
<p class="sub">{report.calls} calls of {_esc(log)} decided again under {_esc(config)}; {replayed} of
{len(report.steps)} steps replayed; bootstrap 95% intervals (seed {report.seed}).</p>
<div class="wide"><table><thead><tr><th>step</th><th>calls</th><th>changed</th><th>95% CI</th><th>cost $</th>
<th>candidate $</th><th>95% CI</th><th>quality</th><th>candidate quality</th><th class=why>candidate tiers / why not</th>
</tr></thead><tbody>{rows}</tbody></table></div>
{_chart(report)}
{f"<h2>Lines not used</h2><ul>{problems}</ul>" if problems else ""}
</main></body></html>
"""
