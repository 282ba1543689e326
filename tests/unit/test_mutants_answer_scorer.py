"""Tests that kill mutmut mutants of steproute/policies/answer_scorer.py (see docs/architecture.md, "Mutation testing").

Stated calculations are written ``<<((…))=…>>`` where only the annotated form may read them (the
inline pattern cannot match across two brackets), so each count is of one reading.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from steproute.policies._artefact import Artefact, ArtefactError, save_artefact
from steproute.policies.answer_scorer import (
    FEATURES,
    AnswerScorer,
    ArithmeticSignal,
    ScorerSignal,
    acceptance,
    answer_features,
    check_arithmetic,
)
from steproute.policies.confidence import Answer
from steproute.types import StepRequest

log1p = math.log1p


@pytest.mark.parametrize(("text", "counts"), [
    ("<<((7+2))=9>>", (1, 0)), ("<<((7-2))=5>>", (1, 0)), ("<<((2-7))=-5>>", (1, 0)), ("<<((7-2))=-5>>", (1, 1)),
    ("<<((7*2))=14>>", (1, 0)), ("<<((7/2))=3.5>>", (1, 0)), ("<<((2/8))=4>>", (1, 1)),
    ("<<((-4*5))=-20>>", (1, 0)), ("<<((-4*5))=20>>", (1, 1)),
    ("<<((+4*5))=20>>", (0, 0)),  # unary plus is not read
    ("<<((1e3*2))=2000>>", (0, 0)),  # exponent notation is not arithmetic here
    ("<<((2**3))=8>>", (0, 0)), ("<<((7//2))=3>>", (0, 0)), ("<<()=5>>", (0, 0)),  # nor powers, floor division, tuples
    ("<<((1/0))=0>>", (0, 0)), ("<<((4*))=20>>", (0, 0)), ("<<((a*5))=20>>", (0, 0)),
    ("<<((1,000*2))=2000>>", (1, 0)), ("<<((1,00*2))=200>>", (0, 0)),
    ("<<(($4*5))=20>>", (1, 0)), ("<<((50%*2))=100>>", (1, 0)),
    ("<<((4×5))=20>>", (1, 0)), ("<<((20÷4))=5>>", (1, 0)), ("<<((4x5))=20>>", (1, 0)),
    ("<<((4*5))=$20>>", (1, 0)), ("<<((4*5))=20%>>", (1, 0)), ("<<((4*5))=2,0>>", (1, 0)), ("<<((4*5))=twenty>>", (0, 0)),
    # the tolerance: exact to a millionth of the value, or right once rounded to cents
    ("<<((1/3))=0.33>>", (1, 0)), ("<<((1/3))=0.34>>", (1, 0)), ("<<((1/3))=0.3433>>", (1, 1)), ("<<((1/3))=0.35>>", (1, 1)),
    ("<<((1-1))=0.011>>", (1, 0)), ("<<((1-1))=0.0111>>", (1, 1)),
    ("<<((20000000+15))=20000000>>", (1, 0)), ("<<((20000000+50))=20000000>>", (1, 1)),
    ("<<((-20000000-15))=-20000000>>", (1, 0)),
    ("<<((1000000+1))=1000000>>", (1, 0)), ("<<((1000000+1.5))=1000000>>", (1, 1)),  # exactly a millionth is right
    # a calculation that cannot be read is passed over, not the end of reading
    ("<<((a*5))=20>> and <<((2+2))=4>>", (1, 0)), ("<<((4*5))=x>> <<((2+2))=5>> <<((1+1))=3>>", (2, 2)),
    ("So 4 x 20 = 80 and 80 + 5 = 86.", (2, 1)),
])
def test_each_stated_calculation_is_read_and_checked(text: str, counts: tuple[int, int]):
    assert check_arithmetic(text) == counts


def test_an_inline_calculation_of_more_than_200_characters_is_not_read():
    assert check_arithmetic("1+" * 99 + "10 = 109") == (1, 0)  # 200 characters
    assert check_arithmetic("1+" * 100 + "1 = 101") == (0, 0)  # 201
    assert check_arithmetic("1+" * 98 + "1,000 = 1098") == (1, 0)  # 201 before the thousands comma goes, 200 after


def test_the_arithmetic_signal():
    s = ArithmeticSignal()
    assert s.score(None, Answer("2 + 2 = 4"), None) == 1.0
    assert s.score(None, Answer("2 + 2 = 4, 3 + 3 = 7"), None) == 0.0
    assert s.score(None, Answer("four"), None) is None


QUESTION = "Tom has 20 apples and 1,250 pears. How many?"
ANSWER = "I think it might be 5.\n20 + 1250 = 1270\nThe answer is 1,270"


def test_each_feature_of_an_answer_worked_out_by_hand():
    q, a = len(QUESTION), len(ANSWER)
    assert (q, a) == (44, 59)
    assert answer_features(QUESTION, ANSWER, "length") == pytest.approx([
        0.0, 0.0, log1p(1), 1.0, 0.0, 0.0, 1.0, log1p(a), log1p(q), 1.0, log1p(2), 1.0, log1p(2), 100 * 5 / a, 1.0,
        log1p(a) - log1p(q)], rel=1e-12)
    question = "What is 3 - 10, and 7 + 2, and 99?"
    answer = "3 - 10 = -7 and 7 + 2 = 10, so 0.5 * 3 = 1.5\n#### -7.5"
    numbers = 9  # 3 10 -7 7 2 10 0.5 3 1.5 and -7.5: ten
    assert answer_features(question, answer, "stop") == pytest.approx([
        1.0, 1.0, log1p(3), 1.0, 1.0, 1.0, 0.0, log1p(len(answer)), log1p(len(question)), 4 / 5, log1p(5), 0.0,
        log1p(1), 100 * (numbers + 1) / len(answer), 0.0, log1p(len(answer)) - log1p(len(question))], rel=1e-12)
    assert answer_features(question, answer)[FEATURES.index("truncated")] == 0.0


def test_the_final_answer_is_the_last_one_stated():
    fractional, negative, repeated = (FEATURES.index(n) for n in ("final_fractional", "final_negative", "final_repeated"))
    last = answer_features("", "The answer is 4. No: the answer is 5.5")
    assert last[fractional] == 1.0
    first = answer_features("", "The answer is 5.5. No: the answer is 4")
    assert first[fractional] == 0.0
    assert answer_features("", "Answer: $ -3")[negative] == 1.0
    assert answer_features("", "\\boxed{0}")[negative] == 0.0
    assert answer_features("", "so the total is 12")[FEATURES.index("final_marker")] == 1.0
    assert answer_features("", "therefore 12")[FEATURES.index("final_marker")] == 1.0
    assert answer_features("", "12")[FEATURES.index("final_marker")] == 0.0
    # repeated: among the seven numbers before the last
    assert answer_features("", "1 2 3 4 5 6 7 8 9 The answer is 3")[repeated] == 1.0
    assert answer_features("", "1 2 3 4 5 6 7 8 9 The answer is 2")[repeated] == 0.0
    assert answer_features("", "The answer is 5")[repeated] == 0.0
    assert answer_features("", "no final answer, 5 5")[repeated] == 0.0


def test_the_questions_numbers_are_found_in_the_answer_with_or_without_thousands_commas():
    used = FEATURES.index("question_numbers_used")
    assert answer_features("Sell 1,250 or 7,000 pears?", "1,250 pears")[used] == 0.5
    assert answer_features("Sell 1250 or 7000 pears?", "7,000 pears")[used] == 0.5


def test_short_and_empty_answers_and_questions():
    assert answer_features("5", "5") == pytest.approx([
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, log1p(1), log1p(1), 1.0, log1p(1), 0.0, 0.0, 100.0, 0.0, 0.0])
    assert answer_features("", "") == pytest.approx([0.0] * 16)


def test_acceptance_discounts_the_risk_of_a_long_exchange():
    assert acceptance(0.8, 100, 100, 0.0) == 0.8
    assert acceptance(0.8, 400, 100, 0.5) == pytest.approx(0.9)
    assert acceptance(0.8, 25, 100, 1.0) == pytest.approx(1 - 0.2 / 0.25)
    assert acceptance(0.8, 0, 100, 0.5) == pytest.approx(1 - 0.2 / math.sqrt(1 / 100))  # at least one character


def scorer(intercept: float = 0.5, coef: dict[str, float] | None = None, **kw: float) -> AnswerScorer:
    n = len(FEATURES)
    weights = tuple((coef or {}).get(name, 0.0) for name in FEATURES)
    return AnswerScorer(tuple(0.5 for _ in range(n)), tuple(2.0 for _ in range(n)), weights, intercept, 0.4, {}, **kw)


def test_the_probability_is_the_logistic_of_the_standardised_features():
    s = scorer(0.5, {"truncated": 3.0, "question_chars": -1.0})
    z = 0.5 + 3.0 * (1.0 - 0.5) / 2.0 - 1.0 * (log1p(len(QUESTION)) - 0.5) / 2.0
    assert s.probability(QUESTION, ANSWER, "length") == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)
    z = 0.5 + 3.0 * (0.0 - 0.5) / 2.0 - 1.0 * (log1p(len(QUESTION)) - 0.5) / 2.0
    assert s.probability(QUESTION, ANSWER) == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)
    # clamped at ±50: a very sure scorer does not overflow
    assert scorer(-800.0).probability("q", "a") == pytest.approx(1 / (1 + math.exp(50.0)), rel=1e-9, abs=0)
    assert scorer(-50.5).probability("q", "a") == pytest.approx(1 / (1 + math.exp(50.0)), rel=1e-9, abs=0)
    assert scorer(800.0).probability("q", "a") == 1.0
    short = AnswerScorer((0.0,) * 15, (1.0,) * 15, (0.0,) * 15, 0.0, 0.5, {})
    with pytest.raises(ValueError):
        short.probability("q", "a")


def test_the_score_weighs_the_probability_by_the_length_of_the_exchange():
    s = scorer(0.5, length_scale=25.0, cost_exponent=1.0)
    p = s.probability("q" * 40, "a" * 60, "length")
    assert s.score("q" * 40, "a" * 60, "length") == pytest.approx(1 - (1 - p) / (100 / 25), rel=1e-12)
    t = scorer(0.5, {"truncated": 2.0})
    assert t.score("q", "a", "length") == t.probability("q", "a", "length") != t.probability("q", "a")


def test_the_scorer_signal_scores_the_routing_question_and_abstains_without_text():
    s = scorer(0.5, {"truncated": 3.0, "question_chars": -1.0}, length_scale=50.0, cost_exponent=0.5)
    signal = ScorerSignal(s, 0.5)
    request = StepRequest("s", [{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}])
    assert signal.score(request, Answer(ANSWER, finish_reason="length"), None) == s.score(QUESTION, ANSWER, "length")
    assert signal.score(request, Answer(ANSWER), None) == s.score(QUESTION, ANSWER, None)
    assert signal.score(request, Answer("", (("add", "{}"),)), None) is None


def test_a_cascade_artefact_gives_its_scorer(tmp_path: Path):
    n = len(FEATURES)
    arrays = {"mean": np.arange(n, dtype=float), "scale": np.full(n, 2.0), "coef": np.linspace(-1, 1, n),
              "intercept": np.array([0.25])}
    meta = {"labels": ["cheap", "strong"], "threshold": 0.375, "features": list(FEATURES), "length_scale": 80.0,
            "cost_exponent": 0.5}
    save_artefact(Artefact("cascade", meta, arrays), tmp_path / "c.steproute")
    s = AnswerScorer.load(tmp_path / "c.steproute")
    assert s == AnswerScorer(tuple(range(n)), (2.0,) * n, tuple(np.linspace(-1, 1, n)), 0.25, 0.375, meta, 80.0, 0.5)
    plain = {k: v for k, v in meta.items() if k not in ("length_scale", "cost_exponent")}
    save_artefact(Artefact("cascade", plain, arrays), tmp_path / "d.steproute")
    d = AnswerScorer.load(str(tmp_path / "d.steproute"))
    assert (d.length_scale, d.cost_exponent) == (1.0, 0.0)


def test_a_scorer_trained_on_other_features_is_refused_naming_the_file(tmp_path: Path):
    n = len(FEATURES)

    def save(features: object, width: int) -> str:
        arrays = {"mean": np.zeros(width), "scale": np.ones(width), "coef": np.zeros(width), "intercept": np.array([0.0])}
        meta = {"labels": ["cheap", "strong"], "threshold": 0.5, **({} if features is None else {"features": features})}
        path = tmp_path / f"s{width}-{len(str(features))}.steproute"
        save_artefact(Artefact("cascade", meta, arrays), path)
        return str(path)

    def message(path: str, names: int) -> str:
        return (f"^{path}: the scorer was trained on other features \\({names}, this steproute computes {n}\\); "
                "train it again$")

    path = save(list(FEATURES[:-1]), n - 1)
    with pytest.raises(ArtefactError, match=message(path, n - 1)):
        AnswerScorer.load(path)
    path = save(list(FEATURES), n - 1)  # the right names over arrays of another width
    with pytest.raises(ArtefactError, match=message(path, n)):
        AnswerScorer.load(path)
    path = save(list(reversed(FEATURES)), n)  # the right width, other names
    with pytest.raises(ArtefactError, match=message(path, n)):
        AnswerScorer.load(path)
    path = save(None, n)  # no names at all
    with pytest.raises(ArtefactError, match=message(path, 0)):
        AnswerScorer.load(path)
    path = save("arithmetic_wrong_any", n)  # a name, not a list
    with pytest.raises(ArtefactError, match=message(path, 0)):
        AnswerScorer.load(path)


def _cascade_arrays(n: int = len(FEATURES)) -> dict[str, np.ndarray]:
    return {"mean": np.zeros(n), "scale": np.ones(n), "coef": np.zeros(n), "intercept": np.array([0.0])}


def test_an_artefact_of_another_kind_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "e.steproute"
    meta = {"labels": ["cheap", "strong"], "threshold": 0.5, "features": list(FEATURES), "members": []}
    save_artefact(Artefact("ensemble", meta, _cascade_arrays()), path)
    with pytest.raises(ArtefactError, match=f"^{path}: a 'ensemble' artefact, not a 'cascade' one$"):
        AnswerScorer.load(path)


def test_content_that_does_not_fit_the_scorer_is_an_error_naming_the_file(tmp_path: Path):
    path = tmp_path / "c.steproute"
    meta = {"labels": ["cheap", "strong"], "threshold": 0.5, "features": list(FEATURES), "length_scale": "long"}
    save_artefact(Artefact("cascade", meta, _cascade_arrays()), path)
    with pytest.raises(ArtefactError, match=f"^{path}: the artefact does not fit its policy \\(ValueError: "):
        AnswerScorer.load(path)


def test_a_plain_install_is_told_the_scorer_needs_the_learn_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sys

    monkeypatch.delitem(sys.modules, "steproute.policies._artefact")
    monkeypatch.setitem(sys.modules, "numpy", None)  # the artefact module's `import numpy` fails as without numpy
    with pytest.raises(ImportError) as caught:
        AnswerScorer.load(tmp_path / "c.steproute")
    assert str(caught.value) == "signal 'scorer' needs the 'learn' extra (numpy is not installed): pip install 'steproute[learn]'"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
