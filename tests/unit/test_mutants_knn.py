"""Tests that kill mutmut mutants of steproute/policies/knn.py (see docs/architecture.md, "Mutation testing").

Each estimate is worked out from the module docstring's definition: the request is the point
``[query | context × context_weight | (hand − hand_mean) / hand_scale × hand_weight]``, a reference of
another step is ``step_penalty`` further away in squared distance, the ``k`` nearest vote (uniform, or
``1 / (distance + distance_floor)`` scaled to sum to ``k``) and the result is shrunk to the step's mean.
"""

from __future__ import annotations

import numpy as np
import pytest

from steproute.policies._artefact import Artefact, ArtefactError, pack_strings, save_artefact
from steproute.policies.features import get_encoder, hand_features
from steproute.policies.knn import KnnPolicy, neighbour_estimates
from steproute.types import StepRequest
from tests.unit.test_knn import BASE_META, QUERY, tiny

# [query (2) | context × context_weight (2) | hand × hand_weight (2)]: halves, exact in float16
REFERENCES = np.array([[1, 0, 0, 0, 0, 0], [1, 0, 0, 0.5, 1.5, 0], [0.5, 0.5, 0.5, 0, 0, 1],
                       [0, 1, 0, 0, -1, 0.5], [-1, 0, 0.5, 0.5, 0.5, 0.5]], dtype=np.float16)
QUALITY = np.array([[1.0, 1.0], [0.0, 1.0], [0.5, 0.0], [1.0, 0.5], [0.0, 0.0]])
STEP_IDS = np.array([0, 0, 1, 1, 0], dtype=np.int32)
STEP_MEAN = np.array([[0.25, 0.75], [0.75, 0.25]])
GLOBAL_MEAN = np.array([0.5, 0.5])
HAND_MEAN, HAND_SCALE = np.array([10.0, 5.0]), np.array([2.0, 4.0])


def five(**meta) -> KnnPolicy:
    arrays = {"references": REFERENCES, "quality": QUALITY, "step_ids": STEP_IDS, "steps": pack_strings(["a", "b"]),
              "step_mean": STEP_MEAN, "global_mean": GLOBAL_MEAN, "hand_mean": HAND_MEAN, "hand_scale": HAND_SCALE}
    settings = {**BASE_META, "k": 3, "weighting": "distance", "prior_strength": 1.5, "context_weight": 0.5,
                "hand_weight": 0.5, "step_penalty": 0.0, "distance_floor": 0.25, **meta}
    return KnnPolicy(Artefact("knn", settings, arrays))


def by_definition(query, context, hand, step, *, k=3, weighting="distance", prior_strength=1.5, context_weight=0.5,
                  hand_weight=0.5, step_penalty=0.0, distance_floor=0.25) -> np.ndarray:
    """The estimate as the module docstring defines it, one reference at a time."""
    ctx = np.zeros(2) if context is None else np.asarray(context, dtype=np.float64) * context_weight
    point = np.concatenate([query, ctx, (np.asarray(hand) - HAND_MEAN) / HAND_SCALE * hand_weight])
    steps = {"a": 0, "b": 1}
    squared = []
    for ref, ref_step in zip(REFERENCES.astype(np.float64), STEP_IDS, strict=True):
        d2 = float(np.sum((point - ref) ** 2))  # no context: a point at 0 there (a reference's own still counts)
        if step in steps and ref_step != steps[step]:
            d2 += step_penalty
        squared.append(d2)
    order = sorted(range(len(squared)), key=lambda i: squared[i])[:k]
    distance = np.sqrt([squared[i] for i in order])
    weights = np.ones(k) if weighting == "uniform" else 1.0 / (distance + distance_floor)
    weights = weights * k / weights.sum()
    prior = STEP_MEAN[steps[step]] if step in steps else GLOBAL_MEAN
    return (weights @ QUALITY[order] + prior_strength * prior) / (k + prior_strength)


Q = np.array([0.5, 0.0])
CONTEXT = np.array([0.0, 1.0])
HAND = [12.0, 7.0]  # standardised: (1, 0.5), weighted 0.5: (0.5, 0.25)


