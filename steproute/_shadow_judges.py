"""The judges of shadow mode: which of two answers to one call is better, the live tier's or
the candidate's (:mod:`steproute.shadow`).

Each judge returns a :class:`Judgement`: the candidate's ``verdict`` against the live answer
(``win``, ``tie``, ``loss``), its ``quality`` in [0, 1] (0 for a loss, else 1: the candidate
was at least as good) and the judge's name. The live answer is the reference: two answers that
differ with no way to tell which is better count as a loss for the candidate.

- ``exact``: the same text (and the same tool calls, as sent);
- ``normalised``: the same text once case, Unicode forms, spaces and closing punctuation are
  normalised, or the same JSON value when both parse;
- ``final_number``: the same final number (the last number in each answer, commas dropped:
  ``"4 + 9 = 13"`` ties ``"13"``), as a maths step is graded; a live answer with no number is
  judged ``normalised`` (the entry's ``judge`` says so);
- ``json_schema``: validity against the call's response schema (valid beats invalid; both the
  same: a tie); a call without a schema is judged ``normalised``;
- ``tools``: tool-call turns, whatever the configured judge: the same function names with equal
  parsed arguments (order free); otherwise valid calls beat invalid ones;
- ``llm``: a model through a tier is asked which answer is better (``A``, ``B`` or ``TIE``),
  the live answer shown as A; its reply is parsed leniently, an unreadable one raises
  :class:`JudgeUnreadable`.

Example:
    >>> from steproute.policies.confidence import Answer
    >>> judge_answers("normalised", Answer("Paris."), Answer("  paris"), None).verdict
    'tie'
    >>> judge_answers("exact", Answer("Paris"), Answer("Lyon"), None).verdict
    'loss'
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steproute.policies.confidence import Answer, parse_json_answer

__all__ = ["MAX_JUDGED_CHARS", "JudgeUnreadable", "Judgement", "judge_answers", "judge_prompt", "parse_verdict",
           "tool_calls_key"]

MAX_JUDGED_CHARS = 4000
"""Characters of the question and of each answer shown to an ``llm`` judge."""

Ask = Callable[[str, Sequence[Mapping[str, Any]], int], tuple[str, float]]
"""``ask(tier, messages, max_tokens)`` → the judging model's reply and what it cost."""


@dataclass(frozen=True)
class Judgement:
    """The candidate's answer judged against the live one."""

    verdict: str
    """``win``, ``tie`` or ``loss``: the candidate against the live answer."""
    judge: str
    """The judge that decided (``tools`` for a tool-call turn, whatever was configured)."""
    cost_usd: float = 0.0
    """What judging cost (an ``llm`` judge's call)."""

    @property
    def quality(self) -> float:
        """The candidate's quality for the decision log: 0 for a loss, else 1."""
        return 0.0 if self.verdict == "loss" else 1.0


class JudgeUnreadable(ValueError):
    """An ``llm`` judge's reply names no verdict (the reply is never shown: it may quote the call)."""


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).strip(" .!?;:'\"`")


def _json(answer: Answer) -> tuple[bool, Any]:
    try:
        return True, parse_json_answer(answer)
    except (ValueError, IndexError):
        return False, None


def tool_calls_key(answer: Answer) -> tuple[str, ...] | None:
    """The answer's tool calls as sorted canonical ``name(arguments)`` strings (``None``: an
    argument that is not a JSON object)."""
    calls = []
    for name, arguments in answer.tool_calls:
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        calls.append(f"{name}({json.dumps(parsed, sort_keys=True, separators=(',', ':'))})")
    return tuple(sorted(calls))


def _valid_tools(answer: Answer, offered: set[str] | None) -> bool:
    key = tool_calls_key(answer)
    return bool(answer.tool_calls) and key is not None and (
        offered is None or all(name in offered for name, _ in answer.tool_calls))


def _ordered(candidate_better: bool, live_better: bool) -> str:
    return "win" if candidate_better and not live_better else "loss" if live_better and not candidate_better else "tie"


