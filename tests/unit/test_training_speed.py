"""Training embeds each text once per run and keeps embeddings on disk across runs; the
classifier's decision path computes what scikit-learn computes from the same parameters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from steproute.evaluation import load_mmlu, split_rows
from steproute.evaluation._semantic_train import train_semantic
from steproute.evaluation._train import cross_validated_scores, request_of, train_classifier
from steproute.policies.classifier import ClassifierPolicy
from steproute.policies.features import ENCODERS, StaticEncoder, get_encoder
from tests.unit.test_learned_policies import MODELS, synthetic_rows

MMLU = Path(__file__).resolve().parents[3] / "shared" / "data" / "routellm" / "routellm" / "evals" / "mmlu"


class CountingEncoder(StaticEncoder):
    """The static encoder, counting how often each text is embedded in a batch."""

    name = "counting-static"

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def encode(self, texts):
        self.seen.update(texts)
        return super().encode(texts)


@pytest.fixture
def counting(monkeypatch, tmp_path) -> CountingEncoder:
    monkeypatch.setenv("STEPROUTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(ENCODERS, CountingEncoder.name, CountingEncoder)
    encoder = get_encoder(CountingEncoder.name)
    encoder.seen.clear()
    return encoder


def texts_of(rows) -> set[str]:
    return {m["content"] for r in rows for m in r.messages}


def test_cross_validation_embeds_each_distinct_text_once(counting):
    rows = synthetic_rows(120, seed=5)
    train_classifier(rows, MODELS, folds=3, encoder=counting.name)
    assert counting.seen, "the encoder was not used"
    assert max(counting.seen.values()) == 1, counting.seen.most_common(3)
    assert set(counting.seen) - {""} == texts_of(rows)


def test_a_warm_cache_embeds_nothing_and_trains_the_same_artefact(counting):
    rows = synthetic_rows(120, seed=6)
    cold = train_classifier(rows, MODELS, folds=3, encoder=counting.name)
    counting.seen.clear()
    warm = train_classifier(rows, MODELS, folds=3, encoder=counting.name)
    assert not counting.seen
    uncached = train_classifier(rows, MODELS, folds=3, encoder=counting.name, embedding_cache=False)
    assert counting.seen  # no cache: embedded again
    for other in (warm, uncached):
        assert other.meta == cold.meta
        for key, array in cold.arrays.items():
            np.testing.assert_array_equal(other.arrays[key], array, err_msg=key)
    requests = [request_of(r) for r in synthetic_rows(40, seed=7)]
    decide = [[ClassifierPolicy(a).choose(q) for q in requests] for a in (cold, warm, uncached)]
    assert decide[0] == decide[1] == decide[2]


def test_the_semantic_policy_embeds_once_and_reads_the_cache(counting):
    rows = synthetic_rows(90, seed=8)
    cold = train_semantic(rows, MODELS, folds=3, encoder=counting.name)
    assert max(counting.seen.values()) == 1
    counting.seen.clear()
    warm = train_semantic(rows, MODELS, folds=3, encoder=counting.name)
    assert not counting.seen
    assert warm.meta == cold.meta
    np.testing.assert_array_equal(warm.arrays["embeddings"], cold.arrays["embeddings"])


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_cache_file_is_detected_and_rebuilt(counting, tmp_path, damage):
    rows = synthetic_rows(60, seed=9)
    expected = cross_validated_scores(rows, MODELS, folds=3, encoder=counting.name)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(files) == 1, files
    data = files[0].read_bytes()
    if damage == "truncate":
        files[0].write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        files[0].write_bytes(data[:-5] + bytes([data[-5] ^ 0x01]) + data[-4:])
    else:
        files[0].write_bytes(b"\x00" * len(data))
    counting.seen.clear()
    again = cross_validated_scores(rows, MODELS, folds=3, encoder=counting.name)
    assert set(counting.seen) - {""} == texts_of(rows)  # nothing was trusted: every text embedded again
    np.testing.assert_array_equal(again, expected)
    assert not files[0].exists() or files[0].read_bytes() != (b"\x00" * len(data))
    counting.seen.clear()
    cross_validated_scores(rows, MODELS, folds=3, encoder=counting.name)
    assert not counting.seen  # the rebuilt file serves the next run


def test_each_fold_is_the_model_trained_on_the_other_folds_alone(monkeypatch, tmp_path):
    """Embedding once must not leak the held-out fold into a fold's vocabulary or scaling."""
    from sklearn.model_selection import StratifiedKFold

    monkeypatch.setenv("STEPROUTE_CACHE_DIR", str(tmp_path))
    rows = [*synthetic_rows(90, seed=10), synthetic_rows(1, seed=11)[0]]
    oof = cross_validated_scores(rows, MODELS, folds=3)
    zeros = np.zeros(len(rows))
    for train, test in StratifiedKFold(3, shuffle=True, random_state=0).split(zeros, zeros):
        policy = ClassifierPolicy(train_classifier([rows[i] for i in train], MODELS, folds=0))
        np.testing.assert_allclose(policy.scores_many([request_of(rows[i]) for i in test]), oof[test], atol=1e-5)


@pytest.fixture(scope="module")
def mmlu_classifier(tmp_path_factory):
    train, test = split_rows(load_mmlu(MMLU).rows, 0.3, seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEPROUTE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        artefact = train_classifier(train[::12], ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"),
                                    folds=0)
    return artefact, train[::12], test[:300]


def test_the_decision_path_equals_scikit_learn_predict_proba_on_mmlu(mmlu_classifier):
    """The same parameters (the artefact's float32 IDF and coefficients) through scikit-learn's own pipeline."""
    from sklearn.linear_model import LogisticRegression

    from steproute.evaluation._train import _Features

    artefact, train, test = mmlu_classifier
    features = _Features(artefact.meta["encoder"])
    features.fit_transform(train)
    features.tfidf.idf_ = artefact.arrays["idf"].astype(np.float64)
    policy = ClassifierPolicy(artefact)
    X = features.transform(test)
    got = np.array([policy.scores(request_of(r)) for r in test])
    for tier in range(len(artefact.labels)):
        model = LogisticRegression()
        model.classes_ = np.array([0.0, 1.0])
        model.coef_ = artefact.arrays["coef"][tier:tier + 1].astype(np.float64)
        model.intercept_ = np.array([artefact.arrays["intercept"][tier]], dtype=np.float64)
        np.testing.assert_allclose(got[:, tier], model.predict_proba(X)[:, 1], rtol=0, atol=1e-9)
    chosen = [policy.choose(request_of(r)).tier for r in test]
    from steproute.policies._scoring import pick

    reference = np.column_stack([
        1.0 / (1.0 + np.exp(-(X @ artefact.arrays["coef"][t].astype(np.float64) + artefact.arrays["intercept"][t])))
        for t in range(len(artefact.labels))])
    assert chosen == [policy.tiers[pick(list(s), policy.threshold)] for s in reference]
    assert 0 < sum(c == policy.tiers[0] for c in chosen) < len(chosen)  # both tiers chosen: the comparison can fail
