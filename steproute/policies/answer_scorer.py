"""Checks that read an answer's text: the ``arithmetic`` verifier and the trained answer
scorer of the ``cascade`` policy (FrugalGPT-style).

Features of the question and of the cheap tier's answer go through a logistic regression that
``steproute train --policy cascade`` fits on recorded cheap answers and whether they were right
(:mod:`steproute.evaluation._cascade`). The features are general, not tied to one benchmark:
does the answer's arithmetic check out, does it state a final answer, does it use the
question's numbers, does it hedge, how long is it. Running it is a dot product over
:data:`FEATURES`: no scikit-learn.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import re
from dataclasses import dataclass
from typing import Any

from steproute.policies.base import learn_extra_missing
from steproute.policies.confidence import HEDGES, Answer
from steproute.policies.features import routing_text
from steproute.types import StepRequest

__all__ = ["FEATURES", "AnswerScorer", "ArithmeticSignal", "ScorerSignal", "acceptance", "answer_features", "check_arithmetic"]

FEATURES = (
    "arithmetic_wrong_any", "arithmetic_wrong", "arithmetic_checked", "final_marker", "final_fractional",
    "final_negative", "final_repeated", "answer_chars", "question_chars", "question_numbers_used",
    "question_numbers", "hedges", "answer_lines", "number_density", "truncated", "length_ratio",
)

_NUM = r"\d[\d,]*(?:\.\d+)?"
_ANNOTATED = re.compile(r"<<([^=<>]{1,200})=([^<>]{1,40})>>")
_INLINE = re.compile(r"((?:\(?-?\$?" + _NUM + r"%?\)?\s*[-+*/x×÷]\s*)+\(?-?\$?" + _NUM + r"%?\)?)\s*=\s*\$?(-?" + _NUM + r")")
_NUMBER = re.compile(r"-?" + _NUM)
_FINAL = re.compile(r"(?:####|\bthe (?:final )?answer is\b|\banswer:|\\boxed\{|\btherefore\b|\bso the total\b)", re.I)
_FINAL_VALUE = re.compile(r"(?:####|\bthe (?:final )?answer is|\banswer:|\\boxed\{)\s*:?\s*\$?\s*(-?" + _NUM + ")", re.I)
_HEDGE = re.compile("|".join(HEDGES), re.I)
_OPS: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").replace("%", "").strip())
    except ValueError:
        return None


def _evaluate(expression: str) -> float | None:
    """An arithmetic expression's value (+ - * / and brackets only), or ``None``."""
    cleaned = re.sub(r"(?<=\d),(?=\d{3})", "", expression).replace("$", "").replace("%", "")
    cleaned = cleaned.replace("×", "*").replace("÷", "/").replace("x", "*")
    if len(cleaned) > 200 or not re.fullmatch(r"[\d.+\-*/() ]+", cleaned):
        return None
    try:
        tree = ast.parse(cleaned, mode="eval").body
    except (SyntaxError, ValueError):
        return None

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](walk(node.left), walk(node.right)))
        raise ValueError("not arithmetic")

    try:
        return walk(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def check_arithmetic(text: str) -> tuple[int, int]:
    """``(checked, wrong)``: the answer's stated calculations (``<<4*20=80>>`` and
    ``4 x 20 = 80``) and how many of them are wrong.

    Example:
        >>> check_arithmetic("So 4 x 20 = 80 and 80 + 5 = 86.")
        (2, 1)
    """
    checked = wrong = 0
    for left, right in (*_ANNOTATED.findall(text), *_INLINE.findall(text)):
        value, stated = _evaluate(left), _number(right)
        if value is None or stated is None:
            continue
        checked += 1
        if abs(value - stated) > 1e-6 * max(1.0, abs(stated)) and abs(round(value, 2) - stated) > 0.011:
            wrong += 1
    return checked, wrong


def answer_features(question: str, answer: str, finish_reason: str | None = None) -> list[float]:
    """The scorer's inputs, in the order of :data:`FEATURES`."""
    checked, wrong = check_arithmetic(answer)
    final = _FINAL_VALUE.findall(answer)
    value = _number(final[-1]) if final else None
    numbers = [_number(n) for n in _NUMBER.findall(answer)]
    earlier = [n for n in numbers[-8:-1] if n is not None]
    question_numbers = {n.replace(",", "") for n in _NUMBER.findall(question)}
    flat = answer.replace(",", "")
    used = sum(1 for n in question_numbers if n in flat) / max(1, len(question_numbers))
    return [
        float(wrong > 0), float(wrong), math.log1p(checked), float(bool(_FINAL.search(answer))),
        float(value is not None and value != int(value)), float(value is not None and value < 0),
        float(value is not None and value in earlier), math.log1p(len(answer)), math.log1p(len(question)), used,
        math.log1p(len(question_numbers)), float(bool(_HEDGE.search(answer))), math.log1p(answer.count("\n")),
        100.0 * len(numbers) / max(1, len(answer)), float(finish_reason == "length"),
        math.log1p(len(answer)) - math.log1p(len(question)),
    ]


def acceptance(probability: float, length: float, length_scale: float, cost_exponent: float) -> float:
    """The score a cascade compares with its threshold: the risk of keeping the answer,
    ``1 - probability``, discounted when escalating would be dear. A long exchange costs more
    to redo on a stronger tier, so the same risk is worth less of an escalation there:
    ``1 - (1 - p) / (length / length_scale) ** cost_exponent`` (``cost_exponent`` 0: ``p``).

    Example:
        >>> acceptance(0.8, 100, 100, 0.5), round(acceptance(0.8, 400, 100, 0.5), 3)
        (0.8, 0.9)
    """
    if cost_exponent == 0:
        return probability
    return 1.0 - (1.0 - probability) / (max(length, 1.0) / length_scale) ** cost_exponent


@dataclass(frozen=True)
class AnswerScorer:
    """A fitted scorer: standardised features → logistic regression → P(answer is right),
    then :func:`acceptance` weighs the risk by what an escalation would cost."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    """The calibrated acceptance threshold (``steproute train`` picks it)."""
    meta: dict[str, Any]
    length_scale: float = 1.0
    """Mean characters of question plus answer in training."""
    cost_exponent: float = 0.0
    """How much a long (dear to escalate) exchange lowers the risk counted; chosen in training."""

    def probability(self, question: str, answer: str, finish_reason: str | None = None) -> float:
        """P(the answer is right), by the logistic regression alone."""
        z = self.intercept
        for x, m, s, w in zip(answer_features(question, answer, finish_reason), self.mean, self.scale, self.coef, strict=True):
            z += w * (x - m) / s
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def score(self, question: str, answer: str, finish_reason: str | None = None) -> float:
        """The acceptance score the threshold applies to."""
        return acceptance(self.probability(question, answer, finish_reason), len(question) + len(answer),
                          self.length_scale, self.cost_exponent)

    @classmethod
    def of(cls, artefact: Any) -> AnswerScorer:
        """The scorer held by a loaded ``cascade`` artefact."""
        a, meta = artefact.arrays, artefact.meta
        return cls(tuple(map(float, a["mean"])), tuple(map(float, a["scale"])), tuple(map(float, a["coef"])),
                   float(a["intercept"][0]), artefact.threshold, dict(meta), float(meta.get("length_scale", 1.0)),
                   float(meta.get("cost_exponent", 0.0)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AnswerScorer:
        """Read a ``cascade`` artefact. Raises :class:`~steproute.policies._artefact.ArtefactError`."""
        try:
            from steproute.policies._artefact import ArtefactError, built, load_artefact
        except ImportError as exc:  # a plain install: the artefact's arrays need numpy
            raise learn_extra_missing("signal 'scorer'", exc) from None

        artefact = load_artefact(path, "cascade")
        features = artefact.meta.get("features")
        names = tuple(features) if isinstance(features, list) else ()
        if names != FEATURES or artefact.arrays["mean"].size != len(FEATURES):
            raise ArtefactError(f"{os.fspath(path)}: the scorer was trained on other features "
                                f"({len(names)}, this steproute computes {len(FEATURES)}); train it again")
        return built(path, lambda: cls.of(artefact))


@dataclass(frozen=True)
class ScorerSignal:
    """The trained scorer's acceptance score: the probability that the answer is right, its
    risk weighed by the cost of an escalation (see :class:`AnswerScorer`)."""

    scorer: AnswerScorer
    threshold: float
    weight: float = 1.0
    name: str = "scorer"
    calls_models: bool = False

    def score(self, request: StepRequest, answer: Answer, probe: Any) -> float | None:
        if not answer.text:
            return None
        query, _, _ = routing_text(request)
        return self.scorer.score(query, answer.text, answer.finish_reason)


@dataclass(frozen=True)
class ArithmeticSignal:
    """A verifier: 0 when a calculation the answer states is wrong (``12 + 30 = 32``), 1 when
    every one checks out, ``None`` when it states none.

    Example:
        >>> ArithmeticSignal().score(None, Answer("12 + 30 = 32"), None), ArithmeticSignal().score(None, Answer("42"), None)
        (0.0, None)
    """

    threshold: float = 0.5
    weight: float = 1.0
    name: str = "arithmetic"
    calls_models: bool = False

    def score(self, request: Any, answer: Answer, probe: Any) -> float | None:
        checked, wrong = check_arithmetic(answer.text)
        if not checked:
            return None
        return 0.0 if wrong else 1.0
