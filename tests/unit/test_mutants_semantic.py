"""Tests that kill mutmut mutants of steproute/policies/semantic.py (see docs/architecture.md, "Mutation testing").

A hand-made artefact with three references on unit vectors, so each estimate is worked out by
hand: similarity to the query, the nearest ``neighbours``, softmax weights at ``temperature``,
the shrink towards the mean quality by ``prior_weight``, the bonus for references of the same step.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from steproute.evaluation._knn_train import train_knn
from steproute.policies._artefact import Artefact, ArtefactError, pack_strings, save_artefact
from steproute.policies.features import get_encoder
from steproute.policies.semantic import SemanticPolicy
from steproute.types import StepRequest
from tests.unit.test_learned_policies import MODELS, synthetic_rows

DIM = 256
QUALITY = np.array([[1.0, 1.0], [0.0, 1.0], [0.5, 1.0]])
QUERY = (np.eye(3, DIM, dtype=np.float32)[0] + 0.5 * np.eye(3, DIM, dtype=np.float32)[1])   # similarity 1, 0.5, 0
HALF = 0.5 / math.log(2)   # the temperature at which a similarity 0.5 lower weighs half


def semantic(*, neighbours: int = 1, temperature: float = HALF, prior_weight: float = 0.0, bonus: float = 0.0,
             threshold: float = 0.05, tiers=None, given_threshold=None) -> SemanticPolicy:
    meta = {"labels": ["fast", "strong"], "encoder": "wordllama-l2-256", "threshold": threshold, "neighbours": neighbours,
            "temperature": temperature, "prior_weight": prior_weight, "same_step_bonus": bonus}
    arrays = {"embeddings": np.eye(3, DIM, dtype=np.float16), "quality": QUALITY,
              "step_ids": np.array([0, 0, 1], dtype=np.int32), "steps": pack_strings(["answer", "plan"])}
    return SemanticPolicy(Artefact("semantic", meta, arrays), tiers, given_threshold)


def test_the_nearest_reference_decides_with_one_neighbour():
    assert semantic().estimate(QUERY, "answer").tolist() == [1.0, 1.0]
    assert semantic().estimate(np.eye(3, DIM, dtype=np.float32)[2], "answer").tolist() == [0.5, 1.0]


def test_two_neighbours_weigh_by_softmax_at_the_temperature():
    np.testing.assert_allclose(semantic(neighbours=2).estimate(QUERY, "answer"), [2 / 3, 1.0], rtol=1e-6)
    # a temperature twice as high: weights 1 and 2**-0.5
    w = 2 ** -0.5
    np.testing.assert_allclose(semantic(neighbours=2, temperature=2 * HALF).estimate(QUERY, "answer"),
                               [1 / (1 + w), 1.0], rtol=1e-6)


def test_more_neighbours_than_references_takes_them_all():
    policy = semantic(neighbours=5)
    assert policy.neighbours == 3
    # weights 1, 1/2, 1/4 (similarity 1, 0.5, 0): (1 + 0 + 0.125) / 1.75
    np.testing.assert_allclose(policy.estimate(QUERY, "answer"), [1.125 / 1.75, 1.0], rtol=1e-6)
    np.testing.assert_allclose(semantic(neighbours=3).estimate(QUERY, "answer"), [1.125 / 1.75, 1.0], rtol=1e-6)


def test_the_prior_weight_shrinks_towards_the_mean_quality():
    # weights 1 and 1/2 plus the mean quality (0.5, 1) at weight 1.5: (1 + 0.75) / 3
    np.testing.assert_allclose(semantic(neighbours=2, prior_weight=1.5).estimate(QUERY, "answer"), [1.75 / 3, 1.0],
                               rtol=1e-6)


def test_the_same_step_bonus_lifts_only_references_of_the_requests_step():
    assert semantic(bonus=2.0).estimate(QUERY, "plan").tolist() == [0.5, 1.0]
    assert semantic(bonus=2.0).estimate(QUERY, "answer").tolist() == [1.0, 1.0]
    assert semantic(bonus=2.0).estimate(QUERY, "unknown").tolist() == [1.0, 1.0]
    assert semantic(bonus=0.75).estimate(np.eye(3, DIM, dtype=np.float32)[1], "plan").tolist() == [0.0, 1.0]  # under the gap
    np.testing.assert_allclose(semantic(neighbours=2, bonus=0.5).estimate(QUERY, "answer"), [2 / 3, 1.0], rtol=1e-6)


def test_scores_embeds_the_latest_user_message_with_the_artefacts_encoder():
    policy = semantic(neighbours=3, temperature=0.25)
    request = StepRequest("answer", [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"},
                                     {"role": "user", "content": "what is the capital of Norway"}])
    expected = policy.estimate(get_encoder("wordllama-l2-256").encode_one("what is the capital of Norway"), "answer")
    np.testing.assert_allclose(policy.scores(request), expected, rtol=1e-6)
    other = policy.estimate(get_encoder("wordllama-l2-256").encode_one("earlier"), "answer")
    assert not np.allclose(expected, other)


def test_the_tiers_and_threshold_given_and_from_a_file(tmp_path: Path):
    policy = semantic(tiers=["a", "b"], given_threshold=0.25)
    assert (policy.tiers, policy.threshold) == (("a", "b"), 0.25)
    assert (policy.temperature, policy.prior_weight, policy.same_step_bonus) == (HALF, 0.0, 0.0)
    base = semantic(threshold=0.125)
    path = tmp_path / "s.steproute"
    save_artefact(Artefact("semantic", dict(base.meta), {"embeddings": np.eye(3, DIM, dtype=np.float16),
                                                        "quality": QUALITY, "step_ids": np.array([0, 0, 1], dtype=np.int32),
                                                        "steps": pack_strings(["answer", "plan"])}), path)
    loaded = SemanticPolicy.load(path, ["a", "b"], 0.25)
    assert (loaded.tiers, loaded.threshold) == (("a", "b"), 0.25)
    assert (SemanticPolicy.load(path).tiers, SemanticPolicy.load(path).threshold) == (("fast", "strong"), 0.125)
    with pytest.raises(ArtefactError) as excinfo:
        SemanticPolicy.load(path, ["a", "b", "c"])
    assert str(excinfo.value) == (f"{path}: the artefact does not fit its policy (ValueError: the artefact estimates "
                                  "2 tiers (fast, strong); 3 given (a, b, c))")


def test_loading_another_kind_of_artefact_names_the_file_and_both_kinds(tmp_path: Path):
    path = tmp_path / "knn.steproute"
    save_artefact(train_knn(synthetic_rows(20), MODELS, folds=0, embedding_cache=False), path)
    with pytest.raises(ArtefactError) as excinfo:
        SemanticPolicy.load(path)
    assert str(excinfo.value) == f"{path}: a 'knn' artefact, not a 'semantic' one"


def test_the_nearest_references_are_found_wherever_they_are_stored():
    reverse = np.eye(3, DIM, dtype=np.float32)[2] + 0.5 * np.eye(3, DIM, dtype=np.float32)[1]   # similarity 0, 0.5, 1
    assert semantic().estimate(reverse, "answer").tolist() == [0.5, 1.0]
    # the two nearest: references 2 and 1, weights 1 and 1/2: (0.5 + 0) / 1.5
    np.testing.assert_allclose(semantic(neighbours=2).estimate(reverse, "answer"), [1 / 3, 1.0], rtol=1e-6)


def test_scores_give_the_bonus_to_references_of_the_requests_step():
    policy = semantic(bonus=2.0)
    text = "what is the capital of Norway"
    encoded = get_encoder("wordllama-l2-256").encode_one(text)
    for step in ("plan", "answer"):
        request = StepRequest(step, [{"role": "user", "content": text}])
        assert policy.scores(request).tolist() == policy.estimate(encoded, step).tolist()
    assert policy.estimate(encoded, "plan").tolist() != policy.estimate(encoded, "answer").tolist()


def test_similarity_is_computed_in_float32():
    # reference 1 is 2**-24 more similar to the query than reference 0: below float32's step at 1, so
    # in float32 the two are equally near and weigh alike (at a temperature of 2**-24, float64 would not)
    embeddings = np.zeros((2, DIM), dtype=np.float16)
    embeddings[0, 0] = embeddings[1, 0] = 1.0
    embeddings[1, 1] = 2.0 ** -24
    query = np.zeros(DIM, dtype=np.float32)
    query[0] = query[1] = 1.0
    meta = {"labels": ["fast", "strong"], "encoder": "wordllama-l2-256", "threshold": 0.05, "neighbours": 2,
            "temperature": 2.0 ** -24, "prior_weight": 0.0, "same_step_bonus": 0.0}
    arrays = {"embeddings": embeddings, "quality": np.array([[1.0, 1.0], [0.0, 1.0]]),
              "step_ids": np.zeros(2, dtype=np.int32), "steps": pack_strings(["answer"])}
    assert SemanticPolicy(Artefact("semantic", meta, arrays)).estimate(query, "answer").tolist() == [0.5, 1.0]


def test_a_bonus_for_a_step_no_reference_has_changes_nothing_not_even_the_last_digit():
    plain = semantic(neighbours=3, temperature=0.3).estimate(QUERY, "unknown").tolist()
    assert semantic(neighbours=3, temperature=0.3, bonus=2.0).estimate(QUERY, "unknown").tolist() == plain
    assert plain[1] != 1.0   # float32 weights: the estimate is not exact, so a float64 path would show


def test_one_neighbour_is_the_nearest_among_more_references_than_numpy_sorts_outright():
    n = 257   # numpy's partition sorts arrays this short outright; from here on the order of the rest is arbitrary
    embeddings = np.zeros((n, DIM), dtype=np.float16)
    embeddings[:, 0] = np.arange(n) / 256   # exact in float16; similarity to e0 rises with the index
    quality = np.column_stack([np.zeros(n), np.ones(n)])
    quality[n - 1, 0] = 1.0
    meta = {"labels": ["fast", "strong"], "encoder": "wordllama-l2-256", "threshold": 0.05, "neighbours": 1,
            "temperature": 0.2, "prior_weight": 0.0, "same_step_bonus": 0.0}
    arrays = {"embeddings": embeddings, "quality": quality, "step_ids": np.zeros(n, dtype=np.int32),
              "steps": pack_strings(["answer"])}
    query = np.eye(1, DIM, dtype=np.float32)[0]
    assert SemanticPolicy(Artefact("semantic", meta, arrays)).estimate(query, "answer").tolist() == [1.0, 1.0]
