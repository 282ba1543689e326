"""The classifier's decision path gives the estimates it gave before it was made faster (issue 22).

``data/classifier_fixture.json`` holds 308 requests (300 held-out MMLU prompts and a few edge
cases: negation words, a backslash, non-ASCII digits, a follow-up turn, no user message, a
prompt over the embedding's 4,000 characters, repeated words, multi-part content) and the
estimates of the decision path at commit c0711dc, with ``data/classifier_fixture.steproute``
(trained on a fifth of the MMLU development rows' 70%).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from steproute.policies.classifier import ClassifierPolicy
from steproute.types import StepRequest

DATA = Path(__file__).parent / "data"
ACROSS_MACHINES = 1e-7
"""How far the saved estimates (made on another machine) may be: the static embedding is a float32 table,
and numpy sums float32 rows in an order that depends on the CPU's vector width (1.3e-8 seen between an
AVX2 and an AVX-512 machine). Within one machine the paths must agree to 1e-12."""


def _fixture():
    saved = json.loads((DATA / "classifier_fixture.json").read_text(encoding="utf-8"))
    requests = [StepRequest(q["step"], q["messages"], kind=q["kind"]) for q in saved["requests"]]
    return requests, np.array(saved["scores"]), saved["tiers"]


def test_estimates_equal_the_saved_ones_cold_and_warm():
    requests, expected, tiers = _fixture()
    policy = ClassifierPolicy.load(DATA / "classifier_fixture.steproute")
    runs = []
    for _ in range(2):  # first with every word new, then from the word caches
        got = np.array([policy.scores(r) for r in requests])
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < ACROSS_MACHINES
        assert [policy.choose(r).tier for r in requests] == tiers
        runs.append(got)
    assert np.abs(runs[0] - runs[1]).max() < 1e-12


def test_estimates_stay_equal_when_the_word_caches_are_cleared(monkeypatch):
    import steproute.policies.classifier as classifier

    requests, expected, _ = _fixture()
    cached = ClassifierPolicy.load(DATA / "classifier_fixture.steproute")
    warm = np.array([cached.scores(r) for r in requests])
    monkeypatch.setattr(classifier, "_CACHE_WORDS", 50)  # cleared many times over
    policy = ClassifierPolicy.load(DATA / "classifier_fixture.steproute")
    got = np.array([policy.scores(r) for r in requests])
    assert np.abs(got - expected).max() < ACROSS_MACHINES
    assert np.abs(got - warm).max() < 1e-12


def test_the_reason_reads_as_before():
    requests, expected, _ = _fixture()
    policy = ClassifierPolicy.load(DATA / "classifier_fixture.steproute", tiers=("f{a}st", "strong"), threshold=0.05)
    for request, scores in zip(requests[:20], expected[:20], strict=True):
        shown = ", ".join(f"{t}={s:.2f}" for t, s in zip(("f{a}st", "strong"), scores, strict=True))
        assert policy.choose(request).reason == f"classifier: estimated quality {shown}; threshold 0.05"
    policy.threshold = 0.1  # a changed threshold is read on the next decision
    assert policy.choose(requests[0]).reason.endswith("; threshold 0.1")


def test_hand_features_count_as_the_regular_expressions_do():
    import math
    import random
    import re

    from steproute.policies.features import hand_features

    rng = random.Random(0)
    alphabet = "ab Z09=+-*/^<>\\n\\\\x٣é€NOTEXCEPTLEASTFALSE"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        got = hand_features(text, "", 1)
        assert got[1] == 10.0 * len(re.findall(r"\d", text)) / max(1, len(text)), text
        assert got[2] == math.log1p(len(re.findall(r"[=+\-*/^<>]|\\[a-z]+", text))), text
        assert got[3] == (1.0 if re.search(r"\b(NOT|EXCEPT|LEAST|FALSE)\b", text) else 0.0), text
