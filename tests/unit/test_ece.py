"""Calibration error (ECE) of the learned policies' quality estimates, and where it is reported."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from steproute.cli import main
from steproute.evaluation import EvalRow, Outcome, Outcomes, ece, reliability, summarise, write_rows
from tests.unit.test_learned_policies import synthetic_rows


def test_perfectly_calibrated_estimates_have_no_error():
    # in every bin the share of right answers equals the estimate: 5 right of 100 at 0.05, ...
    estimates, outcomes = [], []
    for p in np.arange(0.05, 1.0, 0.1):
        right = round(p * 100)
        estimates += [p] * 100
        outcomes += [1.0] * right + [0.0] * (100 - right)
    assert ece(np.array(estimates), np.array(outcomes)) == pytest.approx(0.0, abs=1e-12)


def test_constant_wrong_estimates_give_the_gap():
    # two tiers, every estimate 0.8; the cheap tier is right 30% of the time, the strong one 70%:
    # one bin, mean estimate 0.8, mean outcome 0.5 -> 0.3
    quality = np.column_stack([np.r_[np.ones(3), np.zeros(7)], np.r_[np.ones(7), np.zeros(3)]])
    assert ece(np.full((10, 2), 0.8), quality) == pytest.approx(0.3)
    # by hand over 10 bins: |0.1-0| + |0.2-1| + |0.8-1| + |0.9-1| over 4 pairs
    assert ece(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 1.0, 1.0, 1.0])) == pytest.approx(1.2 / 4)
    # the bin count matters: 2 bins -> (2 * 0.35 + 2 * 0.15) / 4
    assert ece(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 1.0, 1.0, 1.0]), bins=2) == pytest.approx(0.25)


def test_edges_and_bad_input():
    assert ece(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0  # 1.0 is in the last bin, not an eleventh
    assert ece(np.array([1.2, -0.1]), np.array([1.0, 0.0])) == pytest.approx(0.15)  # outside [0, 1]: edge bins
    table = reliability(np.array([0.05, 0.07, 0.95]), np.array([0.0, 1.0, 1.0]))
    assert [(b.low, b.high, b.count) for b in table] == [(0.0, 0.1, 2), (0.9, 1.0, 1)]
    assert table[0].mean_estimate == pytest.approx(0.06) and table[0].mean_outcome == 0.5
    with pytest.raises(ValueError, match="differ in size: 2 against 3"):
        ece(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="bins must be at least 1"):
        ece(np.zeros(2), np.zeros(2), bins=0)


def test_summary_carries_the_ece_of_the_estimates():
    rows = [EvalRow(str(i), ({"role": "user", "content": "q"},),
                    {"cheap": Outcome(float(i % 2), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(10)]
    outcomes = Outcomes.of(rows, ["cheap", "strong"])
    # cheap right 50%, strong 100%: the tiers' pairs are pooled, one bin at 0.8 against 0.75
    summary, _ = summarise(np.tile([0.8, 0.8], (10, 1)), outcomes, 0.0)
    assert summary.ece == pytest.approx(0.05)
    assert summary.to_json()["ece"] == pytest.approx(0.05)
    summary, _ = summarise(np.tile([0.5, 1.0], (10, 1)), outcomes, 0.0)  # both tiers exact
    assert summary.ece == pytest.approx(0.0)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_prints_the_ece_and_its_json_carries_it_with_the_reliability_table(tmp_path, capsys):
    write_rows(synthetic_rows(200, seed=1), tmp_path / "train.jsonl")
    write_rows(synthetic_rows(100, seed=2), tmp_path / "test.jsonl")
    art = tmp_path / "a.steproute"
    assert run(capsys, "train", "--data", str(tmp_path / "train.jsonl"), "--out", str(art), "--folds", "0")[0] == 0
    code, out, err = run(capsys, "eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(art), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert 0.0 <= result["ece"] < 0.2  # a logistic regression on easy rows is roughly calibrated
    table = result["reliability"]
    assert sum(b["count"] for b in table) == 2 * 100  # every (query, tier) pair, both tiers pooled
    gaps = sum(b["count"] * abs(b["mean_estimate"] - b["mean_outcome"]) for b in table) / 200
    assert gaps == pytest.approx(result["ece"])
    code, out, err = run(capsys, "eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(art))
    assert code == 0, err
    assert re.search(rf"^ECE \(10 bins\) +{result['ece']:.4f}$", out, re.M)
