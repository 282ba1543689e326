"""The router's value types: what a step asks for and what the router decided.

All are frozen dataclasses: a request or a decision never changes after it is made, so it can
be logged, compared and shared across threads without copies.
"""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from steproute._encoding import check_sendable
from steproute.errors import shown

__all__ = ["ArmAssignment", "CascadeAttempt", "Decision", "Hint", "StepKind", "StepRequest", "Usage"]


class StepKind(str, enum.Enum):
    """The built-in kinds of agent step. Any other string is accepted as a custom kind."""

    REWRITE = "rewrite"
    EXTRACT = "extract"
    PLAN = "plan"
    TOOL_USE = "tool_use"
    SYNTHESIS = "synthesis"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Hint:
    """What the graph author declared on a step (see :func:`steproute.step`).

    Example:
        >>> Hint(min_tier="standard").is_empty
        False
    """

    tier: str | None = None
    """A fixed tier: wins over the step's policy."""
    min_tier: str | None = None
    """Floor: the policy's choice is raised to at least this tier."""
    max_tier: str | None = None
    """Ceiling: the policy's choice is lowered to at most this tier."""
    pin: str | None = None
    """Pin mode for this step: ``sticky``, ``upgrade_only``, ``reevaluate``, ``turn`` or ``off``."""
    pin_group: str | None = None
    """Pin group: steps sharing a group share a pin (default: the step's name)."""

    def __post_init__(self) -> None:
        for name in ("tier", "min_tier", "max_tier", "pin", "pin_group"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"hint {name} must be a tier name (a string), got {type(value).__name__}")

    @property
    def is_empty(self) -> bool:
        return (self.tier is None and self.min_tier is None and self.max_tier is None and self.pin is None
                and self.pin_group is None)


