"""Confidence signals of the ``cascade`` policy: how sure can we be of one tier's answer?

Each signal scores an :class:`Answer` in [0, 1] (``None``: it does not apply, e.g. ``schema``
when no schema was asked for) and passes at its ``threshold``:

========================  ==================================================================
``logprob``               mean (or least) token probability, ``exp`` of the log-probabilities
``hedging``               0 when the answer hedges or refuses ("I'm not sure", "I cannot" ...)
``schema``                1 when the structured output parses and validates against the schema
``tools``                 1 when every tool call names an offered tool with valid arguments
``consistency``           share of ``samples`` answers that agree with this one (extra calls)
``judge``                 a model on a cheap tier answers "is this answer correct?" (extra call)
``scorer``                a trained answer scorer's probability that the answer is right
========================  ==================================================================

``arithmetic`` and ``scorer`` live in :mod:`steproute.policies.answer_scorer`.

Signals never import dispatch: the two that call models do it through a :class:`Probe` the
router lends them for the attempt being judged.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from steproute.policies.features import routing_text
from steproute.types import StepRequest

__all__ = [
    "HEDGES",
    "Answer",
    "ConsistencySignal",
    "HedgingSignal",
    "JudgeSignal",
    "LogprobSignal",
    "Probe",
    "SchemaSignal",
    "Signal",
    "ToolCallSignal",
    "answer_key",
    "parse_json_answer",
]


@dataclass(frozen=True)
class Answer:
    """One tier's answer, as the signals see it."""

    text: str
    tool_calls: tuple[tuple[str, str], ...] = ()
    """``(name, arguments as JSON text)`` per tool call."""
    logprobs: tuple[float, ...] | None = None
    """Log-probability of each generated token, when the provider sent them."""
    finish_reason: str | None = None


class Probe(Protocol):
    """Model calls a signal may make while judging one attempt (lent by the router)."""

    def samples(self, n: int) -> list[Answer]:
        """``n`` more answers to the same request from the attempt's tier (temperature > 0)."""
        ...

    def ask(self, tier: str, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> str:
        """The text ``tier`` answers to ``messages`` (temperature 0)."""
        ...


class Signal(Protocol):
    """A confidence signal: a score in [0, 1], or ``None`` when it does not apply."""

    @property
    def name(self) -> str: ...

    @property
    def threshold(self) -> float:
        """The score at which it passes."""
        ...

    @property
    def weight(self) -> float: ...

    @property
    def calls_models(self) -> bool:
        """Makes model calls (``consistency``, ``judge``): asked last, and off the event loop."""
        ...

    def score(self, request: StepRequest, answer: Answer, probe: Probe) -> float | None: ...


@dataclass(frozen=True)
class LogprobSignal:
    """Token probability: ``exp(mean logprob)`` (``statistic="mean"``) or ``exp(min logprob)``.

    Example:
        >>> LogprobSignal().score(None, Answer("4", logprobs=(-0.01, -0.2)), None)  # doctest: +ELLIPSIS
        0.90...
    """

    threshold: float = 0.6
    weight: float = 1.0
    statistic: str = "mean"
    name: str = "logprob"
    calls_models: bool = False

    def score(self, request: Any, answer: Answer, probe: Any) -> float | None:
        if not answer.logprobs:
            return None
        values = answer.logprobs
        value = min(values) if self.statistic == "min" else sum(values) / len(values)
        return math.exp(max(value, -50.0))


HEDGES = (
    r"\bI(?:'m| am) not (?:sure|certain)\b", r"\bI do(?:n't| not) know\b", r"\bI (?:cannot|can't|am unable to|'m unable to)\b",
    r"\bnot enough information\b", r"\b(?:it is|it's) (?:unclear|not clear|hard to say|difficult to (?:say|determine))\b",
    r"\bcannot be determined\b", r"\bas an AI\b", r"\bI apologi[sz]e\b", r"\bI'm sorry\b", r"\bI am sorry\b",
    r"\bmay be (?:wrong|incorrect)\b", r"\bI (?:think|guess|believe) (?:it )?(?:might|may|could)\b",
)


@dataclass(frozen=True)
class HedgingSignal:
    """0 when the answer hedges or refuses, else 1; more ``phrases`` (regexes) can be added.

    Example:
        >>> s = HedgingSignal()
        >>> s.score(None, Answer("I'm not sure, maybe 12."), None), s.score(None, Answer("12"), None)
        (0.0, 1.0)
    """

    phrases: tuple[str, ...] = ()
    threshold: float = 0.5
    weight: float = 1.0
    name: str = "hedging"
    calls_models: bool = False
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile("|".join((*HEDGES, *self.phrases)), re.I))

    def score(self, request: Any, answer: Answer, probe: Any) -> float | None:
        if not answer.text:
            return None if answer.tool_calls else 0.0
        return 0.0 if self._pattern.search(answer.text) else 1.0


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_json_answer(answer: Answer) -> Any:
    """The JSON value of a structured answer: the first tool call's arguments, else the text
    (a Markdown code fence is allowed). Raises ``ValueError`` when it is not JSON."""
    raw = answer.tool_calls[0][1] if answer.tool_calls else answer.text
    match = _FENCE.match(raw)
    return json.loads(match.group(1) if match else raw)


