"""What `make demo` prints (examples/quickstart.py), on llmock over HTTP: each step's line as the
step finishes, the plan's check, the bill's `why` column, money in one readable format, and a line
that says whether the answer is right."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ORDER = {"items": [{"product": "notebook", "quantity": 3}, {"product": "pen", "quantity": 2}]}


@pytest.fixture
def quickstart(monkeypatch, llmock) -> ModuleType:
    for name, value in llmock.env().items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("quickstart_output", ROOT / "examples" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "quickstart_output", module)
    spec.loader.exec_module(module)
    return module


def _script(llmock, *, order=ORDER, plan="EXPRESSION: 3*4.50 + 2*1.20 + 3.90", call="3*4.50 + 2*1.20 + 3.90",
            reply="That comes to 19.80 EUR including shipping."):
    llmock.reply("notebooks pens price shipping")
    llmock.call_tool("Order", order)
    llmock.reply(f"3 notebooks at 4.50, 2 pens at 1.20, shipping 3.90.\n{plan}")
    llmock.call_tool("calculator", {"expression": call})
    llmock.reply(reply)


def test_each_step_line_is_printed_as_its_step_finishes(quickstart, llmock):
    _script(llmock)
    seen: list[tuple[str, int, str]] = []

    def on_step(name, state, calls):
        # how many model calls had reached the server when this step's line was printed
        seen.append((name, len(llmock.requests), quickstart.step_line(name, state, calls)))

    state, tracker = quickstart.run(quickstart.load_router("openai"), on_step=on_step, logprobs=False)
    assert [(name, requests) for name, requests, _ in seen] == [
        ("rewrite", 1), ("extract", 2), ("plan", 3), ("calculate", 4), ("answer", 5)]
    lines = {name: line for name, _, line in seen}
    assert re.match(r"\s*rewrite  fast\s+\d+\.\ds  notebooks pens price shipping$", lines["rewrite"])
    assert lines["plan"].splitlines()[1].strip() == "↳ expression checked against the order lines ✓"
    assert state["result"] == "19.80" and len(tracker.calls) == 5


def test_output_has_the_why_column_readable_money_and_the_verdict(quickstart, llmock, capsys):
    _script(llmock)
    assert quickstart.main(["--provider", "openai"]) == 0
    out = capsys.readouterr().out
    assert "answer: 19.80 EUR ✓ matches the order's known total" in out
    header = next(line for line in out.splitlines() if line.startswith("step "))
    assert header.split() == ["step", "tier", "model", "tokens", "in/out", "latency", "cost", "baseline", "saving", "why"]
    rows = [line for line in out.splitlines() if line.split()[:1] and line.split()[0] in quickstart.STEPS
            and "openai/" in line]
    assert len(rows) == 5
    why = {row.split()[0]: row.split("  ")[-1].strip() for row in rows}  # the decision's reason, last column
    assert why == {"rewrite": "fixed tier 'fast'", "extract": why["extract"], "plan": "fixed tier 'strong'",
                   "calculate": "fixed tier 'fast'", "answer": "fixed tier 'strong'"}, rows
    assert why["extract"].startswith("accepted (") and "schema=1" in why["extract"], why  # llmock sends no logprobs
    # every amount in one format: a dollar sign, two significant digits, no 7-decimal column
    amounts = re.findall(r"\$[0-9][0-9.,]*", out)
    assert amounts and all(a == quickstart.usd(float(a[1:])) for a in amounts), amounts
    assert all(len(a.split(".")[1].lstrip("0")) <= 2 for a in amounts if a.startswith("$0.")), amounts
    assert re.search(r"routed: \$0\.\d+  all on the baseline tier: \$0\.\d+  saving: \d+%", out)


def test_a_plan_that_triples_the_shipping_fee_is_caught_and_said(quickstart, llmock, capsys):
    _script(llmock, plan="EXPRESSION: 3 * 4.50 + 2 * 1.20 + 3 * 3.90 = 27.60 EUR", call="3 * 4.50 + 2 * 1.20 + 3.90")
    assert quickstart.main(["--provider", "openai"]) == 0
    out = capsys.readouterr().out
    assert ("↳ expression rejected: it makes 27.60, the order lines make 19.80 (3 * 4.50 + 2 * 1.20 + 3.90); "
            "the order lines' expression is used") in out
    assert "answer: 19.80 EUR ✓" in out


def test_a_wrong_answer_is_called_wrong_and_fails_the_run(quickstart, llmock, capsys):
    # the order misread (the 135M model's "2 x notebook"): the checks cannot know, the answer key does
    misread = {"items": [{"product": "notebook", "quantity": 3}, {"product": "notebook", "quantity": 2}]}
    _script(llmock, order=misread, plan="EXPRESSION: 3*4.50 + 2*4.50 + 3.90", call="3*4.50 + 2*4.50 + 3.90",
            reply="That comes to 26.40 EUR.")
    assert quickstart.main(["--provider", "openai"]) == 1
    out = capsys.readouterr().out
    assert "answer: 26.40 EUR ✗ WRONG: the order's known total is 19.80 EUR" in out


def test_a_custom_question_is_checked_only_against_an_expected_total(quickstart, llmock, capsys):
    _script(llmock)
    assert quickstart.main(["--provider", "openai", "--question", "3 notebooks, 2 pens?"]) == 0
    assert "answer: 19.80 EUR (no known total for this question: --expect EUR checks one)" in capsys.readouterr().out
    _script(llmock)
    assert quickstart.main(["--provider", "openai", "--question", "3 notebooks, 2 pens?", "--expect", "19.8"]) == 0
    assert "answer: 19.80 EUR ✓" in capsys.readouterr().out
