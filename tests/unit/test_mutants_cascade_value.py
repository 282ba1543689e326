"""Tests that kill mutmut mutants of steproute/policies/cascade_value.py (see docs/architecture.md, "Mutation testing").

The policies here run on hand-made estimates: an estimator that returns fixed raw estimates, a
scorer that says a fixed probability (and records what it was asked), two-knot calibrators, so
each value, start and verdict is worked out by hand from the module docstring's rule.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from steproute.policies._artefact import Artefact, ArtefactError, save_artefact
from steproute.policies.answer_scorer import ArithmeticSignal
from steproute.policies.base import Choice
from steproute.policies.cascade_value import CascadeRoutingPolicy, QualityModel, accepts, mixed, start_tier, start_values
from steproute.policies.confidence import Answer, HedgingSignal
from steproute.types import StepRequest
from tests.unit.test_cascade_value import trained_artefact

TIERS = ("fast", "mid", "strong")
IDENTITY = (0.0, 1.0)


class Fixed:
    """An estimator that returns ``raw`` for every request and counts its calls."""

    def __init__(self, raw: list[float]) -> None:
        self.raw = np.array(raw)
        self.calls = 0

    def scores(self, request: StepRequest) -> np.ndarray:
        self.calls += 1
        return self.raw


class Scorer:
    """An answer scorer that says ``p`` and records what it was asked."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.asked: list[tuple[str, str, str | None]] = []

    def probability(self, question: str, answer: str, finish_reason: str | None = None) -> float:
        self.asked.append((question, answer, finish_reason))
        return self.p


def policy(raw: list[float], *, p: float = 0.6, lam: float = 0.5, kappa: float = 0.0, pre_y: Any = (IDENTITY,) * 3,
           post_y: Any = (IDENTITY, (0.0, 0.5)), mix: Any = ((1.0, 0.0, 0.0), (1.0, 1.0, 0.0)),
           costs: Any = (0.1, 0.4, 1.0), **kw: Any) -> CascadeRoutingPolicy:
    """Three tiers; pre-call calibrators ``pre_y`` on knots 0 and 1; post-call ones ``post_y`` (the
    mid tier's halves its mixed score); the mid tier's mix adds the logit of its raw pre-call estimate."""
    n = len(costs)
    model = QualityModel(np.array(costs), np.array([IDENTITY] * n), np.array(pre_y), np.array([IDENTITY] * (n - 1)),
                         np.array(post_y), np.array(mix))
    return CascadeRoutingPolicy(TIERS[:n] if n < 3 else TIERS, Fixed(raw), Scorer(p), model,  # type: ignore[arg-type]
                                lam=lam, kappa=kappa, **kw)


def ask(text: str = "what is 2 + 2?") -> StepRequest:
    return StepRequest("s", [{"role": "user", "content": text}])


class On:
    def __init__(self, tier: str) -> None:
        self.tier = tier


# -- the value rule -------------------------------------------------------------------------------


def test_the_value_of_each_start_worked_out_by_hand():
    # E2 = 0.9 - 0.5 = 0.4; E1 = 0.25 (0.6 + 0.4 · 0.4) + 0.75 · 0.6 - 0.5 · 0.4 = 0.44;
    # E0 = 0.25 (0.5 + 0.5 · 0.44) + 0.75 · 0.5 - 0.5 · 0.1 = 0.505
    values = start_values(np.array([0.5, 0.6, 0.9]), np.array([0.1, 0.4, 1.0]), lam=0.5, kappa=0.25)
    np.testing.assert_allclose(values, [0.505, 0.44, 0.4], rtol=1e-12)
    # the strongest tier's cost need not be 1: E1 = 0.9 - 0.5 · 2; E0 = max(0.5, -0.1) - 0.5 · 0.1
    np.testing.assert_allclose(start_values(np.array([0.5, 0.9]), np.array([0.1, 2.0]), lam=0.5, kappa=0.0),
                               [0.45, -0.1], rtol=1e-12)
    # escalating is worth less than nothing: the check counts it as 0, not as its negative value
    np.testing.assert_allclose(start_values(np.array([0.3, 0.2]), np.array([0.1, 1.0]), lam=1.0, kappa=0.5),
                               [0.2, -0.8], rtol=1e-12)
    # the next tier is worth more than this one's estimate: unchecked, the cascade goes on
    np.testing.assert_allclose(start_values(np.array([0.3, 0.95]), np.array([0.1, 1.0]), lam=0.1, kappa=0.5),
                               [0.5 * (0.3 + 0.7 * 0.85) + 0.5 * 0.85 - 0.01, 0.85], rtol=1e-12)


