"""`steproute report`: the table and the HTML page from a decision log written by a real router."""

from __future__ import annotations

import json

import pytest

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.cli import main
from steproute.decision_log import read_log
from steproute.report import format_table, summarise, write_html
from tests.conftest import mock_tiers


@pytest.fixture
def log(tmp_path):
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast", steps={"plan": "advanced"}),
                        decision_log=tmp_path / "d.jsonl")
    for step in ("rewrite", "plan", "rewrite", "<b>odd</b>"):
        router.complete(StepRequest(step, [{"role": "user", "content": "hi"}]))
    router.decision_log.close()
    return tmp_path / "d.jsonl"


def test_summaries_add_up(log):
    contents = read_log(log)
    *steps, total = summarise(contents)
    assert [s.step for s in steps] == ["rewrite", "plan", "<b>odd</b>"] and total.step == "TOTAL"
    assert [s.calls for s in steps] == [2, 1, 1] and total.calls == 4
    assert total.cost_usd == pytest.approx(sum(d["cost_usd"] for d in contents.decisions))
    assert total.cost_usd == pytest.approx(sum(s.cost_usd for s in steps))
    assert steps[1].savings_usd == pytest.approx(0) and steps[0].savings_share > 0.9
    assert dict(total.tiers) == {"fast": 3, "advanced": 1}
    table = format_table([*steps, total])
    assert "fast 75%, advanced 25%" in table and table.splitlines()[-1].startswith("TOTAL")


def test_escalations_and_errors_are_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in [
        {"type": "decision", "id": "1", "step": "a", "tier": "strong", "escalated_from": "fast", "cost_usd": 1,
         "baseline_cost_usd": 1},
        {"type": "decision", "id": "2", "step": "a", "tier": "fast", "cost_usd": 0.1, "baseline_cost_usd": 1},
        {"type": "decision", "id": "3", "step": "a", "tier": "fast", "error": "DispatchError"},
    ]) + "\n")
    a, total = summarise(read_log(path))
    assert total.calls == 3 and total.errors == 1
    assert (a.calls, a.escalations, a.errors) == (3, 1, 1) and a.escalation_rate == pytest.approx(1 / 3)


def test_html_page_is_self_contained_and_escapes_names(log, tmp_path):
    page = write_html(read_log(log), tmp_path / "r.html").read_text()
    assert page.count("<svg") == 5 and "<table>" in page  # cost, quality, tier mix, cost and escalations over time
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "<script" not in page


def test_report_command(log, tmp_path, capsys):
    assert main(["report", str(log), "--html", str(tmp_path / "out.html")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["step", "calls", "cost"] and "wrote" in out
    assert (tmp_path / "out.html").exists()


def test_report_command_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    assert main(["report", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"warning: {bad}:1: not JSON" in err and "holds no decisions" in err