def judge_answers(judge: str, live: Answer, candidate: Answer, schema: Mapping[str, Any] | None, *,
                  offered_tools: set[str] | None = None, question: str = "", ask: Ask | None = None,
                  judge_tier: str | None = None) -> Judgement:
    """Judge ``candidate`` against ``live`` (see the module's description of each judge).

    Raises:
        JudgeUnreadable: an ``llm`` judge's reply names no verdict.
        ValueError: an unknown judge, or ``llm`` without ``ask`` and ``judge_tier``.
    """
    if live.tool_calls or candidate.tool_calls:  # a tool-call turn: judged by its calls
        key = tool_calls_key(live)
        if key is not None and live.tool_calls and key == tool_calls_key(candidate):
            return Judgement("tie", "tools")
        live_ok, candidate_ok = _valid_tools(live, offered_tools), _valid_tools(candidate, offered_tools)
        return Judgement("win" if candidate_ok and not live_ok else "tie" if not (live_ok or candidate_ok) else "loss",
                         "tools")
    if judge == "json_schema":
        if schema is None:
            judge = "normalised"
        else:
            return Judgement(_ordered(_schema_valid(candidate, schema), _schema_valid(live, schema)), "json_schema")
    if judge == "final_number":
        live_number = final_number(live.text)
        if live_number is not None:
            return Judgement("tie" if final_number(candidate.text) == live_number else "loss", "final_number")
        judge = "normalised"
    if judge == "exact":
        return Judgement("tie" if live.text == candidate.text else "loss", "exact")
    if judge == "normalised":
        live_json, candidate_json = _json(live), _json(candidate)
        if live_json[0] and candidate_json[0]:
            return Judgement("tie" if live_json[1] == candidate_json[1] else "loss", "normalised")
        return Judgement("tie" if _normal(live.text) == _normal(candidate.text) else "loss", "normalised")
    if judge == "llm":
        if ask is None or judge_tier is None:
            raise ValueError("the llm judge needs a tier to ask")
        reply, cost = ask(judge_tier, judge_prompt(question, live, candidate), 8)
        verdict = parse_verdict(reply)
        return Judgement({"A": "loss", "B": "win", "TIE": "tie"}[verdict], "llm", cost)
    raise ValueError(f"unknown judge {judge!r}")


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def final_number(text: str) -> float | None:
    """The last number in ``text`` (thousands commas dropped), or ``None``.

    Example:
        >>> final_number("3 notebooks at $1,250.50 each"), final_number("none")
        (1250.5, None)
    """
    found = _NUMBER.findall(text.replace(",", ""))
    return float(found[-1]) if found else None


def _schema_valid(answer: Answer, schema: Mapping[str, Any]) -> bool:
    import jsonschema

    ok, value = _json(answer)
    if not ok:
        return False
    validator = jsonschema.validators.validator_for(schema)(schema)
    return next(validator.iter_errors(value), None) is None


def _shown(answer: Answer) -> str:
    text = answer.text
    if answer.tool_calls:
        text += "\n" + json.dumps([{"name": n, "arguments": a} for n, a in answer.tool_calls])
    return text[:MAX_JUDGED_CHARS]


def judge_prompt(question: str, live: Answer, candidate: Answer) -> list[dict[str, str]]:
    """The ``llm`` judge's messages: the question, answer A (live), answer B (candidate).

    Example:
        >>> judge_prompt("2+2?", Answer("4"), Answer("5"))[-1]["content"].splitlines()[-1]
        'Which answer is better? Reply with exactly one word: A, B or TIE.'
    """
    return [
        {"role": "system", "content": "You compare two answers to the same request and say which is better: "
                                      "more correct, complete and useful. Ignore length and style."},
        {"role": "user", "content": f"Request:\n{question[:MAX_JUDGED_CHARS]}\n\nAnswer A:\n{_shown(live)}\n\n"
                                    f"Answer B:\n{_shown(candidate)}\n\n"
                                    "Which answer is better? Reply with exactly one word: A, B or TIE."},
    ]


_VERDICT = re.compile(r"\b(tie|equal|same|both|neither|a|b)\b")
_WORDS = {"tie": "TIE", "equal": "TIE", "same": "TIE", "both": "TIE", "neither": "TIE", "a": "A", "b": "B"}


def parse_verdict(reply: str) -> str:
    """``A``, ``B`` or ``TIE`` from a judge's reply: the first verdict word, after Markdown,
    quotes and an ``Answer``/``Verdict:`` prefix are dropped.

    Example:
        >>> parse_verdict("**Answer B**"), parse_verdict("tie."), parse_verdict("Verdict: A")
        ('B', 'TIE', 'A')

    Raises:
        JudgeUnreadable: no verdict word (the reply is not in the message).
    """
    text = re.sub(r"[*_`#>\"'()\[\]]", " ", reply[:200]).casefold()
    text = re.sub(r"\b(answer|verdict|option|response)\b\s*:?", " ", text)
    match = _VERDICT.search(text)
    if match is None:
        raise JudgeUnreadable(f"the judge's reply ({len(reply)} characters) names no verdict")
    return _WORDS[match.group(1)]
