"""The cascade offline: the answer scorer trained on recorded answers, replayed without models,
and the ``steproute train --policy cascade`` / ``steproute eval`` commands on real GSM8K rows."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from steproute import RouterConfig, StepRouter
from steproute.cli import main
from steproute.evaluation import EvalRow, Outcome, evaluate_cascade, replay_cascade, train_cascade
from steproute.evaluation._calibrate import Target
from steproute.evaluation._cascade import CascadeTable, calibrate_cascade, verifier_scores
from steproute.policies._artefact import Artefact, ArtefactError, load_artefact, save_artefact
from steproute.policies.answer_scorer import AnswerScorer, acceptance
from tests.unit.test_evaluation import DATA

CHEAP, STRONG = "cheap/model", "strong/model"


def sums(n: int, seed: int = 0, wrong_share: float = 0.3) -> list[EvalRow]:
    """Rows whose cheap answer states a sum, wrong in ``wrong_share`` of them (then quality 0)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        wrong = rng.random() < wrong_share
        c = a + b + (rng.randint(1, 9) if wrong else 0)
        question = f"Tom has {a} apples and buys {b} more. How many apples does he have?"
        cheap = f"Tom has {a} + {b} = {c} apples.\n#### {c}"
        rows.append(EvalRow(f"r{i}", ({"role": "user", "content": question},), {
            CHEAP: Outcome(0.0 if wrong else 1.0, 0.001, cheap),
            STRONG: Outcome(1.0, 0.02, f"{a} + {b} = {a + b}\n#### {a + b}")}))
    return rows


def test_the_simulator_pays_for_the_cheap_attempt_and_keeps_the_answer_it_accepts():
    rows = sums(10)
    table = CascadeTable.of(rows, (CHEAP, STRONG))
    keep_all = table.at(np.ones((10, 1)), 0.5)
    escalate_all = table.at(np.zeros((10, 1)), 0.5)
    assert keep_all.cost_usd == pytest.approx(0.01) and keep_all.escalation_rate == 0.0
    assert escalate_all.cost_usd == pytest.approx(0.01 + 0.2) and escalate_all.quality == 1.0
    assert keep_all.quality == table.quality[:, 0].mean()


def test_rows_without_a_recorded_answer_are_named():
    rows = sums(3)
    rows[1] = EvalRow("r1", rows[1].messages, {CHEAP: Outcome(1.0, 0.001), STRONG: Outcome(1.0, 0.02)})
    with pytest.raises(ValueError, match="row 'r1': model 'cheap/model' has no recorded 'response' to judge"):
        CascadeTable.of(rows, (CHEAP, STRONG))
    with pytest.raises(ValueError, match="no outcome for model 'other'"):
        CascadeTable.of(rows, (CHEAP, "other"))


def test_a_trained_scorer_escalates_the_wrong_sums_and_generalises(tmp_path):
    artefact = train_cascade(sums(400, seed=1), (CHEAP, STRONG), folds=4)
    assert artefact.policy == "cascade" and 0 <= artefact.threshold <= 1
    cv = artefact.meta["cross_validation"]
    assert cv["quality"] >= 0.95 * cv["strong_quality"]
    save_artefact(artefact, tmp_path / "c.steproute")
    result = evaluate_cascade(sums(300, seed=2), load_artefact(tmp_path / "c.steproute"))
    # the arithmetic check finds every wrong sum: about 30% escalate, and quality is the strong model's
    assert result.point.quality >= 0.97
    assert 0.2 < result.point.escalation_rate < 0.45
    assert result.cost_ratio < 0.55
    assert result.to_json()["cost_usd"] == pytest.approx(result.point.cost_usd)
    scorer = AnswerScorer.load(tmp_path / "c.steproute")
    question = "Tom has 20 apples and buys 31 more. How many apples does he have?"
    right = scorer.score(question, "Tom has 20 + 31 = 51 apples.\n#### 51")
    wrong = scorer.score(question, "Tom has 20 + 31 = 56 apples.\n#### 56")
    assert right >= scorer.threshold > wrong


def test_the_simple_verifier_baseline_and_the_cost_weighting():
    table = CascadeTable.of(sums(50), (CHEAP, STRONG))
    scores = verifier_scores(table)
    assert ((scores[:, 0] == 1) == (table.quality[:, 0] == 1)).all()
    assert acceptance(0.6, 200, 100, 0.0) == 0.6
    assert acceptance(0.6, 200, 100, 1.0) == pytest.approx(0.8)  # dear to redo: the same risk counts half


