"""The figures of ``steproute report``: per step and per tenant, cost beside quality (from
feedback and shadow results), latency, escalations over time and what rejected cascade
attempts cost; the ``--since`` and ``--tenant`` filters. :mod:`steproute.report` prints them,
:mod:`steproute._report_html` draws them."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from steproute.decision_log import LogContents

__all__ = ["Bucket", "QualityChange", "Report", "StepSummary", "build_report", "iso", "parse_since", "percentile",
           "select"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks; ``None`` when empty.

    Example:
        >>> percentile([0.2, 0.3, 1.0], 0.95)
        0.93
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 12)


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


@dataclass
class StepSummary:
    """Totals of one step (or one tenant, or all steps for the ``TOTAL`` row)."""

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
    tier_cost: dict[str, float] = field(default_factory=dict)
    """What the calls each tier answered cost (a cascade's step cost, rejected attempts included)."""
    rejected_cost_usd: float = 0.0
    """What cascade attempts whose answer was not used cost (rejected, or cancelled)."""
    latencies: list[float] = field(default_factory=list)
    quality_sum: float = 0.0
    rated: int = 0
    """Calls with feedback (``quality`` is their mean)."""
    tier_ratings: dict[str, list[float]] = field(default_factory=dict)
    """Per tier: the feedback on the calls it answered, and shadow results judged on it."""

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_share(self) -> float:
        return self.savings_usd / self.baseline_cost_usd if self.baseline_cost_usd else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalations / self.calls if self.calls else 0.0

    @property
    def quality(self) -> float | None:
        """The mean feedback quality of the calls (``None``: none rated)."""
        return self.quality_sum / self.rated if self.rated else None

    @property
    def latency_p50_s(self) -> float | None:
        return percentile(self.latencies, 0.5)

    @property
    def latency_p95_s(self) -> float | None:
        return percentile(self.latencies, 0.95)

    def tier_quality(self) -> dict[str, tuple[float, int]]:
        """``{tier: (mean quality, ratings)}`` for the tiers with a rating."""
        return {t: (sum(r) / len(r), len(r)) for t, r in self.tier_ratings.items() if r}

    def add(self, decision: Mapping[str, Any], feedback: Mapping[str, Any] | None = None,
            shadows: Sequence[Mapping[str, Any]] = ()) -> None:
        """Count one decision, with its feedback and the shadow results on it."""
        if decision.get("outcome") == "refused":
            self.refused += 1
            self.refused_tenants[str(decision.get("tenant"))] += 1
            return
        tier = str(decision.get("tier"))
        cost = float(decision.get("cost_usd") or 0.0)
        self.calls += 1
        self.errors += bool(decision.get("error"))
        self.escalations += bool(decision.get("escalated_from"))
        self.cost_usd += cost
        self.baseline_cost_usd += float(decision.get("baseline_cost_usd") or 0.0)
        self.tiers[tier] += 1
        self.tier_cost[tier] = self.tier_cost.get(tier, 0.0) + cost
        cascade = decision.get("cascade")
        if isinstance(cascade, list):
            self.rejected_cost_usd += sum(_number(a.get("cost_usd")) or 0.0 for a in cascade[:-1] if isinstance(a, dict))
        latency = _number(decision.get("latency_s"))
        if latency is not None:
            self.latencies.append(latency)
        if feedback is not None:
            self.quality_sum += float(feedback["quality"])
            self.rated += 1
            self.tier_ratings.setdefault(tier, []).append(float(feedback["quality"]))
        for shadow in shadows:
            self.tier_ratings.setdefault(str(shadow["tier"]), []).append(float(shadow["quality"]))


@dataclass(frozen=True)
class Bucket:
    """The calls of one stretch of time, and how many of them escalated."""

    start: float
    end: float
    calls: int
    escalated: int

    @property
    def rate(self) -> float | None:
        return self.escalated / self.calls if self.calls else None


@dataclass(frozen=True)
class QualityChange:
    """Quality of the routed calls against the baseline tier's."""

    routed: float | None
    baseline: float | None
    paired: int
    """Decisions rated live and with a shadow result on the baseline tier (the comparison is
    made on them); 0: the means of different calls are compared."""

    @property
    def delta(self) -> float | None:
        return None if self.routed is None or self.baseline is None else self.routed - self.baseline


@dataclass
class Report:
    """Everything ``steproute report`` shows: see :func:`build_report`."""

    steps: list[StepSummary]
    total: StepSummary
    tenants: list[StepSummary]
    escalation: list[Bucket]
    bucket_s: float
    tier_order: list[str]
    baseline_tier: str | None
    quality_change: QualityChange
    contents: LogContents
    since: float | None = None
    tenant_filter: tuple[str, ...] = ()


_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 86400, 7 * 86400)
_MAX_BUCKETS = 48


