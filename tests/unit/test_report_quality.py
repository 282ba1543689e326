"""`steproute report`: quality beside cost (issue 18). Quality per step and tier from feedback
and shadow results, escalation rate over time, what rejected cascade attempts cost, cost and
latency per tenant, ``--since``/``--tenant`` filters and ``--json``."""

from __future__ import annotations

import calendar
import json
import time

import pytest

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.cli import main
from steproute.decision_log import read_log
from steproute.report import build_report, format_report, parse_since
from tests.conftest import mock_tiers

T0 = calendar.timegm((2025, 3, 1, 10, 0, 0))  # 2025-03-01 10:00 UTC
H = 3600.0


def _decision(id_, step, tier, ts, cost, base, latency, tenant, tokens=(100, 50), **extra):
    return {"type": "decision", "id": id_, "ts": ts, "step": step, "tier": tier, "tenant": tenant,
            "input_tokens": tokens[0], "output_tokens": tokens[1], "cost_usd": cost, "baseline_cost_usd": base,
            "latency_s": latency, **extra}


ENTRIES = [
    _decision("a1", "answer", "fast", T0, 0.001, 0.01, 0.2, "acme"),
    _decision("a2", "answer", "strong", T0 + H, 0.012, 0.01, 1.0, "acme", escalated_from="fast",
              cascade=[{"tier": "fast", "model": "m/fast", "accepted": False, "cost_usd": 0.001},
                       {"tier": "strong", "model": "m/strong", "accepted": None, "cost_usd": 0.011}]),
    _decision("a3", "answer", "fast", T0 + 25 * H, 0.001, 0.01, 0.3, "globex"),
    _decision("p1", "plan", "strong", T0 + 26 * H, 0.01, 0.01, 2.0, "globex"),
    _decision("r1", "plan", "strong", T0 + 27 * H, 0.0, 0.0, 0.001, "globex", tokens=(0, 0), outcome="refused",
              error="BudgetExceeded", guard="budget:refused"),
    {"type": "feedback", "id": "a1", "quality": 1.0},
    {"type": "feedback", "id": "a2", "quality": 0.5},
    {"type": "feedback", "id": "a3", "quality": 0.0},
    {"type": "feedback", "id": "p1", "quality": 1.0},
    # a shadow result: the same call answered on another tier beside the live one, and judged
    {"type": "shadow", "id": "a1", "tier": "strong", "model": "m/strong", "quality": 1.0, "cost_usd": 0.01},
    {"type": "shadow", "id": "a3", "tier": "strong", "model": "m/strong", "quality": 1.0, "cost_usd": 0.01},
]


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in ENTRIES))
    return path


def test_shadow_results_are_read_and_bad_ones_reported(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in [
        *ENTRIES, {"type": "shadow", "id": "a1", "tier": "strong", "quality": 7}, {"type": "shadow", "id": "a1"}]))
    contents = read_log(path)
    assert [(s["id"], s["tier"]) for s in contents.shadows] == [("a1", "strong"), ("a3", "strong")]
    assert contents.problems == [f"{path}:12: shadow result quality must be a number in [0, 1]",
                                 f"{path}:13: shadow result needs a 'tier' (a string)"]


def test_quality_per_step_and_tier_latency_rejected_cost_and_tenants(log):
    report = build_report(read_log(log))
    answer, plan = report.steps
    assert (answer.step, answer.calls, answer.rated) == ("answer", 3, 3)
    assert answer.quality == pytest.approx(0.5)
    # per tier: the live feedback of the calls that tier answered, plus shadow results on it
    assert answer.tier_quality() == {"fast": (pytest.approx(0.5), 2), "strong": (pytest.approx(2.5 / 3), 3)}
    assert answer.tier_cost == {"fast": pytest.approx(0.002), "strong": pytest.approx(0.012)}
    assert answer.rejected_cost_usd == pytest.approx(0.001) and answer.escalation_rate == pytest.approx(1 / 3)
    assert answer.latency_p50_s == pytest.approx(0.3) and answer.latency_p95_s == pytest.approx(0.93)
    assert (plan.calls, plan.refused, plan.quality) == (1, 1, 1.0)
    assert report.tier_order == ["fast", "strong"] and report.baseline_tier == "strong"
    acme, globex = report.tenants
    assert (acme.step, acme.calls, acme.cost_usd, acme.refused) == ("acme", 2, pytest.approx(0.013), 0)
    assert (globex.step, globex.calls, globex.cost_usd, globex.refused) == ("globex", 2, pytest.approx(0.011), 1)
    # quality against the baseline tier: paired on the decisions with a shadow result on it
    change = report.quality_change
    assert (change.routed, change.baseline, change.paired) == (pytest.approx(0.5), pytest.approx(1.0), 2)
    assert change.delta == pytest.approx(-0.5)
    # escalation rate over time: hourly buckets over the log's 27 hours
    buckets = [b for b in report.escalation if b.calls]
    assert [(b.start, b.calls, b.escalated) for b in buckets] == [
        (T0, 1, 0), (T0 + H, 1, 1), (T0 + 25 * H, 1, 0), (T0 + 26 * H, 1, 0)]


