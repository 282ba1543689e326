"""A feedback entry of the decision log, checked: the one code path behind
``StepRouter.feedback()`` and ``steproute feedback``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["QUALITY_WORDS", "deliver_feedback", "feedback_entry", "parse_quality"]

QUALITY_WORDS = {"good": 1.0, "bad": 0.0}
"""Words ``steproute feedback`` takes for a quality, besides a number in [0, 1]."""


def feedback_entry(decision_id: str, quality: float, **extra: Any) -> dict[str, Any]:
    """The decision-log line that attaches ``quality`` (a number in [0, 1]) to a decision.

    Raises:
        ValueError: ``decision_id`` is not a non-empty string, ``quality`` is not a number in
            [0, 1] (NaN and infinities included), or an extra key is ``type``, ``id`` or ``quality``.

    Example:
        >>> feedback_entry("d-1", 1, rater="alice")
        {'type': 'feedback', 'id': 'd-1', 'quality': 1.0, 'rater': 'alice'}
    """
    if not isinstance(decision_id, str) or not decision_id:
        raise ValueError("feedback: the decision id must be a non-empty string (a Decision.id)")
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 0 <= quality <= 1:
        raise ValueError(f"feedback quality must be a number in [0, 1], got {quality!r}")
    for key in ("type", "id", "quality"):
        if key in extra:
            raise ValueError(f"feedback: {key!r} is set by steproute and cannot be an extra key")
    return {"type": "feedback", "id": decision_id, "quality": float(quality), **extra}


def parse_quality(text: str) -> float:
    """A quality as typed on the command line: ``good`` (1), ``bad`` (0) or a number in [0, 1].

    Raises:
        ValueError: anything else (``nan``, ``inf``, ``1.5``, ``great``, hexadecimal).

    Example:
        >>> parse_quality("good"), parse_quality("0.75")
        (1.0, 0.75)
    """
    word = text.strip().lower()
    if word in QUALITY_WORDS:
        return QUALITY_WORDS[word]
    try:
        value = float(word)
    except ValueError:
        raise ValueError("QUALITY must be good, bad or a number in [0, 1]") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError("QUALITY must be good, bad or a number in [0, 1]")
    return value or 0.0  # -0 is 0


def deliver_feedback(entry: dict[str, Any], log: Any, learn: Callable[[Mapping[str, Any]], bool]) -> None:
    """Hand a feedback entry to the online policies (``learn``), then write it to the decision log (``log``, a
    :class:`~steproute.decision_log.DecisionLog` or ``None``).

    Raises:
        ValueError: no log, and no online policy learnt from it (the feedback would be lost).

    Example:
        >>> deliver_feedback(feedback_entry("d-1", 1), None, lambda entry: True)
    """
    learnt = learn(entry)
    if log is not None:
        log.write(entry)
    elif not learnt:
        raise ValueError("feedback needs a decision log: StepRouter(..., decision_log='decisions.jsonl')")