@pytest.mark.parametrize("context", [None, CONTEXT], ids=["no context", "context"])
@pytest.mark.parametrize("step", ["a", "b", "elsewhere"])
def test_every_distance_counts_with_distance_weights(context, step):
    np.testing.assert_allclose(five().estimate(Q, context, HAND, step), by_definition(Q, context, HAND, step), rtol=1e-5)


@pytest.mark.parametrize("settings", [
    {"hand_weight": 2.0}, {"hand_weight": 0.0}, {"context_weight": 2.0}, {"k": 1}, {"k": 5}, {"prior_strength": 0.0},
    {"distance_floor": 3.0}, {"step_penalty": 0.5}, {"step_penalty": 4.0, "k": 2}, {"weighting": "uniform"},
])
@pytest.mark.parametrize("step", ["a", "elsewhere"])
def test_each_setting_is_read_from_the_artefact(settings, step):
    for context in (None, CONTEXT):
        np.testing.assert_allclose(five(**settings).estimate(Q, context, HAND, step),
                                   by_definition(Q, context, HAND, step, **settings), rtol=1e-5)


def test_a_context_weight_of_zero_ignores_the_context():
    policy = five(context_weight=0.0)
    np.testing.assert_allclose(policy.estimate(Q, CONTEXT, HAND, "a"), policy.estimate(Q, None, HAND, "a"), rtol=1e-6)
    np.testing.assert_allclose(policy.estimate(Q, CONTEXT, HAND, "a"),
                               by_definition(Q, None, HAND, "a", context_weight=0.0), rtol=1e-5)


def test_the_settings_are_kept_as_read():
    policy = five(k=9, step_penalty=0.75, distance_floor=0.125, context_weight=0.25, hand_weight=1.25, prior_strength=2.5)
    assert (policy.k, policy.weighting, policy.prior_strength) == (5, "distance", 2.5)  # k: at most the references
    assert (policy.context_weight, policy.hand_weight, policy.step_penalty, policy.distance_floor) == (0.25, 1.25, 0.75, 0.125)
    assert tiny(k=10).k == 4
    # all four references, uniform: their mean
    assert tiny(k=10).estimate(QUERY, None, [], "a").tolist() == [0.5, 0.5]


def test_an_unknown_step_takes_no_step_penalty():
    """No reference is of an unknown step's: the penalty would push every one away, changing distance weights."""
    np.testing.assert_allclose(five(step_penalty=4.0).estimate(Q, None, HAND, "elsewhere"),
                               five().estimate(Q, None, HAND, "elsewhere"), rtol=1e-6)
    np.testing.assert_allclose(tiny(weighting="distance", step_penalty=3.0).estimate(QUERY, None, [], "zzz"),
                               tiny(weighting="distance").estimate(QUERY, None, [], "zzz"), rtol=1e-6)


def test_an_exact_match_is_at_distance_zero():
    # the query is reference 0 itself: weight 1 / floor against 1 / (sqrt(d2) + floor) for the others
    policy = five(k=2, prior_strength=0.0, distance_floor=0.5)
    got = policy.estimate(np.array([1.0, 0.0]), np.array([0.0, 0.0]), HAND_MEAN.tolist(), "a")
    np.testing.assert_allclose(got, by_definition(np.array([1.0, 0.0]), np.array([0.0, 0.0]), HAND_MEAN.tolist(), "a",
                                                  k=2, prior_strength=0.0, distance_floor=0.5), rtol=1e-5)
    w0, w2 = 2.0, 1.0 / (np.sqrt(0.25 + 0.25 + 0.25 + 1.0) + 0.5)  # the next nearest: reference 2
    np.testing.assert_allclose(got, (w0 * QUALITY[0] + w2 * QUALITY[2]) / (w0 + w2), rtol=1e-4)


def test_neighbour_estimates_weigh_each_query_on_its_own_row():
    distance = np.array([[0.0, 1.0, 3.0], [0.0, 2.0, 5.0]])
    quality = np.array([[[1.0], [0.0], [0.0]], [[0.0], [1.0], [1.0]]])
    prior = np.array([[0.5], [0.0]])
    got = neighbour_estimates(distance, quality, prior, 2, "distance", 1.0, 1.0)
    # row 0: weights 1, 1/2 scaled to sum 2: 4/3, 2/3; row 1: weights 1, 1/3 scaled: 3/2, 1/2
    np.testing.assert_allclose(got, [[(4 / 3 + 0.5) / 3], [0.5 / 3]], rtol=1e-12)
    # uniform: only the first k count, each with weight 1
    np.testing.assert_allclose(neighbour_estimates(distance, quality, prior, 2, "uniform", 1.0, 1.0),
                               [[1.5 / 3], [1.0 / 3]], rtol=1e-12)
    np.testing.assert_allclose(neighbour_estimates(distance, quality, prior, 1, "distance", 0.0, 0.5), [[1.0], [0.0]])