def test_the_table_shows_quality_latency_rejected_cost_tenants_and_escalations_over_time(log):
    text = format_report(build_report(read_log(log)))
    header = text.splitlines()[0].split()
    for column in ("quality", "rated", "rejected", "p50", "p95", "refused"):
        assert column in header, column
    answer = next(line for line in text.splitlines() if line.startswith("answer"))
    assert "0.50" in answer and "0.001000" in answer and "0.30" in answer and "0.93" in answer
    assert "quality by tier (feedback on the calls each tier answered, and shadow results):" in text
    assert any(line.split()[:4] == ["answer", "0.50", "(2)", "0.83"] for line in text.splitlines())
    assert "per tenant:" in text and any(line.split()[:2] == ["acme", "2"] for line in text.splitlines())
    assert "escalation rate by hour (UTC):" in text
    assert ["2025-03-01", "11:00", "1", "1", "100%"] in [line.split() for line in text.splitlines()]
    assert "quality -0.50 against the baseline tier 'strong' (paired on 2 decisions with a shadow result)" in text


def test_json_prints_one_object_with_steps_tenants_and_totals(log, capsys):
    assert main(["report", str(log), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # one object, nothing else on stdout
    assert set(data) >= {"steps", "tenants", "totals", "escalation_over_time", "tier_order", "baseline_tier",
                         "quality_change", "feedback", "filters"}
    answer = data["steps"][0]
    assert set(answer) >= {"step", "calls", "cost_usd", "baseline_cost_usd", "saving", "quality", "rated", "tiers",
                           "escalation_rate", "rejected_cost_usd", "latency_p50_s", "latency_p95_s", "refused"}
    assert answer["tiers"]["strong"] == {"calls": 1, "cost_usd": pytest.approx(0.012),
                                         "quality": pytest.approx(2.5 / 3), "rated": 3}
    assert answer["saving"] == pytest.approx(1 - 0.014 / 0.03) and answer["rejected_cost_usd"] == pytest.approx(0.001)
    assert data["totals"]["calls"] == 4 and data["totals"]["refused"] == 1
    assert [t["tenant"] for t in data["tenants"]] == ["acme", "globex"]
    assert data["quality_change"] == {"routed": pytest.approx(0.5), "baseline": pytest.approx(1.0),
                                      "delta": pytest.approx(-0.5), "paired": 2}
    assert data["escalation_over_time"][1] == {"start": "2025-03-01T11:00:00Z", "end": "2025-03-01T12:00:00Z",
                                               "calls": 1, "escalated": 1, "rate": 1.0}
    assert data["feedback"] == {"rated": 4, "decisions": 5, "mean_quality": pytest.approx(0.625), "unmatched": 0}


def test_json_with_html_keeps_stdout_one_object(log, tmp_path, capsys):
    assert main(["report", str(log), "--json", "--html", str(tmp_path / "r.html")]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert "wrote" in captured.err and (tmp_path / "r.html").exists()


def test_since_and_tenant_filter_the_decisions(log, capsys):
    assert main(["report", str(log), "--json", "--since", "2025-03-02"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in data["steps"]] == ["answer", "plan"] and data["totals"]["calls"] == 2
    assert data["filters"] == {"since": "2025-03-02T00:00:00Z", "tenant": []}
    assert main(["report", str(log), "--json", "--tenant", "acme"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["calls"] == 2 and [t["tenant"] for t in data["tenants"]] == ["acme"]
    assert main(["report", str(log), "--tenant", "globex", "--tenant", "acme", "--since", "2025-03-01T10:30Z"]) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("TOTAL"))
    assert total.split()[1] == "3"
    assert main(["report", str(log), "--tenant", "nobody"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no decisions match --tenant" in err and "nobody" not in err


def test_since_takes_a_duration_back_from_now(tmp_path, capsys):
    now = time.time()
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in [
        _decision("old", "answer", "fast", now - 48 * H, 0.001, 0.01, 0.1, None),
        _decision("new", "answer", "fast", now - H, 0.001, 0.01, 0.1, None)]))
    assert main(["report", str(path), "--json", "--since", "24h"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["calls"] == 1
    assert main(["report", str(path), "--json", "--since", "7d"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["calls"] == 2


@pytest.mark.parametrize("value", ["yesterday", "24x", "-5h", "2025-13-01", "", "1e400h", "10000000000d"])
def test_a_bad_since_is_a_one_line_error_naming_the_option(log, capsys, value):
    assert main(["report", str(log), f"--since={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("steproute report: --since:"), err
    assert "ISO date" in err and "24h" in err


def test_parse_since():
    now = T0 + 100.0
    assert parse_since("30m", now) == now - 1800 and parse_since("2d", now) == now - 2 * 86400
    assert parse_since("2025-03-01", now) == T0 - 10 * H
    assert parse_since("2025-03-01T10:00:00+01:00", now) == T0 - H
    with pytest.raises(ValueError, match="--since"):
        parse_since("soon", now)


def test_a_real_router_log_reports_quality_from_feedback(tmp_path, capsys):
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast", steps={"plan": "advanced"}),
                        decision_log=tmp_path / "d.jsonl")
    results = [router.complete(StepRequest(s, [{"role": "user", "content": "hi"}], tenant=t))
               for s, t in (("rewrite", "acme"), ("plan", "acme"), ("rewrite", "beta"))]
    router.feedback(results[0].decision.id, quality=1.0)
    router.feedback(results[1].decision.id, quality=0.0)
    router.decision_log.close()
    assert main(["report", str(tmp_path / "d.jsonl"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rewrite, plan = data["steps"]
    assert (rewrite["quality"], rewrite["rated"], plan["quality"]) == (1.0, 1, 0.0)
    assert data["tier_order"] == ["fast", "advanced"] and data["baseline_tier"] == "advanced"
    assert all(s["latency_p50_s"] > 0 for s in data["steps"])
    assert {t["tenant"]: t["calls"] for t in data["tenants"]} == {"acme": 2, "beta": 1}