@dataclass(frozen=True)
class StepRequest:
    """One model call of one agent step, as the router sees it.

    ``messages`` are OpenAI-format dicts (``{"role": ..., "content": ...}``); ``tools`` are
    OpenAI tool dicts; ``metadata`` is the run metadata (LangGraph's, plus the user's).
    """

    step: str
    """Step name: the hint's name, else the LangGraph node, else ``"default"``."""
    messages: Sequence[Mapping[str, Any]]
    kind: str | None = None
    """Step kind (:class:`StepKind` value or a custom string); ``None`` when undeclared."""
    hint: Hint = field(default_factory=Hint)
    thread: str | None = None
    """Conversation id (LangGraph ``thread_id``), if any."""
    tenant: str | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    response_schema: Mapping[str, Any] | None = None
    """JSON schema of the requested structured output, if any."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    agent: str | None = None
    """The agent or subgraph the call comes from (LangChain's ``lc_agent_name``, else the parent
    node in LangGraph's checkpoint namespace); ``None`` outside one."""
    origin: str | None = None
    """Where the step name came from: ``hint`` (a :func:`~steproute.step` hint in the run),
    ``model`` (the chat model's own ``step=``), ``agent``, ``subgraph``, ``node``, ``default``;
    ``None`` when the caller built the request itself."""
    trace_context: Any = field(default=None, compare=False, repr=False)
    """An OpenTelemetry ``Context`` the call's ``route`` span starts under (``None``: the current
    context). The LangGraph layer sets it so one graph run is one trace."""

    def __post_init__(self) -> None:
        _check_request(self)

    # Derived measures the rules read; each is computed once per request (the request is frozen).

    @cached_property
    def latest_user_text(self) -> str:
        """Text of the last user message ('' when there is none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return text_of(message.get("content"))
        return ""

    @cached_property
    def input_chars(self) -> int:
        """Characters of text over every message."""
        return sum(len(text_of(m.get("content"))) for m in self.messages)

    @cached_property
    def user_turns(self) -> int:
        """Number of user messages in the conversation."""
        return sum(1 for m in self.messages if m.get("role") == "user")


ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _kind(value: Any) -> str:
    return type(value).__name__


def _check_request(request: StepRequest) -> None:
    """Raise ``ValueError`` naming the field of a malformed request (never echoing its text);
    text no request can carry (a lone surrogate) is a ``RequestEncodingError``."""
    if type(request.step) is not str or not request.step:
        if not isinstance(request.step, str) or not request.step:
            raise ValueError(f"StepRequest.step must be a non-empty string, got {_kind(request.step)}")
    messages = request.messages
    # the common case, checked cheaply: a list of plain dicts with a known role and text content
    if type(messages) is list and all(type(m) is dict and m.get("role") in ROLES and type(m.get("content")) is str
                                      for m in messages) and _plain_rest(request):
        check_sendable(request.step, messages, {"tools": request.tools, "response_schema": request.response_schema})
        return
    where = f"step {request.step[:80]!r}"
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(f"{where}: messages must be a list of message dicts, got {_kind(messages)}")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"{where}: messages[{i}] must be a dict with 'role' and 'content', got {_kind(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"{where}: messages[{i}].role must be one of {', '.join(sorted(ROLES))}; "
                             f"got {shown(role)}")
        content = message.get("content")
        if content is not None and not isinstance(content, str) and (
                isinstance(content, (bytes, Mapping)) or not isinstance(content, Sequence)
                or any(not isinstance(block, (str, Mapping)) for block in content)):
            raise ValueError(f"{where}: messages[{i}].content must be a string, a list of content blocks or null, "
                             f"got {_kind(content)}")
    for name in ("kind", "thread", "tenant", "agent", "origin"):
        value = getattr(request, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be a string, got {_kind(value)}")
    if not isinstance(request.hint, Hint):
        raise ValueError(f"{where}: hint must be a Hint, got {_kind(request.hint)}")
    if isinstance(request.tools, (str, bytes)) or not isinstance(request.tools, Sequence) or any(
            not isinstance(t, Mapping) for t in request.tools):
        raise ValueError(f"{where}: tools must be a list of OpenAI tool dicts")
    if request.response_schema is not None and not isinstance(request.response_schema, Mapping):
        raise ValueError(f"{where}: response_schema must be a JSON schema dict, got {_kind(request.response_schema)}")
    if not isinstance(request.metadata, Mapping):
        raise ValueError(f"{where}: metadata must be a dict, got {_kind(request.metadata)}")
    check_sendable(request.step, messages, {"tools": request.tools, "response_schema": request.response_schema})


def _plain_rest(request: StepRequest) -> bool:
    """The fields besides the messages are of the usual plain types (no further checks needed)."""
    return (request.kind is None or type(request.kind) is str) and (request.thread is None or type(request.thread) is str) \
        and (request.tenant is None or type(request.tenant) is str) and type(request.hint) is Hint \
        and (request.agent is None or type(request.agent) is str) and (request.origin is None or type(request.origin) is str) \
        and (request.tools == () or (type(request.tools) in (list, tuple) and all(type(t) is dict for t in request.tools))) \
        and (request.response_schema is None or type(request.response_schema) is dict) and type(request.metadata) is dict


def text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(parts)
    return str(content)


_ids: Iterator[int]
_prefix: str


def _seed_ids() -> None:
    """A fresh prefix (pid plus a random per-process token) and counter: at import and in
    every forked child, so forked workers and hosts that share a pid never make the same id."""
    global _ids, _prefix
    _ids = itertools.count(1)
    _prefix = f"{os.getpid():x}{os.urandom(4).hex()}"


_seed_ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_seed_ids)


def new_decision_id() -> str:
    """A decision id unique across threads, processes, forked workers and hosts (cheap: no
    uuid, no clock; the prefix is re-seeded after ``fork``).

    Example:
        >>> new_decision_id() != new_decision_id()
        True
    """
    return f"d-{_prefix}-{next(_ids)}"


@dataclass(frozen=True)
class CascadeAttempt:
    """One attempt of a cascade: the tier tried, what its answer scored, what it cost."""

    tier: str
    model: str
    accepted: bool | None
    """``None``: not judged (the last tier's answer, or an attempt that failed)."""
    confidence: float | None = None
    signals: tuple[tuple[str, float], ...] = ()
    """``(signal, score)`` for each signal asked."""
    cost_usd: float = 0.0
    """The attempt's call, plus the calls its signals made (samples, judge)."""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"tier": self.tier, "model": self.model, "accepted": self.accepted, "confidence": self.confidence,
                "signals": dict(self.signals), "cost_usd": self.cost_usd, "reason": self.reason}


@dataclass(frozen=True)
class ArmAssignment:
    """The arm of an A/B experiment a call was assigned to (see :mod:`steproute.experiments`).

    Example:
        >>> ArmAssignment("cheap-answer", "cheap", "control", "thread").as_dict()["arm"]
        'cheap'
    """

    name: str
    """The experiment's name."""
    arm: str
    control: str
    """The experiment's control arm (its first)."""
    unit: str
    """What is assigned: ``thread`` or ``tenant``."""
    assigned: bool = True
    """``False``: the call had no thread (or tenant) id, so it went to the control unassigned."""

    @cached_property
    def note(self) -> str:
        """What the reason of a decision in this arm starts with (made once per assignment)."""
        if self.assigned:
            return f"experiment {self.name!r}, arm {self.arm!r}"
        return f"experiment {self.name!r}: no {self.unit} id, so the control arm {self.arm!r}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arm": self.arm, "control": self.control, "unit": self.unit,
                "assigned": self.assigned}