def test_values_of_rows_and_of_whole_number_estimates():
    rows = np.array([[0.5, 0.6, 0.9], [0.1, 0.2, 0.9]])
    costs = np.array([0.1, 0.4, 1.0])
    values = start_values(rows, costs, lam=0.2, kappa=0.5)
    for row, got in zip(rows, values, strict=True):
        np.testing.assert_allclose(got, start_values(row, costs, lam=0.2, kappa=0.5), rtol=1e-12)
    # integer estimates and costs are read as floats
    np.testing.assert_allclose(start_values(np.array([1, 1]), np.array([0, 1]), lam=0.5, kappa=0.0), [1.0, 0.5])


def test_the_start_is_the_cheapest_tier_of_highest_value_within_the_bounds():
    values = np.array([0.3, 0.9, 0.5, 0.7])
    assert int(start_tier(values)) == 1
    assert int(start_tier(np.array([0.1, 0.2, 0.9]))) == 2  # the last tier is in the default bounds
    assert int(start_tier(np.array([0.5, 0.5, 0.5]))) == 0  # a tie: the cheapest
    assert int(start_tier(values, 2)) == 3
    assert int(start_tier(values, 2, 2)) == 2
    assert int(start_tier(values, 0, 0)) == 0
    assert start_tier(np.array([[0.1, 0.9], [0.9, 0.1]])).tolist() == [1, 0]


def test_an_answer_worth_exactly_the_value_of_escalating_is_kept():
    assert bool(accepts(0.35, 0.35)) and not bool(accepts(0.3499, 0.35))
    assert accepts(np.array([0.2, 0.4]), np.array([0.3, 0.3])).tolist() == [False, True]


# -- the calibrated quality model -------------------------------------------------------------------


def test_each_tier_has_its_own_calibrators_and_mix():
    model = QualityModel(np.array([0.1, 1.0]), np.array([IDENTITY, IDENTITY]), np.array([(0.0, 0.5), (0.2, 1.0)]),
                         np.array([IDENTITY, IDENTITY]), np.array([(0.0, 0.5), (0.0, 1.0)]),
                         np.array([(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)]))
    np.testing.assert_allclose(model.pre(np.array([0.5, 0.5])), [0.25, 0.6])
    np.testing.assert_allclose(model.pre(np.array([[0.5, 0.5], [1.0, 0.0]])), [[0.25, 0.6], [0.5, 0.2]])
    np.testing.assert_allclose(model.pre([1, 1]), [0.5, 1.0])
    assert float(model.post(0, 0.9, 0.9)) == pytest.approx(0.25)  # tier 0: mix (0, 0, 0) → 0.5, halved
    assert float(model.post(1, 0.9, 0.1)) == pytest.approx(0.9)  # tier 1: the scorer's probability alone


def test_the_mix_is_a_logistic_of_the_two_logits():
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    want = 1 / (1 + math.exp(-(2.0 * logit(0.8) - 1.0 * logit(0.3) + 0.5)))
    assert float(mixed(np.array([2.0, -1.0, 0.5]), 0.8, 0.3)) == pytest.approx(want, rel=1e-12)
    # probabilities of 0 and 1 are clipped at 1e-6 from the ends
    assert float(mixed(np.array([1.0, 0.0, 0.0]), 0.0, 0.5)) == pytest.approx(1e-6, rel=1e-9, abs=0)
    assert float(mixed(np.array([1.0, 0.0, 0.0]), 1.0, 0.5)) == pytest.approx(1 - 1e-6, rel=1e-12)
    assert float(mixed(np.array([0.0, 1.0, 0.0]), 0.5, 2.0)) == pytest.approx(1 - 1e-6, rel=1e-12)
    assert float(mixed(np.array([0.0, 1.0, 0.0]), 0.5, 1)) == pytest.approx(1 - 1e-6, rel=1e-12)
    # single-precision estimates are read in double precision (float32's 0.3 is 0.30000001192…)
    for scorer, pre in ((np.float32(0.3), 0.5), (0.5, np.float32(0.3))):
        mix = np.array([1.0, 0.0, 0.0]) if pre == 0.5 else np.array([0.0, 1.0, 0.0])
        assert float(mixed(mix, scorer, pre)) == pytest.approx(float(np.float32(0.3)), rel=1e-12, abs=0)


# -- the policy ---------------------------------------------------------------------------------------