def test_calibration_picks_the_cheapest_point_meeting_the_target():
    table = CascadeTable.of(sums(40), (CHEAP, STRONG))
    curve = table.curve(table.quality[:, :1].copy())
    point = calibrate_cascade(curve, Target(quality_ratio=0.95), 1.0)
    assert point.quality >= 0.95 and point.cost_usd == min(p.cost_usd for p in curve if p.quality >= 0.95)
    with pytest.raises(ValueError, match="no threshold meets"):
        calibrate_cascade([p for p in curve if p.quality < 0.9], Target(quality_ratio=0.95), 1.0)


def test_a_configured_cascade_is_replayed_over_recorded_answers():
    router = StepRouter(RouterConfig(
        tiers={"fast": {"models": ["openai/a"]}, "strong": {"models": ["openai/b"]}}, default="fast",
        steps={"default": {"policy": "cascade", "signals": [{"signal": "arithmetic"}, {"signal": "hedging"}]}}))
    rows = sums(60)
    result = replay_cascade(rows, router.policy_of("default"), (CHEAP, STRONG))
    wrong = float((np.array([r.outcomes[CHEAP].quality for r in rows]) == 0).mean())
    assert result.point.quality == 1.0 and result.point.escalation_rate == pytest.approx(wrong)
    judged = StepRouter(RouterConfig(
        tiers={"fast": {"models": ["openai/a"]}, "strong": {"models": ["openai/b"]}}, default="fast",
        steps={"default": {"policy": "cascade", "signals": [{"signal": "judge"}]}}))
    with pytest.raises(ValueError, match="'judge' signal calls models: it cannot be replayed"):
        replay_cascade(rows, judged.policy_of("default"), (CHEAP, STRONG))


def test_a_scorer_trained_on_other_features_is_refused(tmp_path):
    artefact = train_cascade(sums(80), (CHEAP, STRONG), folds=2)
    stale = Artefact("cascade", {**artefact.meta, "features": ["old"]}, artefact.arrays)
    save_artefact(stale, tmp_path / "stale.steproute")
    with pytest.raises(ArtefactError, match="trained on other features"):
        AnswerScorer.load(tmp_path / "stale.steproute")
    config = RouterConfig(tiers={"fast": {"models": ["openai/a"]}, "strong": {"models": ["openai/b"]}}, default="fast",
                          steps={"s": {"policy": "cascade", "artefact": str(tmp_path / "stale.steproute")}})
    with pytest.raises(Exception, match=r"steps\.s\.artefact"):
        StepRouter(config)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_and_eval_a_cascade_on_real_gsm8k_answers(tmp_path, capsys):
    code, _, err = run(capsys, "convert", str(DATA / "gsm8k"), "--out", str(tmp_path / "train.jsonl"),
                       "--holdout", "0.3", "--holdout-out", str(tmp_path / "test.jsonl"))
    assert code == 0, err
    code, out, err = run(capsys, "train", "--policy", "cascade", "--data", str(tmp_path / "train.jsonl"),
                         "--out", str(tmp_path / "c.steproute"), "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["policy"] == "cascade" and trained["cost_exponent"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    code, out, err = run(capsys, "eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(tmp_path / "c.steproute"),
                         "--json", "--plot", str(tmp_path / "c.png"))
    assert code == 0, err
    result = json.loads(out)
    # 95% of GPT-4's accuracy is the calibration target; on 392 held-out rows it lands within noise of it,
    # at about half the cost of always calling GPT-4 (the cheap attempts included)
    assert result["quality_ratio"] > 0.93 and result["cost_ratio"] < 0.6
    assert result["weak_quality"] < result["quality"] < result["strong_quality"] + 1e-9
    assert result["cost_usd"] > result["weak_cost_usd"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(capsys, "eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(tmp_path / "c.steproute"))
    assert code == 0 and "escalation rate" in out and "cheap attempts included" in out
    code, _, err = run(capsys, "train", "--policy", "cascade", "--data", str(tmp_path / "test.jsonl"),
                       "--out", str(tmp_path / "x.steproute"), "--models", "mistralai/Mixtral-8x7B-Instruct-v0.1,nope")
    assert code == 2 and "no outcome for model 'nope'" in err
