"""The threshold explorer: one self-contained HTML page (``steproute eval|calibrate --html``).

A slider moves a scoring policy's threshold over its evaluated sweep and shows, live, the share
of calls per tier, quality against the strongest tier, cost per call and the saving against the
strongest tier, with the quality/cost curve drawn inline (SVG) and the marked point (the
policy's threshold, or the calibrated one) on it. The sweep's points are embedded as JSON; the
script is inline and small; nothing is fetched (no server, no network, no library).

The page reads ``#t=0.42`` from its address: the slider goes to the policy's behaviour at that
threshold (the swept point with the largest threshold not above it; ``index_at``).

Example:
    >>> from steproute.evaluation import Curve, Point
    >>> curve = Curve((Point(-1.0, 1.0, 0.9, 2.0, (0.0, 1.0)), Point(0.1, 0.5, 0.85, 1.1, (0.5, 0.5)),
    ...                Point(0.5, 0.0, 0.6, 0.2, (1.0, 0.0))))
    >>> data = explorer_data(curve, tiers=("fast", "strong"), rows=10, strong_quality=0.9, strong_cost_usd=2.0,
    ...                      weak_quality=0.6, weak_cost_usd=0.2, marked_threshold=0.2, marked_label="calibrated")
    >>> data["marked"]["index"], [p["threshold"] for p in data["points"]]
    (1, [-1.0, 0.1, 0.5])
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steproute.evaluation._metrics import Curve

__all__ = ["explorer_data", "index_at", "render_explorer", "write_explorer"]

_W, _H, _LEFT, _TOP, _RIGHT, _BOTTOM = 640, 340, 64, 16, 36, 44
_TIER_COLOURS = ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#041a3a")


def index_at(thresholds: Sequence[float], threshold: float) -> int:
    """Index of the swept point that behaves as ``threshold`` does: the largest swept threshold
    not above it (the first point when all are above). ``thresholds`` rise.

    Example:
        >>> index_at([-1.0, 0.1, 0.5], 0.3), index_at([-1.0, 0.1, 0.5], -5.0)
        (1, 0)
    """
    k = 0
    for i, t in enumerate(thresholds):
        if t <= threshold:
            k = i
    return k


def explorer_data(curve: Curve, *, tiers: Sequence[str], rows: int, strong_quality: float, strong_cost_usd: float,
                  weak_quality: float, weak_cost_usd: float, marked_threshold: float, marked_label: str,
                  title: str = "") -> dict[str, Any]:
    """What the page embeds: the sweep's points by rising threshold, the references, the marked point."""
    if len(curve.points) < 2 or any(not p.tier_shares for p in curve.points):
        raise ValueError("the explorer needs a threshold sweep (a classifier or semantic policy)")
    points = sorted(curve.points, key=lambda p: p.threshold)
    index = index_at([p.threshold for p in points], marked_threshold)
    return {
        "title": title, "tiers": list(tiers), "rows": rows,
        "strong_quality": strong_quality, "strong_cost_usd": strong_cost_usd,
        "weak_quality": weak_quality, "weak_cost_usd": weak_cost_usd,
        "points": [{"threshold": p.threshold, "tier_shares": list(p.tier_shares), "quality": p.quality,
                    "cost_usd": p.cost_usd} for p in points],
        "marked": {"threshold": marked_threshold, "index": index, "label": marked_label},
        "plot": _scales(points, rows, strong_quality, strong_cost_usd, weak_quality, weak_cost_usd),
    }


def _scales(points: Sequence[Any], rows: int, *refs: float) -> dict[str, float]:
    strong_q, strong_c, weak_q, weak_c = refs
    costs = [p.cost_usd / rows for p in points] + [strong_c / rows, weak_c / rows]
    quals = [p.quality for p in points] + [strong_q, weak_q]
    x0, x1 = 0.0, max(costs) * 1.05 or 1.0
    y0, y1 = max(0.0, min(quals) - 0.03), min(1.0, max(quals) + 0.03)
    if y1 <= y0:
        y0, y1 = y0 - 0.05, y1 + 0.05
    return {"x0": x0, "x1": x1, "y0": y0, "y1": y1, "left": _LEFT, "top": _TOP,
            "width": _W - _LEFT - _RIGHT, "height": _H - _TOP - _BOTTOM}


