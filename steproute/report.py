"""``steproute report``: per-step cost beside quality, savings, tier mix, escalations, latency
and cost per tenant, from a decision log.

As text tables, one JSON object (:func:`report_json`), or one self-contained HTML page whose
charts are inline SVG (no script, no network; :func:`write_html`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steproute._report_arms import ArmReport, arm_report, arm_report_json, format_arm_report
from steproute._report_html import page
from steproute._report_shadow import shadow_json, shadow_lines
from steproute._report_stats import Report, StepSummary, bucket_name, build_report, iso, parse_since
from steproute._text_table import text_table
from steproute.config import RouterConfig
from steproute.decision_log import LogContents
from steproute.errors import shown

__all__ = ["ArmReport", "ConfigDrift", "Report", "StepSummary", "arm_report", "arm_report_json", "build_report",
           "check_decisions", "config_drift", "format_arm_report", "format_drift", "format_report", "format_table",
           "parse_since", "report_json", "summarise", "write_html"]


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
    """One summary per step, in order of first appearance, then a ``TOTAL`` summary (with the
    log's feedback and shadow results: see :func:`build_report` for the whole report)."""
    report = build_report(contents)
    return [*report.steps, report.total]


def _mix(tiers: Counter[str], calls: int) -> str:
    return ", ".join(f"{tier} {count / calls:.0%}" for tier, count in tiers.most_common()) if calls else "-"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(summaries: Sequence[StepSummary]) -> str:
    """The summaries as a plain-text table: cost, savings, tier mix, escalations, what rejected
    cascade attempts cost, mean feedback quality and how many calls are rated, latency (p50,
    p95) and errors; with calls refused by a tenant budget, a ``refused`` column and a line of
    the refusals by tenant."""
    header: tuple[str, ...] = ("step", "calls", "cost $", "baseline $", "saved $", "saved", "tier mix", "escalated",
                               "rejected $", "quality", "rated", "p50 s", "p95 s", "errors")
    rows: list[tuple[str, ...]] = [
        (s.step, str(s.calls), f"{s.cost_usd:.6f}", f"{s.baseline_cost_usd:.6f}", f"{s.savings_usd:.6f}",
         f"{s.savings_share:.0%}", _mix(s.tiers, s.calls), f"{s.escalation_rate:.0%}", f"{s.rejected_cost_usd:.6f}",
         _num(s.quality), str(s.rated), _num(s.latency_p50_s), _num(s.latency_p95_s), str(s.errors))
        for s in summaries]
    if not any(s.refused for s in summaries):
        return text_table(header, rows)
    table = text_table((*header, "refused"), [(*row, str(s.refused)) for row, s in zip(rows, summaries, strict=True)])
    steps = [s for s in summaries if s.step != "TOTAL"] or summaries
    tenants = sum((s.refused_tenants for s in steps), Counter[str]())
    said = ", ".join(f"tenant {shown(t)} {n}" for t, n in tenants.most_common())
    return f"{table}\nrefused by budget: {said}"


def _rated(value: tuple[float, int] | None) -> str:
    return "-" if value is None else f"{value[0]:.2f} ({value[1]})"


def quality_line(report: Report) -> str:
    """The quality of the routed calls against the baseline tier's, as one line."""
    change, base = report.quality_change, report.baseline_tier
    if change.delta is not None and change.paired:
        return (f"quality {change.delta:+.2f} against the baseline tier {base!r} (paired on {change.paired} "
                f"decision{'s' if change.paired != 1 else ''} with a shadow result): {change.routed:.2f} routed, "
                f"{change.baseline:.2f} on {base!r}")
    if change.delta is not None:
        return (f"quality {change.delta:+.2f} against the baseline tier {base!r}: {change.routed:.2f} routed, "
                f"{change.baseline:.2f} on {base!r} (means of different calls; shadow results on {base!r} pair them)")
    return (f"quality against the baseline tier {base!r}: not known (needs feedback on routed calls and on "
            f"{base!r}'s, or shadow results on {base!r})")


def _time(ts: float, size: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if size < 60 else "%Y-%m-%d %H:%M" if size < 86400 else "%Y-%m-%d",
                         time.gmtime(ts))


_MAX_TIME_ROWS = 24


def format_report(report: Report, under_table: Sequence[str] = ()) -> str:
    """The report as text: the per-step table (:func:`format_table`), the lines ``under_table``,
    the quality against the baseline tier, quality by tier, cost per tenant and the escalation
    rate over time."""
    parts = [format_table([*report.steps, report.total]), *under_table, quality_line(report), *shadow_lines(report.contents)]
    tiers = report.tier_order
    if any(s.tier_ratings for s in report.steps):
        rows = [(s.step, *(_rated(s.tier_quality().get(t)) for t in tiers)) for s in [*report.steps, report.total]]
        parts.append("\nquality by tier (feedback on the calls each tier answered, and shadow results):\n"
                     + text_table(("step", *tiers), rows))
    if any(t.step != "-" for t in report.tenants):
        rows = [(t.step, str(t.calls), f"{t.cost_usd:.6f}", f"{t.baseline_cost_usd:.6f}", f"{t.savings_share:.0%}",
                 _num(t.quality), str(t.rated), f"{t.rejected_cost_usd:.6f}", _num(t.latency_p50_s),
                 _num(t.latency_p95_s), str(t.refused)) for t in report.tenants]
        parts.append("\nper tenant:\n" + text_table(("tenant", "calls", "cost $", "baseline $", "saved", "quality",
                                                      "rated", "rejected $", "p50 s", "p95 s", "refused"), rows))
    busy = [b for b in report.escalation if b.calls]
    if len(busy) > 1:
        shown_rows = busy[-_MAX_TIME_ROWS:]
        more = f" (the last {len(shown_rows)} of {len(busy)})" if len(busy) > len(shown_rows) else ""
        rows = [(_time(b.start, report.bucket_s), str(b.calls), str(b.escalated), f"{b.rate:.0%}") for b in shown_rows]
        parts.append(f"\nescalation rate by {bucket_name(report.bucket_s)} (UTC){more}:\n"
                     + text_table(("from", "calls", "escalated", "rate"), rows))
    return "\n".join(parts)


def _figures(s: StepSummary, order: Sequence[str]) -> dict[str, Any]:
    quality = s.tier_quality()
    tiers = [t for t in order if s.tiers[t] or t in quality] + [t for t in s.tiers if t not in order]
    return {"calls": s.calls, "errors": s.errors, "escalations": s.escalations, "cost_usd": s.cost_usd,
            "baseline_cost_usd": s.baseline_cost_usd, "saved_usd": s.savings_usd, "saving": s.savings_share,
            "quality": s.quality, "rated": s.rated,
            "tiers": {t: {"calls": s.tiers[t], "cost_usd": s.tier_cost.get(t, 0.0),
                          "quality": quality[t][0] if t in quality else None,
                          "rated": quality[t][1] if t in quality else 0} for t in tiers},
            "escalation_rate": s.escalation_rate, "rejected_cost_usd": s.rejected_cost_usd,
            "latency_p50_s": s.latency_p50_s, "latency_p95_s": s.latency_p95_s, "refused": s.refused}


def report_json(report: Report, drift: ConfigDrift | None = None) -> dict[str, Any]:
    """The report as one JSON-serialisable object (the ``--json`` output; docs/telemetry.md
    lists its fields).

    Example:
        >>> log = LogContents(decisions=[{"id": "a", "step": "plan", "tier": "fast", "cost_usd": 0.5, "ts": 0}])
        >>> report_json(build_report(log))["steps"][0]["tiers"]
        {'fast': {'calls': 1, 'cost_usd': 0.5, 'quality': None, 'rated': 0}}
    """
    contents, order = report.contents, report.tier_order
    ids = {d["id"] for d in contents.decisions}
    rated = [float(f["quality"]) for i, f in contents.feedback.items() if i in ids]
    change = report.quality_change
    out: dict[str, Any] = {
        "steps": [{"step": s.step, **_figures(s, order)} for s in report.steps],
        "tenants": [{"tenant": None if t.step == "-" else t.step, **_figures(t, order)} for t in report.tenants],
        "totals": _figures(report.total, order),
        "tier_order": order,
        "baseline_tier": report.baseline_tier,
        "quality_change": {"routed": change.routed, "baseline": change.baseline, "delta": change.delta,
                           "paired": change.paired},
        "feedback": {"rated": len(rated), "decisions": len(ids),
                     "mean_quality": sum(rated) / len(rated) if rated else None,
                     "unmatched": len(contents.feedback) - len(rated)},
        "escalation_bucket_s": report.bucket_s,
        "escalation_over_time": [{"start": iso(b.start), "end": iso(b.end), "calls": b.calls,
                                  "escalated": b.escalated, "rate": b.rate} for b in report.escalation],
        "filters": {"since": None if report.since is None else iso(report.since), "tenant": list(report.tenant_filter)},
        "problems": len(contents.problems),
    }
    if contents.shadows or any("shadow" in d for d in contents.decisions):
        out["shadow"] = shadow_json(contents)
    if drift is not None:
        out["config"] = {"not_called": list(drift.not_called), "not_configured": list(drift.not_configured)}
    return out


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




def write_html(contents: LogContents | Report, path: str | Path, *, title: str = "steproute report",
               drift: ConfigDrift | None = None) -> Path:
    """Write one self-contained page (inline CSS and SVG, no script, nothing fetched) and return
    its path: a headline (saving, and quality against the baseline tier), the per-step and
    per-tenant tables, and charts of cost, quality per tier, tier mix, cost over time and the
    escalation rate over time, each tier in one colour from cheap to strong. With ``drift``
    (:func:`config_drift`), a section on where configuration and log disagree.

    Example:
        >>> import tempfile, pathlib
        >>> log = LogContents(decisions=[{"id": "a", "step": "plan", "tier": "fast", "cost_usd": 0.5, "ts": 0}])
        >>> write_html(log, pathlib.Path(tempfile.mkdtemp()) / "r.html").read_text().count("<svg") >= 5
        True
    """
    report = contents if isinstance(contents, Report) else build_report(contents)
    drifted = drift.lines() if drift is not None else []
    text = page(report, title=title, mix=[_mix(s.tiers, s.calls) for s in [*report.steps, report.total]],
                quality=quality_line(report), drift=drifted)
    out = Path(path)
    out.write_text(text, encoding="utf-8")
    return out