def test_a_model_for_other_tiers_is_refused():
    with pytest.raises(ValueError, match=r"^the quality model covers 2 tiers; the cascade has 3$"):
        CascadeRoutingPolicy(TIERS, Fixed([0.5] * 3), Scorer(0.5),  # type: ignore[arg-type]
                             QualityModel(np.array([0.1, 1.0]), *(np.array([IDENTITY] * 2),) * 2,
                                          np.array([IDENTITY, IDENTITY]), np.array([IDENTITY, IDENTITY]), np.zeros((2, 3))),
                             lam=0.1, kappa=0.0)
    with pytest.raises(ValueError, match=r"^the quality model covers 3 tiers; the cascade has 3$"):
        CascadeRoutingPolicy(TIERS, Fixed([0.5] * 3), Scorer(0.5),  # type: ignore[arg-type]
                             QualityModel(np.array([0.1, 0.4, 1.0]), *(np.array([IDENTITY] * 3),) * 2,
                                          np.array([IDENTITY]), np.array([IDENTITY]), np.zeros((1, 3))),
                             lam=0.1, kappa=0.0)  # costs for 3 tiers, post-call calibrators for 1 judged tier


def test_the_policy_keeps_its_settings():
    p = policy([0.5] * 3, lam=1, kappa=0, signals=(HedgingSignal(),), combine="any", max_concurrency=3)
    assert (p.lam, p.kappa, p.combine, p.max_concurrency) == (1.0, 0.0, "any", 3)
    assert [s.name for s in p.signals] == ["hedging"]
    assert policy([0.5] * 3).max_concurrency == 8 and policy([0.5] * 3).combine == "all"