def bucket_name(seconds: float) -> str:
    """``hour``, ``day``, ``5 minutes``, ...: a bucket's length in words."""
    for unit, size in (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds:g} s"


def _escalation(decisions: Sequence[Mapping[str, Any]]) -> tuple[list[Bucket], float]:
    times = [(float(d["ts"]), bool(d.get("escalated_from"))) for d in decisions
             if _number(d.get("ts")) is not None and d.get("outcome") != "refused"]
    if not times:
        return [], 3600.0
    first, last = min(t for t, _ in times), max(t for t, _ in times)
    size = next((s for s in _BUCKETS if (last // s - first // s) < _MAX_BUCKETS), _BUCKETS[-1])
    start = first // size * size
    count = int(last // size - first // size) + 1
    calls, escalated = [0] * count, [0] * count
    for ts, up in times:
        i = int(ts // size - start // size)
        calls[i] += 1
        escalated[i] += up
    return [Bucket(start + i * size, start + (i + 1) * size, calls[i], escalated[i]) for i in range(count)], size


def tier_order(contents: LogContents, configured: Sequence[str] = ()) -> list[str]:
    """The log's tiers cheap to strong: the configuration's order when given, else by the mean
    price per token of the calls each tier answered alone (no cascade)."""
    seen = dict.fromkeys(str(d.get("tier")) for d in contents.decisions)
    seen.update(dict.fromkeys(str(s["tier"]) for s in contents.shadows))
    if configured:
        return [t for t in configured if t in seen] + [t for t in seen if t not in configured]
    price: dict[str, list[float]] = {}
    for d in contents.decisions:
        tokens = (_number(d.get("input_tokens")) or 0) + (_number(d.get("output_tokens")) or 0)
        if tokens > 0 and not d.get("cascade") and not d.get("error"):
            price.setdefault(str(d.get("tier")), []).append(float(d.get("cost_usd") or 0.0) / tokens)
    mean = {t: sum(p) / len(p) for t, p in price.items()}
    return sorted(seen, key=lambda t: (t not in mean, mean.get(t, 0.0)))


def _baseline_tier(contents: LogContents, order: Sequence[str], configured: str | None) -> str | None:
    """The configuration's baseline; else the tier whose single calls cost their baseline cost."""
    if configured is not None:
        return configured
    matches: Counter[str] = Counter()
    for d in contents.decisions:
        cost, base = _number(d.get("cost_usd")), _number(d.get("baseline_cost_usd"))
        if cost and base and not d.get("cascade") and math.isclose(cost, base, rel_tol=1e-9):
            matches[str(d.get("tier"))] += 1
    if matches:
        return matches.most_common(1)[0][0]
    return order[-1] if order else None


def _quality_change(contents: LogContents, baseline: str | None) -> QualityChange:
    ids = {d["id"]: d for d in contents.decisions if d.get("outcome") != "refused"}
    live = [float(f["quality"]) for i, f in contents.feedback.items() if i in ids]
    on_baseline = {s["id"]: float(s["quality"]) for s in contents.shadows if s["tier"] == baseline and s["id"] in ids}
    pairs = [(float(contents.feedback[i]["quality"]), q) for i, q in on_baseline.items()
             if i in contents.feedback and ids[i].get("tier") != baseline]
    if pairs:
        return QualityChange(sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs), len(pairs))
    base = [float(contents.feedback[i]["quality"]) for i, d in ids.items()
            if d.get("tier") == baseline and i in contents.feedback] + list(on_baseline.values())
    return QualityChange(sum(live) / len(live) if live else None, sum(base) / len(base) if base else None, 0)


def build_report(contents: LogContents, *, tiers: Sequence[str] = (), baseline: str | None = None,
                 since: float | None = None, tenants: Sequence[str] = ()) -> Report:
    """The report of a log's decisions (those from ``since`` on, of ``tenants`` when given).

    ``tiers`` (cheap to strong) and ``baseline`` come from a configuration when there is one;
    without, they are worked out from the log (:func:`tier_order`; the baseline is the tier
    whose calls cost exactly their baseline cost).

    Example:
        >>> log = LogContents(decisions=[{"id": "a", "step": "plan", "tier": "fast", "cost_usd": 0.001,
        ...                               "baseline_cost_usd": 0.01, "ts": 0, "tenant": "acme"}],
        ...                   feedback={"a": {"quality": 1.0}})
        >>> report = build_report(log)
        >>> report.steps[0].quality, report.tenants[0].step, round(report.total.savings_share, 2)
        (1.0, 'acme', 0.9)
    """
    contents = select(contents, since=since, tenants=tenants)
    shadows: dict[str, list[dict[str, Any]]] = {}
    for shadow in contents.shadows:
        shadows.setdefault(shadow["id"], []).append(shadow)
    steps: dict[str, StepSummary] = {}
    by_tenant: dict[str, StepSummary] = {}
    total = StepSummary("TOTAL")
    for decision in contents.decisions:
        feedback = contents.feedback.get(decision["id"]) if "id" in decision else None
        on_it = shadows.get(decision.get("id", ""), ())
        name = str(decision.get("step"))
        tenant = decision.get("tenant")
        for summary in (steps.setdefault(name, StepSummary(name)), total,
                        by_tenant.setdefault("-" if tenant is None else str(tenant),
                                             StepSummary("-" if tenant is None else str(tenant)))):
            summary.add(decision, feedback, on_it)
    order = tier_order(contents, tiers)
    base = _baseline_tier(contents, order, baseline)
    buckets, size = _escalation(contents.decisions)
    return Report(list(steps.values()), total, sorted(by_tenant.values(), key=lambda s: s.step), buckets, size, order,
                  base, _quality_change(contents, base), contents, since, tuple(tenants))


def select(contents: LogContents, *, since: float | None = None, tenants: Sequence[str] = ()) -> LogContents:
    """The decisions from ``since`` (Unix time) on, of the given tenants; feedback and shadow
    results are kept for the decisions kept."""
    if since is None and not tenants:
        return contents
    wanted = set(tenants)
    kept = [d for d in contents.decisions
            if (since is None or (_number(d.get("ts")) or 0.0) >= since)
            and (not wanted or d.get("tenant") in wanted)]
    ids = {d.get("id") for d in kept}
    return LogContents(decisions=kept, feedback={i: f for i, f in contents.feedback.items() if i in ids},
                       shadows=[s for s in contents.shadows if s["id"] in ids], problems=contents.problems,
                       too_long=contents.too_long)


_DURATION = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_HELP = "an ISO date or date/time (2025-01-31, 2025-01-31T09:00, UTC unless a zone is given) or a duration " \
             "back from now (30m, 24h, 7d, 2w)"


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: an ISO date/time (UTC unless it names a zone) or a duration back from ``now``,
    as a Unix time.

    Raises:
        ValueError: neither (the message names the option, never the value).

    Example:
        >>> parse_since("24h", now=100000.0), parse_since("1970-01-02")
        (13600.0, 86400.0)
    """
    now = time.time() if now is None else now
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
        if seconds <= now:
            return now - seconds
        raise ValueError("--since: that duration reaches back before 1970; give " + SINCE_HELP)
    if value[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not take the suffix
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("--since: expected " + SINCE_HELP) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def iso(ts: float) -> str:
    """A Unix time as ISO 8601 in UTC, ``Z``-suffixed, to the second."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