def _validator(schema: Mapping[str, Any]) -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


@dataclass(frozen=True)
class SchemaSignal:
    """1 when the answer parses as JSON and validates against the request's schema, else 0.

    Example:
        >>> schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        >>> request = StepRequest("x", [], response_schema=schema)
        >>> SchemaSignal().score(request, Answer('{"n": 2}'), None), SchemaSignal().score(request, Answer('{"n": "two"}'), None)
        (1.0, 0.0)
    """

    threshold: float = 0.5
    weight: float = 1.0
    name: str = "schema"
    calls_models: bool = False

    def score(self, request: StepRequest, answer: Answer, probe: Any) -> float | None:
        if request.response_schema is None:
            return None
        try:
            value = parse_json_answer(answer)
        except (ValueError, IndexError):
            return 0.0
        return 0.0 if next(_validator(request.response_schema).iter_errors(value), None) is not None else 1.0


@dataclass(frozen=True)
class ToolCallSignal:
    """1 when every tool call names an offered tool and its arguments validate; ``None`` when
    the answer calls no tool.

    Example:
        >>> tool = {"type": "function", "function": {"name": "add", "parameters": {
        ...     "type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}}}
        >>> request = StepRequest("x", [], tools=[tool])
        >>> [ToolCallSignal().score(request, Answer("", ((name, args),)), None)
        ...  for name, args in [("add", '{"a": 1}'), ("add", '{"b": 1}'), ("mul", '{"a": 1}'), ("add", "{a:")]]
        [1.0, 0.0, 0.0, 0.0]
    """

    threshold: float = 0.5
    weight: float = 1.0
    name: str = "tools"
    calls_models: bool = False

    def score(self, request: StepRequest, answer: Answer, probe: Any) -> float | None:
        if not answer.tool_calls:
            return None
        offered = {}
        for tool in request.tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                offered[function["name"]] = function.get("parameters") or {"type": "object"}
        for name, arguments in answer.tool_calls:
            if name not in offered:
                return 0.0
            try:
                value = json.loads(arguments or "{}")
            except ValueError:
                return 0.0
            if next(_validator(offered[name]).iter_errors(value), None) is not None:
                return 0.0
        return 1.0


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def answer_key(answer: Answer) -> str:
    """What two answers must share to agree: the tool calls (canonical JSON), else the last
    number of the text, else the text lower-cased with spaces collapsed.

    Example:
        >>> answer_key(Answer("So the total is 1,250.")) == answer_key(Answer("#### 1250"))
        True
    """
    if answer.tool_calls:
        calls = []
        for name, arguments in answer.tool_calls:
            try:
                calls.append([name, json.loads(arguments or "{}")])
            except ValueError:
                calls.append([name, arguments])
        return json.dumps(calls, sort_keys=True)
    numbers = _NUMBER.findall(answer.text)
    if numbers:
        value = numbers[-1].replace(",", "")
        return value.rstrip("0").rstrip(".") if "." in value else value
    return " ".join(answer.text.lower().split()).strip(" .")


@dataclass(frozen=True)
class ConsistencySignal:
    """Self-consistency: the share of ``samples`` answers (this one and ``samples - 1`` more
    from the same tier) whose :func:`answer_key` equals this answer's."""

    samples: int = 3
    threshold: float = 0.6
    weight: float = 1.0
    name: str = "consistency"
    calls_models: bool = True

    def score(self, request: StepRequest, answer: Answer, probe: Probe) -> float | None:
        mine = answer_key(answer)
        keys = Counter(answer_key(a) for a in probe.samples(self.samples - 1))
        return (1 + keys[mine]) / self.samples


JUDGE_PROMPT = (
    "You check answers. Read the request and the answer, then reply with one word: "
    "'yes' if the answer is correct and complete, 'no' if it is not."
)
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.I)


@dataclass(frozen=True)
class JudgeSignal:
    """An LLM judge: ``tier`` is asked whether the answer is right; 1 for yes, 0 for no,
    ``None`` (no opinion) when its reply is neither."""

    tier: str
    threshold: float = 0.5
    weight: float = 1.0
    max_tokens: int = 4
    name: str = "judge"
    calls_models: bool = True

    def messages(self, request: StepRequest, answer: Answer) -> list[dict[str, str]]:
        query, context, _ = routing_text(request)
        shown = answer.text or json.dumps([{"tool": n, "arguments": a} for n, a in answer.tool_calls])
        earlier = f"Earlier in the conversation:\n{context[:1000]}\n\n" if context else ""
        return [{"role": "system", "content": JUDGE_PROMPT},
                {"role": "user", "content": f"{earlier}Request:\n{query[:4000]}\n\nAnswer:\n{shown[:4000]}\n\n"
                                            "Is the answer correct and complete? Reply yes or no."}]

    def score(self, request: StepRequest, answer: Answer, probe: Probe) -> float | None:
        reply = probe.ask(self.tier, self.messages(request, answer), self.max_tokens)
        match = _VERDICT.match(reply or "")
        if match is None:
            return None
        return 1.0 if match.group(1).lower() == "yes" else 0.0
