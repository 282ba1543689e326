"""Closing the loop: ``steproute train`` and ``steproute calibrate`` read the decision log itself,
with the live answers' feedback and the shadow results (another tier's answer to the same call,
judged) as outcomes of each call, so log → shadow → train → calibrate runs on the project's own
commands."""

from __future__ import annotations

import json
from pathlib import Path

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.cli import main
from steproute.decision_log import JsonlDecisionLog
from steproute.evaluation import Outcome, from_decision_log
from tests.conftest import THREE_TIERS

FAST, STRONG = THREE_TIERS["fast"], THREE_TIERS["advanced"]
HARD = ("prove", "derive", "integral", "theorem", "optimise")
EASY = ("hello", "thanks", "rename", "greet", "spell")


def tiers() -> dict:
    return {name: {"models": [{"model": THREE_TIERS[name], "mock_response": f"answer from {name}", "api_key": "sk-test"}]}
            for name in ("fast", "advanced")}


def write_log(path: Path, n: int = 60) -> list[str]:
    """``n`` calls of step ``answer`` on the fast tier through a real router, each rated, and a
    shadow result on the strong tier for all but the last three (as a shadow runner writes it)."""
    router = StepRouter(RouterConfig(tiers=tiers(), default="fast"), decision_log=JsonlDecisionLog(path, include_prompts=True))
    ids = []
    for i in range(n):
        hard = i % 2 == 0
        word = (HARD if hard else EASY)[i % 5]
        result = router.complete(StepRequest("answer", [{"role": "user", "content": f"{word} item {i} please"}]))
        router.feedback(result.decision.id, 0.0 if hard else 1.0)
        ids.append(result.decision.id)
    router.decision_log.close()
    with open(path, "a", encoding="utf-8") as fh:
        for i, decision_id in enumerate(ids[:-3]):
            fh.write(json.dumps({"type": "shadow", "id": decision_id, "tier": "advanced", "model": STRONG,
                                 "quality": 1.0, "cost_usd": 0.002, "verdict": "win" if i % 2 == 0 else "tie"}) + "\n")
        fh.write(json.dumps({"type": "shadow", "id": ids[-1], "tier": "advanced", "quality": 1.0}) + "\n")
    return ids


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_shadow_results_become_the_other_tiers_outcomes(tmp_path):
    log = tmp_path / "decisions.jsonl"
    ids = write_log(log, n=10)
    loaded = from_decision_log(log)
    by_id = {r.id: r for r in loaded.rows}
    assert set(by_id) == set(ids)
    first = by_id[ids[0]]
    assert first.outcomes[STRONG] == Outcome(1.0, 0.002)
    assert first.outcomes[FAST].quality == 0.0 and first.messages[-1]["content"] == "prove item 0 please"
    assert set(by_id[ids[-2]].outcomes) == {FAST}  # no shadow result: the live answer only
    # a shadow result that names no model cannot become an outcome: said, with the decision
    assert f"shadow result on decision {ids[-1]!r} names no model (its tier 'advanced' only): not an outcome" \
        in loaded.problems


def test_train_and_calibrate_read_the_decision_log(tmp_path, capsys):
    log = tmp_path / "decisions.jsonl"
    write_log(log)
    art = tmp_path / "a.steproute"
    code, out, err = run(capsys, "train", "--data", str(log), "--out", str(art), "--folds", "0")
    assert code == 0, err
    assert f"classifier over {FAST}, {STRONG} (cheap to strong), 60 rows" in out
    assert f"read 60 rows from the decision log {log} (feedback on 60 decisions, shadow results on 57)" in err
    assert "names no model" in err  # the log's problems are warnings, not lost
    config = tmp_path / "steproute.yaml"
    config.write_text(f"tiers:\n  fast:\n    models: [{{model: {FAST}, mock_response: ok}}]\n"
                      f"  advanced:\n    models: [{{model: {STRONG}, mock_response: ok}}]\n"
                      "default: fast\nsteps:\n  answer:\n    policy: classifier\n    artefact: a.steproute\n")
    code, out, err = run(capsys, "calibrate", "--data", str(log), "--config", str(config), "--step", "answer",
                         "--quality-ratio", "0.95", "--json")
    assert code == 0, err
    assert "calibrating on the 57 rows with every model's outcome; 3 rows hold only some" in err
    result = json.loads(out)
    # half the calls fail on the fast tier and the strong tier answers all: 95% of its quality needs
    # most of the hard half on the strong tier, and the easy half is learnable from the words
    assert 0.4 <= result["strong_share"] <= 0.75 and result["quality"] >= 0.95 * 1.0 - 1e-9
