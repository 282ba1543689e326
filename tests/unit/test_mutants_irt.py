"""Tests that kill mutmut mutants of steproute/policies/irt.py (see docs/architecture.md, "Mutation testing").

A trained artefact's feature rows are zeroed, so each tier's logit is its intercept and the
difficulty is ``difficulty_intercept`` for every request: each estimate is worked out by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from steproute.evaluation import EvalRow, Outcome
from steproute.evaluation._irt_train import train_irt
from steproute.policies._artefact import Artefact, ArtefactError, save_artefact
from steproute.policies.base import Choice
from steproute.policies.irt import IrtPolicy
from steproute.types import StepRequest

HARD = StepRequest("x", [{"role": "user", "content": "prove the theorem"}])
EASY = StepRequest("x", [{"role": "user", "content": "say hi"}])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def trained() -> Artefact:
    rows = [EvalRow(f"q{i}", ({"role": "user", "content": "prove the theorem" if i % 2 else "say hi"},),
                    {"cheap": Outcome(float(i % 2 == 0), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(40)]
    return train_irt(rows, ("cheap", "strong"), folds=0, cache=False)


def flat(trained: Artefact, intercepts=(0.0, 1.0), difficulty: float = 1.5, threshold: float = 0.05) -> Artefact:
    """``trained`` with its feature rows zeroed: logits ``intercepts``, difficulty ``difficulty`` for any request."""
    a = dict(trained.arrays)
    a["coef"] = np.zeros_like(a["coef"])
    a["difficulty"] = np.zeros_like(a["difficulty"])
    a["intercept"] = np.array(intercepts, dtype=np.float64)
    a["difficulty_intercept"] = np.array([difficulty])
    return Artefact("irt", {**trained.meta, "threshold": threshold}, a)


def test_a_trained_policy_finds_the_proof_harder(trained):
    policy = IrtPolicy(trained, threshold=0.05)
    assert policy.difficulty(HARD) > policy.difficulty(EASY)
    assert (policy.choose(HARD).tier, policy.choose(EASY).tier) == ("strong", "cheap")
    np.testing.assert_array_equal(policy.ability, trained.arrays["ability"])
    np.testing.assert_array_equal(policy.discrimination, trained.arrays["discrimination"])
    assert policy.ability.dtype == policy.discrimination.dtype == np.float64


def test_each_tiers_estimate_is_the_logistic_of_its_logit_and_the_difficulty_is_read_back(trained):
    policy = IrtPolicy(flat(trained, (0.0, 1.0), 1.5))
    np.testing.assert_allclose(policy.scores(HARD), [0.5, sigmoid(1.0)], rtol=1e-12)
    assert policy.difficulty(HARD) == pytest.approx(1.5, abs=1e-9)
    assert policy.difficulty(EASY) == pytest.approx(1.5, abs=1e-9)
    assert IrtPolicy(flat(trained, (0.0, 1.0), -0.75)).difficulty(HARD) == pytest.approx(-0.75, abs=1e-9)


@pytest.mark.parametrize(("difficulty", "read"), [(40.0, math.log((1 - 1e-13) / 1e-13)),
                                                  (-40.0, -math.log((1 - 1e-13) / 1e-13)),
                                                  (25.0, 25.0), (-25.0, -25.0)])
def test_a_difficulty_past_the_logistics_range_is_read_at_its_bound(trained, difficulty, read):
    assert IrtPolicy(flat(trained, (0.0, 1.0), difficulty)).difficulty(HARD) == pytest.approx(read, abs=1e-3)


def test_the_choice_names_the_difficulty_each_estimate_and_the_threshold(trained):
    policy = IrtPolicy(flat(trained, (0.0, 1.0), 1.5), ["fast", "strong"], threshold=0.125)
    assert policy.choose(HARD) == Choice("strong", "irt: difficulty +1.50; estimated quality fast=0.50, strong=0.73; "
                                                   "threshold 0.125", 0.0)
    cheap = IrtPolicy(flat(trained, (0.0, 1.0), -1.5), threshold=0.5).choose(HARD)
    assert cheap == Choice("cheap", "irt: difficulty -1.50; estimated quality cheap=0.50, strong=0.73; threshold 0.5",
                           round(sigmoid(1.0) - 0.5, 4))
    assert IrtPolicy(flat(trained, (0.0, 1.0), 0.0, threshold=0.125)).threshold == 0.125


def test_loading_takes_tiers_and_threshold_and_names_the_file(trained, tmp_path: Path):
    path = tmp_path / "irt.steproute"
    save_artefact(flat(trained, (0.0, 1.0), 1.5), path)
    loaded = IrtPolicy.load(path, ["fast", "strong"], 0.5)
    assert (loaded.tiers, loaded.threshold, loaded.choose(HARD).tier) == (("fast", "strong"), 0.5, "fast")
    assert IrtPolicy.load(path).tiers == ("cheap", "strong")
    with pytest.raises(ArtefactError) as excinfo:
        IrtPolicy.load(path, ["a", "b", "c"])
    assert str(excinfo.value) == (f"{path}: the artefact does not fit its policy (ValueError: the artefact estimates "
                                  "2 tiers (cheap, strong); 3 given (a, b, c))")
    other = tmp_path / "c.steproute"
    save_artefact(Artefact("semantic", dict(trained.meta), {}), other)
    with pytest.raises(ArtefactError) as excinfo:
        IrtPolicy.load(other)
    assert str(excinfo.value).startswith(f"{other}: ")


def test_the_margin_is_to_the_best_stronger_tier_not_the_strongest():
    rows = [EvalRow(f"q{i}", ({"role": "user", "content": "prove the theorem" if i % 2 else "say hi"},),
                    {"cheap": Outcome(float(i % 2 == 0), 0.1), "mid": Outcome(1.0, 0.5), "strong": Outcome(1.0, 1.0)})
            for i in range(40)]
    three = train_irt(rows, ("cheap", "mid", "strong"), folds=0, cache=False)
    choice = IrtPolicy(flat(three, (0.0, 2.0, 1.0), 0.0), threshold=0.5).choose(HARD)
    assert (choice.tier, choice.score) == ("cheap", round(sigmoid(2.0) - 0.5, 4))


def test_loading_a_classifier_artefact_as_irt_is_refused_by_name(trained, tmp_path: Path):
    path = tmp_path / "c.steproute"
    save_artefact(Artefact("classifier", dict(trained.meta), dict(trained.arrays)), path)
    with pytest.raises(ArtefactError) as excinfo:
        IrtPolicy.load(path)
    assert str(excinfo.value) == f"{path}: a 'classifier' artefact, not a 'irt' one"