def _xy(plot: dict[str, float], cost_per_call: float, quality: float) -> tuple[float, float]:
    x = plot["left"] + (cost_per_call - plot["x0"]) / (plot["x1"] - plot["x0"]) * plot["width"]
    y = plot["top"] + (plot["y1"] - quality) / (plot["y1"] - plot["y0"]) * plot["height"]
    return round(x, 2), round(y, 2)


def _money(value: float) -> str:
    return f"${value:.3g}" if value < 0.01 else f"${value:.4f}"


def _svg(data: dict[str, Any]) -> str:
    plot, rows = data["plot"], data["rows"]
    curve = sorted((p["cost_usd"] / rows, p["quality"]) for p in data["points"])
    line = " ".join(f"{x},{y}" for x, y in (_xy(plot, c, q) for c, q in curve))
    parts = [f'<svg id="curve" class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
             'aria-label="quality against cost per call over the sweep">',
             f'<rect x="{plot["left"]}" y="{plot["top"]}" width="{plot["width"]}" height="{plot["height"]}" '
             'fill="#fafafa" stroke="#ccc"/>']
    for i in range(5):
        c = plot["x0"] + (plot["x1"] - plot["x0"]) * i / 4
        q = plot["y0"] + (plot["y1"] - plot["y0"]) * i / 4
        x, _ = _xy(plot, c, plot["y0"])
        _, y = _xy(plot, plot["x0"], q)
        parts.append(f'<text class="xtick" x="{x}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{_money(c)}</text>')
        parts.append(f'<text class="ytick" x="{_LEFT - 6}" y="{y + 4}" text-anchor="end">{q:.2f}</text>')
    parts.append(f'<text x="{_LEFT + plot["width"] / 2}" y="{_H - 6}" text-anchor="middle">cost per call</text>')
    parts.append(f'<text x="14" y="{_TOP + plot["height"] / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {_TOP + plot["height"] / 2})">mean quality</text>')
    parts.append(f'<polyline points="{line}" fill="none" stroke="#4292c6" stroke-width="2"/>')
    for name, q, c, anchor in (("always cheapest", data["weak_quality"], data["weak_cost_usd"], "start"),
                               ("always strongest", data["strong_quality"], data["strong_cost_usd"], "end")):
        x, y = _xy(plot, c / rows, q)
        parts.append(f'<rect class="ref" x="{x - 4}" y="{y - 4}" width="8" height="8" fill="#888"/>'
                     f'<text x="{x + (7 if anchor == "start" else -7)}" y="{y + 16}" text-anchor="{anchor}" '
                     f'font-size="11" fill="#555">{name}</text>')
    marked = data["points"][data["marked"]["index"]]
    x, y = _xy(plot, marked["cost_usd"] / rows, marked["quality"])
    parts.append(f'<circle id="marked" cx="{x}" cy="{y}" r="8" fill="none" stroke="#d95f02" stroke-width="3"/>')
    parts.append(f'<circle id="current" cx="{x}" cy="{y}" r="5" fill="#111"/>')
    parts.append("</svg>")
    return "".join(parts)


