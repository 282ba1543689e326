"""The ``ensemble`` policy: blend weights chosen by cross-validation, bundled artefacts, config and CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from steproute import StepRouter
from steproute.cli import main
from steproute.evaluation import Outcomes, write_rows
from steproute.evaluation._ensemble_train import bundle, choose_blend, train_ensemble
from steproute.evaluation._knn_train import train_knn
from steproute.evaluation._train import train_classifier
from steproute.policies._artefact import Artefact, ArtefactError, load_artefact, save_artefact
from steproute.policies.classifier import ClassifierPolicy
from steproute.policies.ensemble import EnsemblePolicy
from steproute.policies.knn import KnnPolicy
from tests.unit.test_learned_policies import EASY, MODELS, PROOF, config_with, synthetic_rows


def outcomes_and_signal(n: int = 3000, seed: int = 0) -> tuple[Outcomes, np.ndarray]:
    rng = np.random.default_rng(seed)
    cheap = (rng.random(n) < 0.6).astype(float)
    quality = np.column_stack([cheap, np.ones(n)])
    return Outcomes(("a", "b"), quality, np.column_stack([np.full(n, 0.1), np.ones(n)])), cheap


def test_the_blend_weight_is_chosen_by_cross_validated_apgr():
    outcomes, cheap = outcomes_and_signal()
    rng = np.random.default_rng(1)
    strong = np.full(len(cheap), 0.5)
    # two estimates of the cheap tier's outcome with independent noise: their mean is the better estimate
    first = np.column_stack([cheap + rng.normal(0, 1.0, len(cheap)), strong])
    second = np.column_stack([cheap + rng.normal(0, 1.0, len(cheap)), strong])
    weight, grid = choose_blend(first, second, outcomes)
    assert weight == 0.5, grid
    apgr = {g["weight"]: g["apgr"] for g in grid}
    assert apgr[0.5] > max(apgr[0.0], apgr[1.0])
    # a second estimate that is pure noise: the first alone, and a tie goes to a single member
    noise = np.column_stack([rng.random(len(cheap)), strong])
    assert choose_blend(first, noise, outcomes)[0] == 0.0
    assert choose_blend(first, first, outcomes)[0] == 0.0


@pytest.fixture(scope="module")
def members() -> tuple[Artefact, Artefact]:
    rows = synthetic_rows(200)
    return (train_classifier(rows, MODELS, folds=0, embedding_cache=False),
            train_knn(rows, MODELS, folds=0, embedding_cache=False))


@pytest.fixture(scope="module")
def ensemble_file(tmp_path_factory, members) -> Path:
    path = tmp_path_factory.mktemp("ens") / "answer-ensemble.steproute"
    save_artefact(bundle([(0.25, members[0]), (0.75, members[1])], MODELS, 0.05, {"blend": {"chosen": "ensemble"}}), path)
    return path


def test_the_ensemble_estimate_is_the_weighted_mean_of_its_members(ensemble_file, members):
    policy = EnsemblePolicy.load(ensemble_file, ["fast", "strong"])
    clf, knn = ClassifierPolicy(members[0]), KnnPolicy(members[1])
    for request in (EASY, PROOF):
        np.testing.assert_allclose(policy.scores(request), 0.25 * clf.scores(request) + 0.75 * knn.scores(request),
                                   atol=1e-12)
    assert policy.threshold == 0.05
    assert policy.choose(PROOF).tier == "strong" and policy.choose(EASY).tier == "fast"
    assert policy.choose(PROOF).reason.startswith("ensemble: estimated quality fast=")


@pytest.mark.parametrize(("change", "message"), [
    (lambda m, a: m["members"][0].update(weight=-1), r"meta.json: members\[0\].weight must be a number, 0 or more"),
    (lambda m, a: m["members"][1].update(policy="cascade"), r"meta.json: members\[1\].policy must be one of"),
    (lambda m, a: [x.update(weight=0) for x in m["members"]], "the members' weights must not all be 0"),
    (lambda m, a: m.update(members=[]), "'members' must list one member or more"),
    (lambda m, a: a.pop("m1.step_mean"), r"members\[1\] \(knn\): arrays.npz lacks step_mean"),
    (lambda m, a: m["members"][0]["meta"].pop("embedding_dim"), r"members\[0\] \(classifier\): meta.json: 'embedding_dim'"),
])
def test_a_bad_ensemble_artefact_names_the_member_and_field(tmp_path, ensemble_file, change, message):
    good = load_artefact(ensemble_file, "ensemble")
    meta = json.loads(json.dumps(dict(good.meta)))
    arrays = dict(good.arrays)
    change(meta, arrays)
    path = tmp_path / "bad.steproute"
    save_artefact(Artefact("ensemble", meta, arrays), path)
    with pytest.raises(ArtefactError, match=message):
        EnsemblePolicy.load(path)


def test_a_router_runs_policy_ensemble_from_a_config_file(tmp_path, ensemble_file):
    shutil.copy(ensemble_file, tmp_path / "e.steproute")
    config = tmp_path / "steproute.yaml"
    config.write_text(yaml.safe_dump(config_with({"policy": "ensemble", "artefact": "e.steproute"}), sort_keys=False))
    router = StepRouter.from_file(config)
    assert router.decide(EASY).tier == "fast"
    decision = router.decide(PROOF)
    assert (decision.tier, decision.policy) == ("advanced", "ensemble")
    assert router.complete(PROOF).completion.content == "answer from advanced"


def test_train_ensemble_reports_each_member_and_writes_what_it_chose():
    artefact = train_ensemble(synthetic_rows(240), MODELS, folds=3, embedding_cache=False)
    blend = artefact.meta["blend"]
    grid = {g["weight"]: g["apgr"] for g in blend["grid"]}
    assert set(grid) == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert blend["cv_apgr"]["classifier"] == grid[0.0] and blend["cv_apgr"]["knn"] == grid[1.0]
    assert grid[blend["knn_weight"]] == max(grid.values())
    assert artefact.policy == blend["chosen"] == {0.0: "classifier", 1.0: "knn"}.get(blend["knn_weight"], "ensemble")
    assert artefact.meta["cross_validation"]["apgr"] == pytest.approx(grid[blend["knn_weight"]])
    with pytest.raises(ValueError, match="--folds 2 or more"):
        train_ensemble(synthetic_rows(40), MODELS, folds=0)


def test_steproute_train_policy_ensemble_says_what_cross_validation_chose(tmp_path, capsys):
    write_rows(synthetic_rows(200, seed=1), tmp_path / "train.jsonl")
    write_rows(synthetic_rows(80, seed=2), tmp_path / "test.jsonl")
    art = tmp_path / "e.steproute"
    code = main(["train", "--data", str(tmp_path / "train.jsonl"), "--out", str(art), "--policy", "ensemble", "--folds", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "cross-validated APGR: classifier 0." in out and ", knn 0." in out and "best blend 0." in out
    chosen = load_artefact(art).meta["blend"]["chosen"]
    assert f"chosen: {'the blend' if chosen == 'ensemble' else chosen}" in out
    assert chosen == "ensemble" or f"a config reads it with policy: {chosen})" in out
    assert f"wrote {art}: {load_artefact(art).policy} over" in out
    code = main(["eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(art), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["apgr"] > 0.6
