"""The ``knn`` policy: hand-computed estimates, k chosen by cross-validation, artefacts, config and CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from steproute import StepRequest, StepRouter
from steproute.cli import main
from steproute.evaluation import EvalRow, Outcome, write_rows
from steproute.evaluation._knn_train import KnnParts, knn_artefact, knn_cross_validation, step_folds, train_knn
from steproute.policies._artefact import Artefact, ArtefactError, load_artefact, pack_strings, save_artefact
from steproute.policies.knn import KnnPolicy, neighbour_estimates
from steproute.policies.semantic import SemanticPolicy
from tests.unit.test_learned_policies import EASY, MODELS, PROOF, config_with, synthetic_rows

BASE_META = {"labels": ["fast", "strong"], "encoder": "wordllama-l2-256", "threshold": 0.0, "embedding_dim": 2,
             "k": 2, "weighting": "uniform", "prior_strength": 0.0, "context_weight": 0.5, "hand_weight": 0.0,
             "step_penalty": 0.0, "distance_floor": 0.5}


def tiny(**meta) -> KnnPolicy:
    """Four references on a 2-d 'embedding' (no hand measures), two steps."""
    arrays = {
        # [query (2) | context × 0.5 (2) | hand (0)]
        "references": np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 1, 0, 0], [-1, 0, 0, 0]], dtype=np.float16),
        "quality": np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),
        "step_ids": np.array([0, 0, 1, 1], dtype=np.int32), "steps": pack_strings(["a", "b"]),
        "step_mean": np.array([[0.5, 0.5], [0.25, 0.75]]), "global_mean": np.array([0.5, 0.5]),
        "hand_mean": np.zeros(0), "hand_scale": np.ones(0)}
    return KnnPolicy(Artefact("knn", {**BASE_META, **meta}, arrays))


QUERY = np.array([1.0, 0.0])


def test_estimates_are_the_neighbours_mean_shrunk_to_the_steps_mean():
    # distances from (1, 0): ref0 0, ref1 sqrt(0.16 + 0.64) = 0.894, ref2 1.414, ref3 2
    assert tiny().estimate(QUERY, None, [], "a").tolist() == [1.0, 0.5]  # mean of ref0, ref1
    # two pseudo-references of step a's mean (0.5, 0.5): (2 * [1, .5] + 2 * [.5, .5]) / 4
    np.testing.assert_allclose(tiny(prior_strength=2.0).estimate(QUERY, None, [], "a"), [0.75, 0.5])
    # step b's mean, and an unknown step's (the overall mean)
    np.testing.assert_allclose(tiny(prior_strength=2.0).estimate(QUERY, None, [], "b"), [0.625, 0.625])
    np.testing.assert_allclose(tiny(prior_strength=2.0).estimate(QUERY, None, [], "zzz"), [0.75, 0.5])
    # inverse-distance weights 1/(0 + .5) = 2 and 1/(.894 + .5) = .717, scaled to sum to k = 2
    w0, w1 = 2.0, 1.0 / (np.sqrt(0.8) + 0.5)
    expected = np.array([w0 * 1 + w1 * 1, w0 * 1 + w1 * 0]) / (w0 + w1)
    np.testing.assert_allclose(tiny(weighting="distance").estimate(QUERY, None, [], "a"), expected, atol=1e-3)
    # a step penalty pushes step b's references away: from (0, 1) in step a, ref1 (step a) beats ref2 (step b)
    assert tiny(k=1).estimate(np.array([0.0, 1.0]), None, [], "a").tolist() == [0.0, 1.0]
    assert tiny(k=1, step_penalty=1.0).estimate(np.array([0.0, 1.0]), None, [], "a").tolist() == [1.0, 0.0]


def test_the_context_counts_at_runtime_and_in_training():
    """A request with earlier turns is a different point: its context block is compared too."""
    arrays = {"references": np.array([[1, 0, 0.5, 0], [1, 0, 0, 0.5]], dtype=np.float16),
              "quality": np.array([[1.0, 1.0], [0.0, 1.0]]), "step_ids": np.zeros(2, dtype=np.int32),
              "steps": pack_strings(["a"]), "step_mean": np.array([[0.5, 1.0]]), "global_mean": np.array([0.5, 1.0]),
              "hand_mean": np.zeros(0), "hand_scale": np.ones(0)}
    policy = KnnPolicy(Artefact("knn", {**BASE_META, "k": 1}, arrays))
    assert policy.estimate(QUERY, np.array([1.0, 0.0]), [], "a").tolist() == [1.0, 1.0]
    assert policy.estimate(QUERY, np.array([0.0, 1.0]), [], "a").tolist() == [0.0, 1.0]


def test_neighbour_estimates_reject_an_unknown_weighting():
    with pytest.raises(ValueError, match="weighting must be 'uniform' or 'distance'"):
        neighbour_estimates(np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros((1, 1)), 1, "cosine", 0.0, 1.0)


def clustered(n: int, noisy: bool, seed: int = 0) -> list[EvalRow]:
    """Questions in tight families; the cheap model's outcome is the family's (or a coin flip around it)."""
    rng = np.random.default_rng(seed)
    topics = ["capital of France", "integral of x squared", "boiling point of water", "prime factors of 91",
              "author of Hamlet", "derivative of sin x"]
    rows = []
    for i in range(n):
        t = i % len(topics)
        p = 0.9 if t % 2 == 0 else 0.1
        cheap = float(rng.random() < p) if noisy else float(t % 2 == 0)
        rows.append(EvalRow(f"q{i}", ({"role": "user", "content": f"What is the {topics[t]}? (variant {i})"},),
                            {MODELS[0]: Outcome(cheap, 0.0001), MODELS[1]: Outcome(1.0, 0.002)}, step="answer"))
    return rows


def test_k_is_chosen_by_cross_validation():
    grid = {"k": (1, 40), "weighting": ("uniform",), "prior_strength": (0.0,), "hand_weight": (0.0,), "step_penalty": (0.0,)}
    # noisy outcomes around each family's rate: one neighbour copies a coin flip, forty average it
    noisy = KnnParts.of(clustered(240, noisy=True), MODELS, cache=False)
    params, _, results = knn_cross_validation(noisy, MODELS, 4, grid=grid)
    assert params["k"] == 40, results
    # a family spread thin (six families, 8 rows each): forty neighbours reach into other families
    exact = KnnParts.of(clustered(48, noisy=False), MODELS, cache=False)
    params, _, results = knn_cross_validation(exact, MODELS, 4, grid=grid)
    assert params["k"] == 1, results
    assert {r["k"] for r in results} == {1, 40}


def test_the_runtime_estimate_is_the_cross_validation_estimate():
    """What cross-validation scored is what the stored policy computes, fold by fold."""
    rows = synthetic_rows(120, seed=3)
    parts = KnnParts.of(rows, MODELS, cache=False)
    grid = {"k": (7,), "weighting": ("distance",), "prior_strength": (3.0,), "hand_weight": (0.2,), "step_penalty": (0.0,)}
    params, oof, _ = knn_cross_validation(parts, MODELS, 3, grid=grid)
    train, test = step_folds(parts.steps, 3)[0]
    fold = KnnParts(parts.query[train], parts.context[train], parts.hand[train], tuple(parts.steps[i] for i in train),
                    parts.quality[train])
    policy = KnnPolicy(knn_artefact(fold, MODELS, "wordllama-l2-256", params, 0.0))
    from steproute.evaluation._train import request_of

    got = np.array([policy.scores(request_of(rows[i])) for i in test])
    np.testing.assert_allclose(got, oof[test], atol=2e-3)


def test_train_knn_stores_its_choice_and_routes(tmp_path):
    artefact = train_knn(synthetic_rows(200), MODELS, folds=3, embedding_cache=False)
    meta = artefact.meta
    assert meta["cross_validation"]["folds"] == 3 and meta["cross_validation"]["apgr"] > 0.7
    assert meta["grid"][0]["apgr"] >= meta["grid"][-1]["apgr"]
    assert meta["k"] == meta["grid"][0]["k"] and meta["weighting"] == meta["grid"][0]["weighting"]
    assert artefact.arrays["references"].dtype == np.float16
    path = tmp_path / "knn.steproute"
    save_artefact(artefact, path)
    loaded = KnnPolicy.load(path, ["fast", "strong"])
    np.testing.assert_array_equal(loaded.scores(PROOF), KnnPolicy(artefact, ["fast", "strong"]).scores(PROOF))
    assert loaded.choose(EASY).tier == "fast" and loaded.choose(PROOF).tier == "strong"
    assert loaded.choose(PROOF).reason.startswith("knn: estimated quality fast=")
    with pytest.raises(ArtefactError, match="a 'knn' artefact, not a 'semantic' one"):
        SemanticPolicy.load(path)


@pytest.fixture(scope="module")
def knn_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("knn") / "answer-knn.steproute"
    save_artefact(train_knn(synthetic_rows(200), MODELS, folds=0, embedding_cache=False), path)
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda m, a: m.update(k=0), "meta.json: 'k' must be 1 or more"),
    (lambda m, a: m.update(k="many"), "meta.json: 'k' is missing or of the wrong type"),
    (lambda m, a: m.update(weighting="cosine"), "meta.json: 'weighting' must be 'uniform' or 'distance'"),
    (lambda m, a: m.pop("step_penalty"), "meta.json: 'step_penalty' is missing"),
    (lambda m, a: a.pop("step_mean"), "arrays.npz lacks step_mean"),
    (lambda m, a: a.update(quality=a["quality"][:, :1]), "quality must be references × 2 tiers"),
    (lambda m, a: a.update(hand_mean=a["hand_mean"][:3]), "hand_mean, hand_scale"),
    (lambda m, a: a.update(step_ids=a["step_ids"] + 5), "step_ids must index steps"),
])
def test_a_bad_artefact_is_an_error_naming_the_field(tmp_path, knn_file, change, message):
    good = load_artefact(knn_file, "knn")
    meta, arrays = dict(good.meta), dict(good.arrays)
    change(meta, arrays)
    path = tmp_path / "bad.steproute"
    save_artefact(Artefact("knn", meta, arrays), path)
    with pytest.raises(ArtefactError, match=message) as excinfo:
        KnnPolicy.load(path)
    assert str(excinfo.value).startswith(f"{path}: ")


def test_a_router_runs_policy_knn_from_a_config_file(tmp_path, knn_file):
    shutil.copy(knn_file, tmp_path / "answer-knn.steproute")
    config = tmp_path / "steproute.yaml"
    config.write_text(yaml.safe_dump(config_with({"policy": "knn", "artefact": "answer-knn.steproute"}), sort_keys=False))
    router = StepRouter.from_file(config)
    assert router.decide(StepRequest("answer", EASY.messages)).tier == "fast"
    decision = router.decide(PROOF)
    assert (decision.tier, decision.policy) == ("advanced", "knn")
    assert decision.reason.startswith("knn: estimated quality fast=")
    assert router.complete(PROOF).completion.content == "answer from advanced"


def test_steproute_train_policy_knn_then_eval(tmp_path, capsys):
    write_rows(synthetic_rows(200, seed=1), tmp_path / "train.jsonl")
    write_rows(synthetic_rows(80, seed=2), tmp_path / "test.jsonl")
    art = tmp_path / "k.steproute"
    code = main(["train", "--data", str(tmp_path / "train.jsonl"), "--out", str(art), "--policy", "knn", "--folds", "3",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    trained = json.loads(out)
    assert trained["policy"] == "knn" and trained["cross_validation"]["folds"] == 3
    assert load_artefact(art).policy == "knn"
    code = main(["eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(art), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["policy"] == f"knn {art.name}" and result["rows"] == 80 and result["apgr"] > 0.6
