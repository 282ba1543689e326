"""Tests that kill mutmut mutants of steproute/policies/ensemble.py (see docs/architecture.md, "Mutation testing").

Members are trained on the synthetic rows of ``test_learned_policies`` (the static encoder, no cache).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from steproute.evaluation._ensemble_train import bundle
from steproute.evaluation._knn_train import train_knn
from steproute.evaluation._semantic_train import train_semantic
from steproute.evaluation._train import train_classifier
from steproute.policies._artefact import Artefact, ArtefactError, save_artefact
from steproute.policies.classifier import ClassifierPolicy
from steproute.policies.ensemble import EnsemblePolicy
from steproute.policies.knn import KnnPolicy
from steproute.policies.semantic import SemanticPolicy
from tests.unit.test_learned_policies import EASY, MODELS, PROOF, synthetic_rows


@pytest.fixture(scope="module")
def members() -> dict[str, Artefact]:
    rows = synthetic_rows(120)
    return {"classifier": train_classifier(rows, MODELS, folds=0, embedding_cache=False),
            "knn": train_knn(rows, MODELS, folds=0, embedding_cache=False),
            "semantic": train_semantic(rows, MODELS, folds=0, embedding_cache=False)}


def test_a_semantic_member_is_read_by_the_semantic_policy(members):
    policy = EnsemblePolicy(bundle([(1.0, members["semantic"]), (1.0, members["classifier"])], MODELS, 0.05))
    assert [type(p) for _, p in policy.members] == [SemanticPolicy, ClassifierPolicy]
    semantic, classifier = SemanticPolicy(members["semantic"]), ClassifierPolicy(members["classifier"])
    for request in (EASY, PROOF):
        np.testing.assert_allclose(policy.scores(request), 0.5 * semantic.scores(request) + 0.5 * classifier.scores(request),
                                   atol=1e-12)


def test_the_weights_are_scaled_to_sum_to_one_and_a_member_weighted_0_is_left_out(members):
    policy = EnsemblePolicy(bundle([(0.0, members["semantic"]), (1.0, members["classifier"]), (3.0, members["knn"])],
                                   MODELS, 0.05))
    assert [(w, type(p)) for w, p in policy.members] == [(0.25, ClassifierPolicy), (0.75, KnnPolicy)]


def test_a_member_of_another_kind_is_refused_by_name(members):
    odd = Artefact("cascade", {"labels": list(MODELS), "threshold": 0.0}, {})
    with pytest.raises(ValueError) as excinfo:
        EnsemblePolicy(bundle([(1.0, members["knn"]), (1.0, odd)], MODELS, 0.05))
    assert str(excinfo.value) == "an ensemble cannot hold a 'cascade' member"


def test_a_given_threshold_replaces_the_artefacts(members, tmp_path: Path):
    artefact = bundle([(1.0, members["knn"])], MODELS, 0.05)
    assert EnsemblePolicy(artefact).threshold == 0.05
    assert EnsemblePolicy(artefact, threshold=0.25).threshold == 0.25
    path = tmp_path / "e.steproute"
    save_artefact(artefact, path)
    loaded = EnsemblePolicy.load(path, ["fast", "strong"], 0.25)
    assert (loaded.tiers, loaded.threshold) == (("fast", "strong"), 0.25)
    assert loaded.choose(EASY).reason.endswith("; threshold 0.25")
    assert EnsemblePolicy.load(path).tiers == MODELS


def test_loading_names_the_file_when_it_is_another_kind_or_does_not_fit(members, tmp_path: Path):
    knn = tmp_path / "knn.steproute"
    save_artefact(members["knn"], knn)
    with pytest.raises(ArtefactError) as excinfo:
        EnsemblePolicy.load(knn)
    assert str(excinfo.value) == f"{knn}: a 'knn' artefact, not a 'ensemble' one"
    ensemble = tmp_path / "e.steproute"
    save_artefact(bundle([(1.0, members["knn"])], MODELS, 0.05), ensemble)
    with pytest.raises(ArtefactError) as excinfo:
        EnsemblePolicy.load(ensemble, ["a", "b", "c"])
    assert re.fullmatch(rf"{re.escape(str(ensemble))}: the artefact does not fit its policy \(ValueError: "
                        r"the artefact estimates 2 tiers .*; 3 given \(a, b, c\)\)", str(excinfo.value))