_SCRIPT = """(() => {
const D = JSON.parse(document.getElementById('sweep').textContent);
const P = D.points, slider = document.getElementById('slider');
const pct = v => (100 * v).toFixed(1) + '%';
const money = v => '$' + (v < 0.01 ? v.toPrecision(3) : v.toFixed(4));
function put(id, value, text) { const e = document.getElementById(id); e.dataset.value = String(value); e.textContent = text; }
function indexAt(t) { let k = 0; P.forEach((p, i) => { if (p.threshold <= t) k = i; }); return k; }
function show(i) {
  const p = P[i], perCall = p.cost_usd / D.rows, strongPerCall = D.strong_cost_usd / D.rows;
  put('threshold', p.threshold, p.threshold.toPrecision(4));
  slider.dataset.index = String(i);
  slider.setAttribute('aria-valuetext', 'threshold ' + p.threshold.toPrecision(4));
  D.tiers.forEach((t, j) => {
    put('share-' + t, p.tier_shares[j], pct(p.tier_shares[j]));
    document.getElementById('bar-' + t).style.width = (100 * p.tier_shares[j]) + '%';
  });
  put('quality', p.quality, p.quality.toFixed(4));
  const ratio = D.strong_quality > 0 ? p.quality / D.strong_quality : 0;
  put('quality-ratio', ratio, pct(ratio));
  put('cost-per-call', perCall, money(perCall));
  const saving = D.strong_cost_usd > 0 ? 1 - p.cost_usd / D.strong_cost_usd : 0;
  put('saving', saving, pct(saving));
  put('saving-per-call', strongPerCall - perCall, money(strongPerCall - perCall));
  const g = D.plot, c = document.getElementById('current');
  c.setAttribute('cx', g.left + (perCall - g.x0) / (g.x1 - g.x0) * g.width);
  c.setAttribute('cy', g.top + (g.y1 - p.quality) / (g.y1 - g.y0) * g.height);
  document.getElementById('at-marked').hidden = i !== D.marked.index;
}
function fromAddress() {
  const m = /[#&]t=([^&]+)/.exec(location.hash);
  const t = m ? parseFloat(decodeURIComponent(m[1])) : NaN;
  if (Number.isFinite(t)) slider.value = String(indexAt(t));
  show(Number(slider.value));
}
slider.addEventListener('input', () => show(Number(slider.value)));
window.addEventListener('hashchange', fromAddress);
fromAddress();
})();
"""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; }
main { max-width: 1100px; }
.row { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
.row > div:first-child { flex: 0 0 380px; }
input[type=range] { width: 100%; max-width: 640px; }
table.readout td { padding: 2px 12px 2px 0; } table.readout td.v { font-weight: 600; text-align: right; }
.bar { display: flex; width: 320px; height: 18px; border: 1px solid #ccc; }
.bar span { display: block; height: 100%; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
svg text { font-size: 11px; fill: #444; }
.note { color: #666; font-size: 12px; }
"""


def render_explorer(data: dict[str, Any]) -> str:
    """The page for :func:`explorer_data`'s ``data``."""
    esc = html.escape
    tiers = data["tiers"]
    colours = {t: _TIER_COLOURS[min(i, len(_TIER_COLOURS) - 1)] for i, t in enumerate(tiers)}
    shares = "".join(f'<tr><td><span class="swatch" style="background:{colours[t]}"></span>{esc(t)}</td>'
                     f'<td class="v" id="share-{esc(t)}"></td></tr>' for t in tiers)
    bar = "".join(f'<span id="bar-{esc(t)}" data-tier="{esc(t)}" style="background:{colours[t]}"></span>' for t in tiers)
    payload = json.dumps(data, allow_nan=False).replace("<", "\\u003c")
    marked = data["marked"]
    strong_per_call = esc(_money(data["strong_cost_usd"] / data["rows"]))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>steproute threshold explorer{': ' + esc(data['title']) if data['title'] else ''}</title>
<style>{_STYLE}</style></head>
<body><main>
<h1>Threshold explorer{': ' + esc(data['title']) if data['title'] else ''}</h1>
<p class="note">{data['rows']} rows, tiers {esc(', '.join(tiers))} (cheap to strong). Move the slider: a higher
threshold lets more calls stay on cheaper tiers. Figures are the sweep's, replayed offline.</p>
<p><label for="slider">threshold <b id="threshold"></b></label>
<span id="at-marked" hidden> &mdash; {esc(marked['label'])}</span><br>
<input type="range" id="slider" min="0" max="{len(data['points']) - 1}" step="1" value="{marked['index']}"></p>
<div class="row"><div>
<div class="bar">{bar}</div>
<table class="readout"><tbody>{shares}
<tr><td>mean quality</td><td class="v" id="quality"></td></tr>
<tr><td>quality against the strongest tier</td><td class="v" id="quality-ratio"></td></tr>
<tr><td>cost per call</td><td class="v" id="cost-per-call"></td></tr>
<tr><td>saving against the strongest tier</td><td class="v" id="saving"></td></tr>
<tr><td>saving per call</td><td class="v" id="saving-per-call"></td></tr>
</tbody></table>
<p class="note">Always the strongest tier: quality {data['strong_quality']:.4f}, {strong_per_call}
per call.<br><span style="color:#d95f02">&#9711;</span> {esc(marked['label'])} (threshold {marked['threshold']:.4g});
&#9679; the slider's point.</p>
</div><div>{_svg(data)}</div></div>
</main>
<script type="application/json" id="sweep">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_explorer(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the page atomically (a temporary file renamed into place); ``OSError`` when it cannot."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(render_explorer(data), encoding="utf-8")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
