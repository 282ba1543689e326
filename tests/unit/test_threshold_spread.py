"""Thresholds chosen by cross-validation, with their spread, in ``steproute train`` and ``calibrate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from steproute.evaluation import EvalRow, Outcome, Outcomes, Target, write_rows
from steproute.evaluation._threshold_cv import fold_ids, fold_thresholds
from tests.unit.test_evaluation_cli import CONFIG, run
from tests.unit.test_learned_policies import MODELS, synthetic_rows


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("spread")
    write_rows(synthetic_rows(240, seed=1), d / "train.jsonl")
    write_rows(synthetic_rows(120, seed=2), d / "test.jsonl")
    return d


def test_fold_ids_deal_each_step_round_the_folds():
    steps = ["a"] * 10 + ["b"] * 7 + ["c"] * 3
    ids = fold_ids(steps, 3, seed=4)
    for step in "abc":
        counts = np.bincount(ids[[s == step for s in steps]], minlength=3)
        assert counts.max() - counts.min() <= 1, step
    assert fold_ids(steps, 3, seed=4).tolist() == ids.tolist()  # seeded
    with pytest.raises(ValueError, match="folds must be at least 2"):
        fold_ids(steps, 1)


def test_each_fold_threshold_is_chosen_on_the_other_folds_and_replayed_on_its_own():
    # the cheap tier is right on even rows; scores put the even rows' cheap estimate at 0.9, odd at 0.1,
    # except one odd row of fold 0, scored as if easy: on fold 0 the chosen threshold misleads
    rows = [EvalRow(str(i), ({"role": "user", "content": "q"},),
                    {"cheap": Outcome(float(i % 2 == 0), 1.0), "strong": Outcome(1.0, 10.0)}) for i in range(40)]
    outcomes = Outcomes.of(rows, ["cheap", "strong"])
    ids = fold_ids([""] * 40, 4)
    cheap = np.where(np.arange(40) % 2 == 0, 0.9, 0.1)
    cheap[np.flatnonzero((ids == 0) & (np.arange(40) % 2 == 1))[0]] = 0.9
    scores = np.column_stack([cheap, np.full(40, 0.95)])
    spread = fold_thresholds(scores, outcomes, Target(quality_ratio=0.95), folds=4)
    assert [f.fold for f in spread.folds] == [0, 1, 2, 3] and sum(f.rows for f in spread.folds) == 40
    by_fold = {f.fold: f for f in spread.folds}
    for k in (0, 1, 2, 3):  # the threshold keeps the rows that look easy on the cheap tier
        odd = np.arange(40)[ids == k] % 2 == 1
        misled = int(k == 0)  # fold 0's misleading row goes to the cheap tier, and is wrong
        assert by_fold[k].quality_ratio == pytest.approx(1 - misled / 10)
        assert by_fold[k].strong_share == pytest.approx((odd.sum() - misled) / 10)
        assert by_fold[k].cost_ratio == pytest.approx(((10 - odd.sum() + misled) * 1 + (odd.sum() - misled) * 10) / 100)
    assert [f.threshold for f in spread.folds] == [pytest.approx(0.05)] * 4  # 29 of 30 right is still >= 95%
    s = spread.spread()
    assert s["quality_ratio"]["min"] == pytest.approx(0.9) and s["quality_ratio"]["max"] == pytest.approx(1.0)
    assert s["quality_ratio"]["mean"] == pytest.approx(0.975)
    assert s["quality_ratio"]["sd"] == pytest.approx(np.std([0.9, 1, 1, 1], ddof=1))
    assert spread.to_json()["unreached"] == 0 and len(spread.to_json()["per_fold"]) == 4


def test_train_reports_the_fold_thresholds_and_their_spread(data, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--data", str(data / "train.jsonl"), "--out", str(tmp_path / "a.steproute"),
                         "--folds", "4", "--json")
    assert code == 0, err
    cv = json.loads(out)["cross_validation"]
    folds = cv["thresholds"]["per_fold"]
    assert len(folds) == 4 and sum(f["rows"] for f in folds) == 240
    assert all(isinstance(f["threshold"], float) for f in folds)
    spread = cv["thresholds"]["spread"]
    assert set(spread) == {"threshold", "quality_ratio", "cost_ratio", "strong_share"}
    assert spread["threshold"]["min"] <= spread["threshold"]["mean"] <= spread["threshold"]["max"]
    assert spread["quality_ratio"]["mean"] > 0.85 and 0.0 < spread["cost_ratio"]["mean"] < 1.0
    assert cv["ece"] is not None and 0.0 <= cv["ece"] < 0.2
    code, out, err = run(capsys, "train", "--data", str(data / "train.jsonl"), "--out", str(tmp_path / "b.steproute"),
                         "--folds", "4")
    assert code == 0, err
    assert "threshold chosen on 3 folds, replayed on the 4th" in out
    t = spread["threshold"]
    assert f"threshold      {t['mean']:.4g} ± {t['sd']:.4g}  ({t['min']:.4g}–{t['max']:.4g})" in out
    assert "quality " in out and "cost " in out


def test_semantic_train_reports_the_spread_too(data, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--data", str(data / "train.jsonl"), "--out", str(tmp_path / "s.steproute"),
                         "--policy", "semantic", "--folds", "3", "--json")
    assert code == 0, err
    assert len(json.loads(out)["cross_validation"]["thresholds"]["per_fold"]) == 3


def test_calibrate_reports_the_fold_thresholds_and_their_spread(data, tmp_path, capsys):
    assert run(capsys, "train", "--data", str(data / "train.jsonl"), "--out", str(tmp_path / "a.steproute"),
               "--folds", "0")[0] == 0
    config = tmp_path / "steproute.yaml"
    config.write_text(CONFIG)
    models = ["--model", f"fast={MODELS[0]}", "--model", f"strong={MODELS[1]}"]
    code, out, err = run(capsys, "calibrate", "--data", str(data / "test.jsonl"), "--config", str(config),
                         "--step", "answer", "--folds", "3", "--json", *models)
    assert code == 0, err
    result = json.loads(out)
    cv = result["cross_validation"]
    assert len(cv["per_fold"]) == 3 and sum(f["rows"] for f in cv["per_fold"]) == 120
    assert set(cv["spread"]) == {"threshold", "quality_ratio", "cost_ratio", "strong_share"}
    code, out, err = run(capsys, "calibrate", "--data", str(data / "test.jsonl"), "--config", str(config),
                         "--step", "answer", *models)
    assert code == 0, err
    assert "5-fold check: threshold chosen on 4 folds, replayed on the 5th" in out and "±" in out