def test_an_estimator_that_gives_other_tiers_than_the_cascades_is_an_error_not_a_choice():
    model = QualityModel(np.array([0.1, 0.4, 1.0]), *(np.array([IDENTITY] * 4),) * 2, np.array([IDENTITY] * 2),
                         np.array([IDENTITY] * 2), np.zeros((2, 3)))
    p = CascadeRoutingPolicy(TIERS, Fixed([0.9, 0.1, 0.1, 0.1]), Scorer(0.5), model, lam=0.1, kappa=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        p.choose(ask())


def test_a_cheap_start_says_its_value_word_for_word():
    # E2 = 0.9 - 0.5 = 0.4; E1 = max(0.6, 0.4) - 0.2 = 0.4; E0 = max(0.7, 0.4) - 0.05 = 0.65
    choice = policy([0.7, 0.6, 0.9]).choose(ask())
    assert choice == Choice("fast", "cascade routing: estimated quality fast=0.70, mid=0.60, strong=0.90; λ=0.5; "
                                    "start at 'fast' (value 0.65)", 0.65)


def test_each_skipped_tier_is_named_with_its_estimate_and_value():
    # E2 = 0.9 - 0.2 = 0.7; E1 = 0.7 - 0.08 = 0.62; E0 = 0.62 - 0.02 = 0.6
    choice = policy([0.1, 0.2, 0.9], lam=0.2).choose(ask())
    assert choice == Choice("strong", "cascade routing: estimated quality fast=0.10, mid=0.20, strong=0.90; λ=0.2; "
                                      "skipped 'fast': estimated quality 0.10, value 0.60 < 0.70 starting at 'strong'; "
                                      "skipped 'mid': estimated quality 0.20, value 0.62 < 0.70 starting at 'strong'", 0.7)
    # E2 = 0.35; E1 = 0.8 - 0.2 = 0.6; E0 = 0.6 - 0.05 = 0.55: only the cheap tier is skipped
    choice = policy([0.1, 0.8, 0.85]).choose(ask())
    assert choice == Choice("mid", "cascade routing: estimated quality fast=0.10, mid=0.80, strong=0.85; λ=0.5; "
                                   "skipped 'fast': estimated quality 0.10, value 0.55 < 0.60 starting at 'mid'", 0.6)
    assert policy([0.1234567, 0.8, 0.85], lam=0.123456).choose(ask()).score == round(0.8 - 0.123456 * 0.4, 4)


def test_the_choice_shows_calibrated_estimates():
    choice = policy([0.5, 0.5, 0.5], pre_y=((0.0, 0.5), (0.0, 1.0), (0.0, 2.0)), lam=0.01).choose(ask())
    assert choice.reason.startswith("cascade routing: estimated quality fast=0.25, mid=0.50, strong=1.00; λ=0.01;")
    assert choice.tier == "strong"


def test_the_mid_tiers_answer_is_judged_on_its_own_calibrator_against_the_strong_tiers_value():
    # values [0.55, 0.6, 0.35]; mid: halve(sigmoid(logit 0.6 + logit 0.8)) = 0.5 · 6/7 = 0.4286 >= 0.35
    p = policy([0.1, 0.8, 0.85])
    request = ask("what is 2 + 2?")
    verdict = p.judge(request, Answer("The answer is 4.", finish_reason="length"), On("mid"))
    assert verdict.accepted is True and verdict.confidence == pytest.approx(3 / 7)
    assert verdict.signals == (("estimate", round(3 / 7, 6)),)
    assert verdict.reason == ("estimated quality 0.43 (scorer 0.6) >= value of escalating to 'strong' 0.35 "
                              "(estimated quality 0.85, λ=0.5); accepted")
    assert p.scorer.asked == [("what is 2 + 2?", "The answer is 4.", "length")]  # type: ignore[attr-defined]
    # at p = 0.5, the cheap tier's answer: its own calibrator (identity, the scorer alone) and the mid tier's value
    p = policy([0.1, 0.8, 0.85], p=0.5)
    verdict = p.judge(request, Answer("The answer is 4."), On("fast"))
    assert verdict.accepted is False and verdict.confidence == pytest.approx(0.5)
    assert verdict.reason == ("estimated quality 0.50 (scorer 0.5) < value of escalating to 'mid' 0.60 "
                              "(estimated quality 0.80, λ=0.5); escalate")
    assert p.judge(request, Answer("The answer is 4."), On("mid")).confidence == pytest.approx(0.4)  # 0.5 · 0.8


def test_an_answer_without_text_keeps_the_calibrated_pre_call_estimate():
    p = policy([0.5, 0.5, 0.5], pre_y=((0.0, 1.6), (0.0, 1.0), (0.0, 1.0)), lam=0.1)
    # quality [0.8, 0.5, 0.5]; E2 = 0.4, E1 = 0.5 - 0.04 = 0.46
    verdict = p.judge(ask(), Answer("", (("add", "{}"),)), On("fast"))
    assert verdict.accepted is True and verdict.confidence == pytest.approx(0.8)
    assert verdict.reason == ("estimated quality 0.80 (no text to score: pre-call estimate) >= value of escalating to "
                              "'mid' 0.46 (estimated quality 0.50, λ=0.1); accepted")
    assert p.scorer.asked == []  # type: ignore[attr-defined]


def test_a_tier_outside_the_cascade_is_judged_as_the_first_and_the_last_tier_is_not_judged():
    p = policy([0.1, 0.8, 0.85])
    unknown = p.judge(ask(), Answer("x"), On("elsewhere"))
    no_tier = p.judge(ask(), Answer("x"), None)
    fast = p.judge(ask(), Answer("x"), On("fast"))
    assert unknown == no_tier == fast and "escalating to 'mid'" in fast.reason
    last = p.judge(ask(), Answer("x"), On("strong"))
    assert last == type(last)(True, None, (), "last tier: not judged")


def test_a_signal_that_rejects_is_the_verdict_and_one_that_passes_leaves_it_to_the_value_rule():
    p = policy([0.1, 0.8, 0.85], signals=(ArithmeticSignal(),))
    wrong = p.judge(ask(), Answer("2 + 2 = 5"), On("mid"))
    assert (wrong.accepted, wrong.reason) == (False, "arithmetic=0; arithmetic below threshold")
    right = p.judge(ask(), Answer("2 + 2 = 4"), On("mid"))
    assert right.accepted is True and right.signals == (("estimate", round(3 / 7, 6)),)
    assert right.reason.startswith("estimated quality 0.43 (scorer 0.6) >= ")


def test_the_signals_are_given_the_request_and_the_probe():
    from steproute.policies.confidence import JudgeSignal, SchemaSignal

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = StepRequest("s", [{"role": "user", "content": "n?"}], response_schema=schema)
    p = policy([0.1, 0.8, 0.85], signals=(SchemaSignal(),))
    assert p.judge(request, Answer('{"n": "two"}'), On("mid")).reason == "schema=0; schema below threshold"
    assert p.judge(request, Answer('{"n": 2}'), On("mid")).reason.startswith("estimated quality 0.43 (scorer 0.6) >= ")

    class Judging(On):
        def ask(self, tier: str, messages: Any, max_tokens: int) -> str:
            return self.reply

    probe = Judging("mid")
    probe.reply = "no"  # type: ignore[attr-defined]
    judged = policy([0.1, 0.8, 0.85], signals=(JudgeSignal("fast"),))
    assert judged.judge(request, Answer('{"n": 2}'), probe).reason == "judge=0; judge below threshold"
    probe.reply = "yes"  # type: ignore[attr-defined]
    assert judged.judge(request, Answer('{"n": 2}'), probe).accepted is True


def test_estimates_are_made_once_per_request_until_256_others_were_decided():
    p = policy([0.1, 0.8, 0.85])
    estimator: Fixed = p.estimator  # type: ignore[assignment]
    requests = [ask(f"q{i}") for i in range(257)]
    for request in requests[:256]:
        p.choose(request)
    assert estimator.calls == 256
    p.judge(requests[0], Answer("x"), On("fast"))
    p.judge(requests[255], Answer("x"), On("fast"))
    assert estimator.calls == 256  # all 256 are still known
    p.choose(requests[256])  # the 257th: the book is emptied first
    p.judge(requests[256], Answer("x"), On("fast"))
    assert estimator.calls == 257
    p.judge(requests[0], Answer("x"), On("fast"))
    assert estimator.calls == 258
    raw, _, values = p.values(requests[0])
    assert estimator.calls == 258
    np.testing.assert_allclose(raw, [0.1, 0.8, 0.85])
    np.testing.assert_allclose(values, [0.55, 0.6, 0.35])


# -- from an artefact ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artefact_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_artefact(tmp_path_factory.mktemp("croute"))


def test_an_artefact_gives_its_labels_lambda_kappa_and_arrays(artefact_path: Path):
    from steproute.policies._artefact import load_artefact
    from steproute.policies.classifier import ClassifierPolicy

    artefact = load_artefact(artefact_path, "cascade_routing")
    a, meta = artefact.arrays, artefact.meta
    p = CascadeRoutingPolicy.of(artefact)
    assert p.tiers == artefact.labels == ("cheap", "strong")
    assert (p.lam, p.kappa) == (float(meta["lambda"]), float(meta["kappa"]))
    assert (p.signals, p.combine) == ((), "all")
    for mine, theirs in ((p.model.costs, a["costs"]), (p.model.pre_x, a["pre_x"]), (p.model.pre_y, a["pre_y"]),
                         (p.model.post_x, a["post_x"]), (p.model.post_y, a["post_y"]), (p.model.mix, a["post_mix"])):
        np.testing.assert_array_equal(mine, theirs)
    assert p.model.costs.dtype == np.float64
    assert p.scorer.meta == meta["scorer"] and p.scorer.coef == tuple(map(float, a["scorer.coef"]))
    part = {k.partition(".")[2]: v for k, v in a.items() if k.startswith("classifier.")}
    classifier = ClassifierPolicy(Artefact("classifier", meta["classifier"], part))
    np.testing.assert_array_equal(p.estimator.scores(ask()), classifier.scores(ask()))  # type: ignore[attr-defined]
    # an array's name is what follows its part's prefix, dots and all
    extra = Artefact(artefact.policy, meta, {**a, "scorer.old.intercept": np.array([5.0]), "classifier.old.coef": a["costs"]})
    kept = CascadeRoutingPolicy.of(extra)
    assert kept.scorer.intercept == float(a["scorer.intercept"][0])
    np.testing.assert_array_equal(kept.estimator.scores(ask()), p.estimator.scores(ask()))  # type: ignore[attr-defined]
    given = CascadeRoutingPolicy.of(artefact, ("fast", "strong"), lam=0.75, signals=(HedgingSignal(),), combine="any")
    assert (given.tiers, given.lam, given.kappa, given.combine) == (("fast", "strong"), 0.75, p.kappa, "any")
    assert [s.name for s in given.signals] == ["hedging"]


def test_load_passes_its_tiers_lambda_signals_and_combine_on(artefact_path: Path):
    p = CascadeRoutingPolicy.load(str(artefact_path), ("fast", "strong"), lam=0.75, signals=(HedgingSignal(),),
                                  combine="any")
    assert (p.tiers, p.lam, p.combine, [s.name for s in p.signals]) == (("fast", "strong"), 0.75, "any", ["hedging"])
    default = CascadeRoutingPolicy.load(str(artefact_path))
    assert default.tiers == ("cheap", "strong") and default.combine == "all" and default.signals == ()


def test_load_refuses_another_kind_and_names_the_file_when_the_content_does_not_fit(artefact_path: Path, tmp_path: Path):
    other = tmp_path / "e.steproute"
    save_artefact(Artefact("ensemble", {"labels": ["cheap", "strong"], "threshold": 0.5, "members": []}, {}), other)
    with pytest.raises(ArtefactError, match=f"^{other}: a 'ensemble' artefact, not a 'cascade_routing' one$"):
        CascadeRoutingPolicy.load(str(other))
    with pytest.raises(ArtefactError, match=f"^{artefact_path}: the artefact does not fit its policy \\(ValueError: "
                                            "the quality model covers 2 tiers; the cascade has 3\\)$"):
        CascadeRoutingPolicy.load(str(artefact_path), TIERS)
