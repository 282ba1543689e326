"""Tests that kill mutmut mutants of steproute/policies/classifier.py (see docs/architecture.md, "Mutation testing").

The fast decision path is compared with the training pipeline's own features and logistic
(scikit-learn's TF-IDF, one-hot steps, standardised text measures) on requests that reach each of
its branches: repeated terms (sublinear TF), no known term, no user message, an earlier turn, a
step's ``/`` prefixes and kind, a query past ``MAX_EMBED_CHARS``, words met for the first time and again.
"""

from __future__ import annotations

import numpy as np
import pytest

from steproute.evaluation import EvalRow
from steproute.evaluation._train import _fit, _predict, request_of, train_classifier
from steproute.policies._artefact import save_artefact
from steproute.policies.classifier import ClassifierPolicy, analyse, terms
from steproute.policies.features import MAX_EMBED_CHARS
from steproute.types import StepRequest
from tests.unit.test_learned_policies import MODELS, synthetic_rows

STEPS = ("answer", "plan/draft", "plan/check", "tools/search/web")
KINDS = (None, "tool", "plan")


def varied_rows(n: int, seed: int) -> list[EvalRow]:
    """Synthetic rows spread over nested steps and kinds, a third of them after an earlier turn."""
    out = []
    for i, row in enumerate(synthetic_rows(n, seed=seed)):
        messages = row.messages
        if i % 3 == 2:
            messages = ({"role": "user", "content": "Earlier: " + synthetic_rows(3, seed=i)[i % 2].messages[0]["content"]},
                        {"role": "assistant", "content": "Done."}, *messages)
        out.append(EvalRow(row.id, messages, row.outcomes, step=STEPS[i % len(STEPS)], kind=KINDS[(i // 4) % 3]))
    return out


@pytest.fixture(scope="module")
def trained():
    rows = varied_rows(160, seed=11)
    features, coef, intercept = _fit(rows, MODELS, "wordllama-l2-256", 0.3)
    return features, coef, intercept, ClassifierPolicy(train_classifier(rows, MODELS, folds=0, embedding_cache=False))


LONG = " ".join(["Prove the integral converges"] * 200) + " and what is the capital of Peru?"  # past MAX_EMBED_CHARS


def probes() -> list[EvalRow]:
    base = synthetic_rows(1, seed=0)[0].outcomes
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    texts = [
        ("What is the capital of Peru?", "answer", None),
        ("Prove prove the the integral of x^2 converges converges and derive the closed form.", "plan/draft", "plan"),
        ("zzqv wplkx qqq", "tools/search/web", "tool"),   # no known term
        ("Capital capital CAPITAL of Chile, then prove it.", "plan/other", "tool"),  # an unknown step with a known prefix
        ("Derive the asymptotic expansion: NOT 42 + 7 = 49?\nline two", "elsewhere", "plan"),
        (LONG, "answer", None),
        (LONG[:MAX_EMBED_CHARS], "answer", "tool"),
        ("é ü 東京 the capital of Japan", "plan/check", None),
        ("a", "answer", None),  # no word of two letters
    ]
    rows = [EvalRow(f"p{i}", (user(text),), base, step=step, kind=kind) for i, (text, step, kind) in enumerate(texts)]
    rows.append(EvalRow("ctx", (user("What is the capital of Peru?"), {"role": "assistant", "content": "Lima."},
                                user("Now prove the series converges.")), base, step="plan/draft", kind="plan"))
    rows.append(EvalRow("none", ({"role": "system", "content": "no user here"},), base, step="answer"))
    return rows


def test_each_branch_of_the_fast_path_gives_the_pipelines_estimate(trained):
    features, coef, intercept, policy = trained
    rows = probes()
    assert len(LONG) > MAX_EMBED_CHARS and len(LONG[:MAX_EMBED_CHARS]) == MAX_EMBED_CHARS
    expected = _predict(features, coef, intercept, rows)
    first = np.array([policy.scores(request_of(r)) for r in rows])   # words met for the first time
    again = np.array([policy.scores(request_of(r)) for r in rows])   # every word remembered
    np.testing.assert_allclose(first, expected, atol=1e-6)
    np.testing.assert_allclose(again, expected, atol=1e-6)
    assert len({tuple(np.round(e, 6)) for e in expected}) == len(rows)  # each probe a different estimate


def test_a_step_and_kind_change_the_estimate_as_trained(trained):
    features, coef, intercept, policy = trained
    text = ({"role": "user", "content": "What is the capital of Peru?"},)
    outcomes = synthetic_rows(1)[0].outcomes
    rows = [EvalRow(f"s{i}", text, outcomes, step=step, kind=kind) for i, (step, kind) in enumerate(
        [("answer", None), ("answer", "tool"), ("plan/draft", None), ("plan/draft", "plan"), ("plan/zzz", None),
         ("tools/search/web", "tool"), ("tools/search", None), ("nowhere", None)])]
    expected = _predict(features, coef, intercept, rows)
    for _ in range(2):  # the second time from the per-step cache
        got = np.array([policy.scores(StepRequest(r.step, list(r.messages), kind=r.kind)) for r in rows])
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_tiers_and_threshold_given_to_load(tmp_path):
    path = tmp_path / "c.steproute"
    save_artefact(train_classifier(synthetic_rows(60, seed=2), MODELS, folds=0, embedding_cache=False), path)
    policy = ClassifierPolicy.load(path, ["fast", "strong"], 0.25)
    assert (policy.tiers, policy.labels, policy.threshold) == (("fast", "strong"), MODELS, 0.25)
    assert ClassifierPolicy.load(path).tiers == MODELS
    assert ClassifierPolicy.load(path).threshold == 0.0


def test_terms_are_the_words_then_the_adjacent_pairs():
    assert terms(["a", "b", "c"]) == ["a", "b", "c", "a b", "b c"]
    assert terms(["solo"]) == ["solo"] and terms([]) == []
    assert analyse("Prove it, then PROVE it!") == ["prove", "it", "then", "prove", "it", "prove it", "it then",
                                                   "then prove", "prove it"]


def test_load_refuses_an_artefact_of_another_kind(tmp_path):
    from steproute.policies._artefact import Artefact, ArtefactError, pack_strings

    path = tmp_path / "other.steproute"
    save_artefact(Artefact("semantic", {"labels": list(MODELS), "threshold": 0.0, "neighbours": 1, "temperature": 1.0,
                                        "prior_weight": 0.0, "same_step_bonus": 0.0, "encoder": "wordllama-l2-256"},
                           {"embeddings": np.eye(2), "quality": np.ones((2, 2)), "step_ids": np.zeros(2, dtype=np.int32),
                            "steps": pack_strings(["a"])}), path)
    with pytest.raises(ArtefactError) as info:
        ClassifierPolicy.load(path)
    assert str(info.value) == f"{path}: a 'semantic' artefact, not a 'classifier' one"