def test_scores_read_the_query_the_earlier_turns_and_the_step():
    encoder = get_encoder("wordllama-l2-256")
    texts = ["What is the capital of France?", "Prove that the series converges.", "Name a prime over 90.",
             "Translate this sentence into German.", "Sum the digits of 12345."]
    rng = np.random.default_rng(7)
    hand = np.array([hand_features(t, "", 1) for t in texts])
    mean, scale = hand.mean(axis=0), hand.std(axis=0) + 1.0
    query = encoder.encode(texts)
    context = encoder.encode(texts[::-1]) * 0.5
    references = np.hstack([query, context, (hand - mean) / scale * 0.5]).astype(np.float16)
    arrays = {"references": references, "quality": rng.random((5, 2)), "step_ids": np.array([0, 1, 0, 1, 0], dtype=np.int32),
              "steps": pack_strings(["answer", "plan"]), "step_mean": np.array([[0.1, 0.9], [0.8, 0.3]]),
              "global_mean": np.array([0.4, 0.6]), "hand_mean": mean, "hand_scale": scale}
    meta = {**BASE_META, "embedding_dim": 256, "k": 3, "weighting": "distance", "prior_strength": 1.0,
            "context_weight": 0.5, "hand_weight": 0.5, "step_penalty": 0.5, "distance_floor": 0.05}
    policy = KnnPolicy(Artefact("knn", meta, arrays))
    request = StepRequest("plan", [{"role": "user", "content": "Translate it into French."},
                                   {"role": "assistant", "content": "ok"},
                                   {"role": "user", "content": "Is 91 a prime number?"}])
    expected = policy.estimate(encoder.encode_one("Is 91 a prime number?"), encoder.encode_one("Translate it into French."),
                               hand_features("Is 91 a prime number?", "Translate it into French.", 2), "plan")
    np.testing.assert_allclose(policy.scores(request), expected, rtol=1e-6)
    alone = StepRequest("plan", [{"role": "user", "content": "Is 91 a prime number?"}])
    np.testing.assert_allclose(policy.scores(alone), policy.estimate(encoder.encode_one("Is 91 a prime number?"), None,
                                                                     hand_features("Is 91 a prime number?", "", 1), "plan"),
                               rtol=1e-6)
    assert not np.allclose(policy.scores(request), policy.scores(alone))
    assert not np.allclose(policy.scores(request), policy.scores(StepRequest("answer", request.messages)))


def test_load_takes_the_tiers_and_threshold_given(tmp_path):
    path = tmp_path / "five.steproute"
    policy = five()
    save_artefact(Artefact("knn", policy.meta, {"references": REFERENCES, "quality": QUALITY, "step_ids": STEP_IDS,
                                                "steps": pack_strings(["a", "b"]), "step_mean": STEP_MEAN,
                                                "global_mean": GLOBAL_MEAN, "hand_mean": HAND_MEAN,
                                                "hand_scale": HAND_SCALE}), path)
    loaded = KnnPolicy.load(path, ["small", "large"], 0.375)
    assert (loaded.tiers, loaded.labels, loaded.threshold) == (("small", "large"), ("fast", "strong"), 0.375)
    np.testing.assert_array_equal(loaded.estimate(Q, CONTEXT, HAND, "b"), policy.estimate(Q, CONTEXT, HAND, "b"))
    assert KnnPolicy.load(path).threshold == 0.0 and KnnPolicy.load(path).tiers == ("fast", "strong")
    with pytest.raises(ArtefactError, match="a 'knn' artefact, not a 'semantic' one"):
        from steproute.policies.semantic import SemanticPolicy

        SemanticPolicy.load(path)
    with pytest.raises(ArtefactError) as info:  # the policy's own error on the content, with the file's name
        KnnPolicy.load(path, ["a", "b", "c"])
    assert str(info.value) == (f"{path}: the artefact does not fit its policy (ValueError: the artefact estimates 2 tiers "
                               "(fast, strong); 3 given (a, b, c))")