@dataclass(frozen=True)
class Decision:
    """Immutable record of one routing choice.

    ``model`` is the tier's first deployment when the decision is made; the routed chat model
    replaces it (with :func:`dataclasses.replace`) by the model that actually answered.
    """

    step: str
    kind: str | None
    tier: str
    model: str
    policy: str
    """Name of the policy that chose: ``fixed``, ``rules``, ``hint``, ..."""
    reason: str
    """Human-readable why: the rule that fired, the hint that won, the clamp applied."""
    score: float | None = None
    pinned: bool = False
    """The tier came from the conversation's pin, not from the policy."""
    pin_group: str | None = None
    """The pin group the call belongs to (``None``: not pinned, no thread or pinning off)."""
    repinned: bool = False
    """The pinned model failed and another deployment of the same tier answered; the pin moved."""
    escalated_from: str | None = None
    """A cascade's first tier, when it escalated from it."""
    guard: str | None = None
    """The guard that set or bounded the tier: ``pii:<detectors>`` or ``budget:capped``."""
    fallback_from: str | None = None
    """The tier the step was routed to, when every deployment of it failed and a stronger tier
    answered (cross-tier fallback)."""
    attempts: int = 1
    """Tiers tried (a cascade's attempts)."""
    thread: str | None = None
    agent: str | None = None
    """The agent or subgraph the call came from (see :attr:`StepRequest.agent`)."""
    id: str = field(default_factory=new_decision_id)
    cascade: tuple[CascadeAttempt, ...] = ()
    """A cascade's attempts in order: the escalation chain and each answer's signal values."""
    latency_from: str | None = None
    """The tier decided before the latency check moved the call (a tier observed too slow for the
    step's ``max_latency_ms`` or the run's deadline; see :mod:`steproute.latency`)."""
    experiment: ArmAssignment | None = None
    """The A/B experiment arm whose configuration decided (``None``: the step is in no experiment)."""

    @property
    def arm(self) -> str | None:
        """The experiment arm of the call (``None``: in no experiment)."""
        return self.experiment.arm if self.experiment is not None else None

    def moved(self, tier: str, model: str, reason: str) -> Decision:
        """This decision sent to another ``tier`` (and ``model``), with ``reason``: what
        :func:`dataclasses.replace` makes, without re-running ``__init__`` over every field (a
        few times cheaper on the per-call path).

        Example:
            >>> from dataclasses import replace
            >>> d = Decision("plan", None, "fast", "openai/gpt-4o-mini", "fixed", "fixed tier 'fast'")
            >>> moved = d.moved("strong", "openai/gpt-4o", "fixed tier 'fast'; needs vision")
            >>> moved.tier, moved.model, d.tier, moved == replace(d, tier="strong", model="openai/gpt-4o",
            ...                                                    reason="fixed tier 'fast'; needs vision")
            ('strong', 'openai/gpt-4o', 'fast', True)
        """
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, tier=tier, model=model, reason=reason)
        return copy

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (the fields are scalars but for ``cascade``: a shallow copy
        is enough, and about 20x cheaper than :func:`dataclasses.asdict` on the per-call path)."""
        values = dict(vars(self))
        values["cascade"] = [a.as_dict() for a in self.cascade]
        if self.experiment is not None:
            values["experiment"] = self.experiment.as_dict()
        return values


@dataclass(frozen=True)
class Usage:
    """Token usage of one call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
