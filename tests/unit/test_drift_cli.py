"""``steproute drift LOG [--recent N] [--json]``: which step's figure moved, by how much, with its
p-value; exit status 3 when a step drifted, 0 when none did, 2 on bad input."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from steproute.cli import main

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("drift_fp", ROOT / "benchmarks" / "drift_false_positives.py")
assert _spec is not None and _spec.loader is not None
fp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fp)


def write_log(path: Path, *, shift: dict | None = None, rewrite_calls: int = 2000) -> Path:
    rng = random.Random(11)
    entries: list[dict] = []
    for decisions, feedback in (fp.calls(rng, 1500), fp.calls(rng, 500, start=1500, **(shift or {})),
                                fp.calls(rng, rewrite_calls, step="rewrite")):
        entries += decisions + list(feedback.values())
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return path


def test_a_drifted_step_is_flagged_in_json_and_the_exit_status_is_3(tmp_path, capsys):
    log = write_log(tmp_path / "decisions.jsonl", shift={"strong": 0.5, "escalate": 0.25})
    assert main(["drift", str(log), "--recent", "500", "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    steps = {s["step"]: s for s in out["steps"]}
    assert (steps["extract"]["drifted"], steps["rewrite"]["drifted"]) == (True, False)
    assert out["drifted"] == ["extract"] and out["recent"] == 500 and out["correction"] == "holm"
    mix = steps["extract"]["figures"]["tier_mix"]
    assert mix["moved"] and mix["after"]["strong"] > 0.4 and mix["p_adjusted"] < 0.01
    assert set(steps["extract"]["figures"]) == {"tier_mix", "escalation_rate", "fallback_rate", "cost_per_call", "quality"}
    assert steps["extract"]["moved"] == ["tier_mix", "escalation_rate", "cost_per_call"]


def test_the_text_says_which_figure_moved_before_and_after_with_its_p_value(tmp_path, capsys):
    log = write_log(tmp_path / "decisions.jsonl", shift={"escalate": 0.25})
    assert main(["drift", str(log)]) == 3
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "escalation rate" in ln and "extract" not in ln)
    assert "→" in line and ("p=" in line or "p<" in line) and "moved" in line
    assert "extract: DRIFTED" in out and "rewrite: steady" in out
    assert "1 of 2 steps drifted: extract" in out


def test_a_steady_log_exits_0_and_few_calls_say_not_enough(tmp_path, capsys):
    log = write_log(tmp_path / "decisions.jsonl", rewrite_calls=40)
    assert main(["drift", str(log), "--recent", "500"]) == 0
    out = capsys.readouterr().out
    assert "extract: steady" in out
    assert "rewrite: not enough calls (n=0 before, 40 recent; needs 30 in each)" in out
    assert main(["drift", str(log), "--json"]) == 0
    steps = {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert steps["rewrite"]["drifted"] is False and steps["rewrite"]["enough_calls"] is False


@pytest.mark.parametrize("args, message", [
    (["--recent", "0"], "--recent must be an integer of at least 1"),
    (["--recent", "-5"], "--recent must be an integer of at least 1"),
    (["--alpha", "2"], "--alpha must be a number in (0, 1)"),
])
def test_bad_numbers_are_refused_with_status_2(tmp_path, capsys, args, message):
    log = write_log(tmp_path / "decisions.jsonl")
    assert main(["drift", str(log), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_or_wrong_file_is_a_clear_error_with_status_2(tmp_path, capsys):
    assert main(["drift", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such decision log" in capsys.readouterr().err
    assert main(["drift", str(tmp_path)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "r", "outcomes": {"m": {"quality": 1}}}) + "\n", encoding="utf-8")
    assert main(["drift", str(rows)]) == 2
    assert "not a decision log" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert main(["drift", str(empty)]) == 1
    assert "holds no decisions" in capsys.readouterr().err


def test_errors_never_echo_what_the_log_holds(tmp_path, capsys):
    secret = "sk-live-7f3c9a1b2d4e6f80aa"
    log = tmp_path / "d.jsonl"
    log.write_text(json.dumps({"type": "decision", "id": secret, "step": secret, "tier": "fast", "cost_usd": "x",
                               "ts": 1}) + "\n", encoding="utf-8")
    assert main(["drift", str(log)]) == 2
    captured = capsys.readouterr()
    assert secret not in captured.err + captured.out


def test_without_scipy_the_command_names_the_extra_and_a_watch_never_fails_the_router(tmp_path):
    import subprocess
    import sys

    from tests.unit.test_plain_install import BLOCK_EXTRAS

    log = write_log(tmp_path / "decisions.jsonl")
    code = BLOCK_EXTRAS + f"""
import logging, json
from steproute.cli import main
status = main(["drift", {str(log)!r}])
from steproute import RouterConfig, StepRequest, StepRouter
from steproute.drift import DriftWatch

class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())

warnings = []
logging.getLogger("steproute").addHandler(Keep())
watch = DriftWatch(window=40, every=10, background=False)
fast = {{"models": [{{"model": "openai/gpt-4o-mini", "mock_response": "ok", "api_key": "k"}}]}}
router = StepRouter(RouterConfig(tiers={{"fast": fast}}, default="fast"), decision_log=watch)
ask = StepRequest("s", [{{"role": "user", "content": "hi"}}])
answers = sorted({{router.complete(ask).completion.content for _ in range(100)}})
print(json.dumps({{"status": status, "answers": answers, "warnings": [w for w in warnings if "drift" in w]}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "steproute drift: drift detection needs scipy: pip install 'steproute[drift]'" in proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == 2 and out["answers"] == ["ok"]
    assert out["warnings"] == [
        "drift watch: a check failed (ImportError: pip install 'steproute[drift]'); drift is not being judged"]