def test_load_refuses_an_artefact_of_another_kind(tmp_path):
    path = tmp_path / "other.steproute"
    meta = {k: v for k, v in BASE_META.items() if k != "labels"}
    save_artefact(Artefact("semantic", {**meta, "labels": ["fast", "strong"], "neighbours": 1, "temperature": 1.0,
                                        "prior_weight": 0.0, "same_step_bonus": 0.0},
                           {"embeddings": np.eye(2), "quality": np.ones((2, 2)), "step_ids": np.zeros(2, dtype=np.int32),
                            "steps": pack_strings(["a"])}), path)
    with pytest.raises(ArtefactError) as info:
        KnnPolicy.load(path)
    assert str(info.value) == f"{path}: a 'semantic' artefact, not a 'knn' one"


def test_the_nearest_are_found_among_more_references_than_numpy_sorts_outright():
    """Past 256 elements ``argpartition`` really partitions: the k-th nearest must be its pivot."""
    rng = np.random.default_rng(3)
    n = 300
    angles = rng.permutation(n) * (np.pi / n)  # distinct points on a half circle, stored in no order
    references = np.zeros((n, 4), dtype=np.float16)
    references[:, 0], references[:, 1] = np.cos(angles), np.sin(angles)
    quality = np.stack([rng.random(n), rng.random(n)], axis=1)
    arrays = {"references": references, "quality": quality, "step_ids": np.zeros(n, dtype=np.int32),
              "steps": pack_strings(["a"]), "step_mean": np.array([[0.5, 0.5]]), "global_mean": np.array([0.5, 0.5]),
              "hand_mean": np.zeros(0), "hand_scale": np.ones(0)}
    query = np.array([np.cos(1.0), np.sin(1.0)])
    d2 = ((references.astype(np.float64)[:, :2] - query) ** 2).sum(axis=1)
    for k in (1, 2, 3, 7):
        policy = KnnPolicy(Artefact("knn", {**BASE_META, "k": k}, arrays))
        nearest = np.argsort(d2)[:k]
        np.testing.assert_allclose(policy.estimate(query, None, [], "a"), quality[nearest].mean(axis=0), rtol=1e-9)


def test_a_request_without_earlier_turns_has_no_context_even_where_empty_text_has_a_vector():
    """MiniLM gives the empty text a vector (the static encoder gives zeros): no earlier turn must mean no context."""
    encoder = get_encoder("all-minilm-l6-v2")
    dim = encoder.dim
    references = np.zeros((3, 2 * dim + 7), dtype=np.float16)
    references[:, :dim] = encoder.encode(["What is the capital of Peru?", "Prove the series converges.", "Hello"])
    references[:, dim:2 * dim] = 0.5 * encoder.encode(["", "earlier turn", "Hello"])
    arrays = {"references": references, "quality": np.array([[1.0, 1.0], [0.0, 1.0], [0.5, 0.0]]),
              "step_ids": np.zeros(3, dtype=np.int32), "steps": pack_strings(["a"]), "step_mean": np.array([[0.5, 0.5]]),
              "global_mean": np.array([0.5, 0.5]), "hand_mean": np.zeros(7), "hand_scale": np.ones(7)}
    meta = {**BASE_META, "encoder": "all-minilm-l6-v2", "embedding_dim": dim, "k": 3, "weighting": "distance",
            "distance_floor": 0.01}
    policy = KnnPolicy(Artefact("knn", meta, arrays))
    request = StepRequest("a", [{"role": "user", "content": "Is Lima the capital of Peru?"}])
    query = encoder.encode_one("Is Lima the capital of Peru?")
    np.testing.assert_allclose(policy.scores(request), policy.estimate(query, None, hand_features(
        "Is Lima the capital of Peru?", "", 1), "a"), rtol=1e-6)
    assert not np.allclose(policy.scores(request), policy.estimate(query, encoder.encode_one(""), hand_features(
        "Is Lima the capital of Peru?", "", 1), "a"), rtol=1e-6)
