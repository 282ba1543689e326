"""What a call needs, what each deployment can serve, and the filter between them.

Before a call is dispatched, each deployment the call could use is checked against what the
call carries: image content parts need **vision**, audio parts **audio** input, ``tools``
**function calling** (unless the tier emulates it with ``tool_calling: json``), a JSON-schema
``response_format`` **response-schema** support (emulated too: a ``json`` tier's servers
compile the schema into a grammar), and the estimated input tokens plus ``max_tokens`` must fit
the **context window** (``max_input_tokens``; ``max_tokens`` alone, ``max_output_tokens``).

The facts come from LiteLLM's model information, resolved once per deployment when the router
is built (:func:`facts_of`), and a deployment's ``capabilities:`` in the configuration wins
over them. A fact nobody knows (a model LiteLLM has not mapped, no override) counts as capable:
a local model is never blocked silently, and the router says once that it could not check.

The input tokens are bounded cheaply first (UTF-8 bytes: a byte-level tokenizer never makes
more tokens than bytes; and text has fewer than :data:`BYTES_PER_TOKEN` bytes a token);
LiteLLM's tokenizer counts them only when a window falls between the two bounds
(:meth:`Needs.fits`). Everything here is pure but :func:`facts_of`, which reads LiteLLM's
bundled map; :mod:`steproute._capability_gate` applies the filter to a call.

Example:
    >>> needs = needs_of([{"role": "user", "content": [
    ...     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}], {})
    >>> needs.vision, missing(Facts(vision=False, known=True), needs, emulated=False)
    (True, 'vision')
    >>> missing(Facts(), needs, emulated=False) is None    # unknown: capable
    True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steproute._litellm import litellm
from steproute.config import DeploymentConfig, RouterConfig
from steproute.errors import StepRouteError, shown

__all__ = [
    "BYTES_PER_TOKEN",
    "CAPABILITIES",
    "COUNT_CHARS",
    "CapabilityError",
    "CapabilityFilter",
    "Facts",
    "Needs",
    "facts_of",
    "filter_of",
    "missing",
    "needs_of",
    "phrase",
    "tokens_of",
]

logger = logging.getLogger("steproute")

CAPABILITIES = ("vision", "audio", "tools", "response_schema", "output", "window")
"""What a call may need, in the order they are checked (``output``: ``max_tokens`` within the
model's ``max_output_tokens``; ``window``: input plus ``max_tokens`` within ``max_input_tokens``)."""

_IMAGE_PARTS = frozenset({"image_url", "image"})
_AUDIO_PARTS = frozenset({"input_audio", "audio"})
_MESSAGE_TOKENS = 4
"""Tokens a message costs besides its text (role and separators), as OpenAI's chat format counts."""
COUNT_CHARS = 16_384
"""Text up to this many characters is counted whole; longer text from a sample of this size,
taken in :data:`_SLICES` slices spread evenly over it (the first and the last among them)."""
_SLICES = 8
_SAFE_BYTES_PER_TOKEN = 5
"""A sampled estimate is never below the text's UTF-8 bytes / 5 (English runs about 4 a token)."""
BYTES_PER_TOKEN = 8
"""A token of ordinary text or code carries fewer bytes than this (English: about 4), so a text
of more than ``window × 8`` bytes cannot fit ``window``: decided without counting."""
_IMAGE_TOKENS = 85
"""Tokens an image is counted at in the window estimate (OpenAI's low-detail image)."""


class CapabilityError(StepRouteError, RuntimeError):
    """No tier the step may use can serve the call: none of their deployments has what it needs
    (vision, audio input, function calling, a JSON-schema response format, a large enough
    context window). Raised before any provider call: nothing is spent. Names the step, the
    capability and the tiers checked, never the call's content.

    Example:
        >>> print(CapabilityError("describe", "vision", ("fast", "standard"), "needs vision"))
        step 'describe' needs vision: no deployment of the tiers it may use ('fast', 'standard') has it
    """

    def __init__(self, step: str, capability: str, tiers: Sequence[str], need: str, *, fixed: bool | str = False) -> None:
        self.step = step
        self.capability = capability
        """One of :data:`CAPABILITIES`: what the first tier checked lacks."""
        self.tiers: tuple[str, ...] = tuple(tiers)
        """The tiers checked, weakest first: the decided tier up to the step's ``max_tier``."""
        where = ", ".join(repr(t) for t in self.tiers)
        # fixed: what fixed the tier ("a `tier` hint", "the PII guard", "a budget cap"); True: unnamed
        by = fixed if isinstance(fixed, str) else "a hint or a guard"
        why = f" (its tier is fixed by {by})" if fixed else ""
        super().__init__(f"step {shown(step)} {need}: no deployment of the tiers it may use ({where}) has it{why}")


@dataclass(frozen=True)
class Facts:
    """What one deployment can serve; ``None``: nobody knows (counted as capable)."""

    vision: bool | None = None
    audio: bool | None = None
    tools: bool | None = None
    response_schema: bool | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    known: bool = False
    """LiteLLM's map knows the model (its missing ``supports_*`` keys then mean "no")."""
    default_output: int | None = None
    """The deployment's own ``max_tokens`` (its configuration's LiteLLM parameters): what a call
    that sets none asks of it."""

    @property
    def unknown(self) -> tuple[str, ...]:
        """The facts nobody gave: neither LiteLLM nor the configuration."""
        names = ("vision", "audio", "tools", "response_schema", "max_input_tokens", "max_output_tokens")
        return tuple(n for n in names if getattr(self, n) is None)


def facts_of(deployment: DeploymentConfig) -> Facts:
    """A deployment's facts: LiteLLM's model information, each key of its ``capabilities:`` winning.

    Example:
        >>> facts = facts_of(DeploymentConfig(model="openai/gpt-3.5-turbo", capabilities={"vision": True}))
        >>> facts.vision, facts.tools, facts.max_input_tokens
        (True, True, 16385)
    """
    try:
        info: Mapping[str, Any] = litellm().get_model_info(deployment.model)
        known = True
    except Exception:  # LiteLLM raises a bare Exception for a model it has not mapped
        info, known = {}, False

    def flag(key: str) -> bool | None:
        return bool(info.get(key)) if known else None

    def number(key: str) -> int | None:
        value = info.get(key)
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    facts: dict[str, Any] = {"vision": flag("supports_vision"), "audio": flag("supports_audio_input"),
                             "tools": flag("supports_function_calling"),
                             "response_schema": flag("supports_response_schema"),
                             "max_input_tokens": number("max_input_tokens"),
                             "max_output_tokens": number("max_output_tokens")}
    override = deployment.capabilities
    if override is not None:
        facts.update({k: v for k, v in override.model_dump().items() if v is not None})
    extra = deployment.__pydantic_extra__ or {}
    own = tokens_of(extra.get("max_tokens")) or tokens_of(extra.get("max_completion_tokens"))
    return Facts(**facts, known=known, default_output=own or None)


def tokens_of(value: Any) -> int:
    """A ``max_tokens`` value as a number of tokens (``"8000"`` too); 0: none, or not a number.

    Example:
        >>> tokens_of("8000"), tokens_of(512), tokens_of(None), tokens_of("lots"), tokens_of(True)
        (8000, 512, 0, 0, 0)
    """
    if isinstance(value, bool) or value is None:
        return 0
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(number, 0)


def filter_of(config: RouterConfig) -> CapabilityFilter:
    """The :class:`CapabilityFilter` of a configuration: every deployment's facts, once."""
    return CapabilityFilter({name: [facts_of(model) for model in tier.models] for name, tier in config.tiers.items()},
                            [name for name, tier in config.tiers.items() if tier.tool_calling == "json"])


class Needs:
    """What one call needs. The input tokens are counted at most once, and only when their cheap
    bound does not fit a window (:meth:`fits`)."""

    __slots__ = ("_extra", "_messages", "audio", "bound", "counted", "images", "output_tokens", "response_schema", "tools",
                 "vision")

    def __init__(self, messages: Sequence[Mapping[str, Any]], vision: bool, audio: bool, tools: bool,
                 response_schema: bool, output_tokens: int, bound: int, images: int, extra: str = "") -> None:
        self._messages = messages
        self._extra = extra
        """The ``tools`` schemas, as JSON: counted with the messages."""
        self.vision, self.audio, self.tools, self.response_schema = vision, audio, tools, response_schema
        self.output_tokens = output_tokens
        """``max_tokens`` asked (0: none)."""
        self.bound = bound
        """At least as many as the input tokens: UTF-8 bytes of the text, per message, image and reply costs."""
        self.images = images
        self.counted: int | None = None
        """The input tokens counted with LiteLLM's tokenizer, once a window needed them."""

    @property
    def special(self) -> bool:
        """The call needs more than a window: an image, audio, tools or a response schema."""
        return self.vision or self.audio or self.tools or self.response_schema

    def fits(self, window: int, output: int | None = None) -> bool:
        """Whether the input and ``max_tokens`` (``output``: this many instead) fit ``window``
        tokens: the bounds decide when they can (at most one token a byte; at least one per
        :data:`BYTES_PER_TOKEN` bytes), else the count."""
        out = self.output_tokens if output is None else output
        if self.bound + out <= window:
            return True
        if self.counted is None and self.bound // BYTES_PER_TOKEN + out > window:
            return False
        return self.input_tokens() + out <= window

    def input_tokens(self) -> int:
        """The input tokens, counted (once) with LiteLLM's tokenizer; images at a fixed estimate.
        Text over :data:`COUNT_CHARS` characters is estimated from :data:`_SLICES` slices spread
        evenly over it (tokens a byte there, times its bytes), and never below its bytes / 5, so a
        count stays a few milliseconds however long the conversation. The text is the messages'
        content, their tool calls' arguments and the ``tools`` schemas."""
        if self.counted is None:
            texts = [_text(m) for m in self._messages]
            overhead = _MESSAGE_TOKENS * len(texts) + 3 + _IMAGE_TOKENS * self.images
            text = "\n".join([*texts, self._extra] if self._extra else texts)
            sample = text if len(text) <= COUNT_CHARS else _sample(text)
            try:
                counted = int(litellm().token_counter(text=sample, count_response_tokens=True))
            except Exception:  # text LiteLLM cannot count: about 3 characters a token
                counted = len(sample) // 3 + 1
            if sample is not text:
                size = _size(text)
                counted = max(-(-counted * size // max(_size(sample), 1)), size // _SAFE_BYTES_PER_TOKEN)
            self.counted = counted + overhead
        return self.counted

    def estimate(self) -> int:
        """The input tokens as best known now (counted, else the lower bound) plus ``max_tokens``."""
        return (self.counted if self.counted is not None else self.bound // BYTES_PER_TOKEN) + self.output_tokens


def _text(message: Mapping[str, Any]) -> str:
    """A message's text: its content's, and its tool calls' arguments."""
    content = message.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, Sequence):
        text = "\n".join(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    else:
        text = ""
    arguments = _arguments(message)
    return f"{text}\n{arguments}" if arguments else text


def _arguments(message: Mapping[str, Any]) -> str:
    """The arguments of a message's tool calls (and legacy ``function_call``), joined."""
    calls, legacy = message.get("tool_calls"), message.get("function_call")
    if not calls and not legacy:  # the usual message: one pass over the history stays cheap
        return ""
    functions = [c.get("function") for c in calls if isinstance(c, Mapping)] if isinstance(calls, (list, tuple)) else []
    functions.append(legacy)
    found = [f.get("arguments") for f in functions if isinstance(f, Mapping)]
    return "\n".join(a for a in found if isinstance(a, str))


def _sample(text: str) -> str:
    """:data:`COUNT_CHARS` characters of ``text`` in :data:`_SLICES` slices spread evenly over it."""
    width = COUNT_CHARS // _SLICES
    step = (len(text) - width) / (_SLICES - 1)
    return "".join(text[int(i * step):int(i * step) + width] for i in range(_SLICES))


def _tools_text(tools: Any) -> str:
    """The ``tools`` schemas as sent (JSON), for the window ('' when they are not plain data)."""
    if not tools:
        return ""
    cached = _TOOLS_TEXT.get(id(tools))
    if cached is not None and cached[0] is tools:  # the same tools list, call after call: dumped once
        return cached[1]
    try:
        text = json.dumps(tools, default=str)
    except (TypeError, ValueError):
        text = ""
    if len(_TOOLS_TEXT) >= 64:
        _TOOLS_TEXT.clear()
    _TOOLS_TEXT[id(tools)] = (tools, text)  # holds the list: its id is not reused while cached
    return text


_TOOLS_TEXT: dict[int, tuple[Any, str]] = {}
"""The ``tools`` lists last seen and their JSON (bounded): calls of a bound model pass the same list."""


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def needs_of(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> Needs:
    """What a call of ``messages`` (OpenAI format) with LiteLLM ``params`` needs.

    Example:
        >>> needs = needs_of([{"role": "user", "content": "hi"}], {"tools": [{"type": "function"}], "max_tokens": 50})
        >>> needs.tools, needs.vision, needs.output_tokens, needs.bound
        (True, False, 50, 31)
    """
    vision = audio = False
    images = 0
    bound = 3  # the reply's priming tokens, as the count has them
    for message in messages:
        content = message.get("content")
        bound += _MESSAGE_TOKENS
        if message.get("tool_calls") or message.get("function_call"):
            bound += _size(_arguments(message))
        if isinstance(content, str):
            bound += _size(content)
        elif isinstance(content, Sequence):
            for part in content:
                if not isinstance(part, Mapping):
                    continue
                kind = part.get("type")
                if kind in _IMAGE_PARTS:
                    vision = True
                    images += 1
                elif kind in _AUDIO_PARTS:
                    audio = True
                text = part.get("text")
                if isinstance(text, str):
                    bound += _size(text)
    tools = bool(params.get("tools")) and params.get("tool_choice") != "none"
    extra = _tools_text(params.get("tools"))
    response_format = params.get("response_format")
    schema = isinstance(response_format, type) or (
        isinstance(response_format, Mapping) and response_format.get("type") == "json_schema")
    output = tokens_of(params.get("max_tokens")) or tokens_of(params.get("max_completion_tokens"))
    return Needs(messages, vision, audio, tools, schema, output, bound + _IMAGE_TOKENS * images + _size(extra),
                 images, extra)


def missing(facts: Facts, needs: Needs, *, emulated: bool) -> str | None:
    """The first of :data:`CAPABILITIES` that ``facts`` lack for ``needs`` (``None``: capable);
    ``emulated``: the tier emulates tools and response schemas (``tool_calling: json``)."""
    if needs.vision and facts.vision is False:
        return "vision"
    if needs.audio and facts.audio is False:
        return "audio"
    if needs.tools and not emulated and facts.tools is False:
        return "tools"
    if needs.response_schema and not emulated and facts.response_schema is False:
        return "response_schema"
    output = needs.output_tokens or facts.default_output or 0  # the call's max_tokens, else the deployment's own
    if output and facts.max_output_tokens is not None and output > facts.max_output_tokens:
        return "output"
    if facts.max_input_tokens is not None and not needs.fits(facts.max_input_tokens, output):
        return "window"
    return None


def phrase(capability: str, needs: Needs) -> str:
    """What the call needs, as a reason says it: ``needs vision``, ``needs function calling``, ...

    Example:
        >>> phrase("tools", needs_of([], {}))
        'needs function calling'
    """
    if capability == "window":
        return f"needs a context window of {'about' if needs.counted is not None else 'at least'} {needs.estimate():,} tokens"
    if capability == "output":
        asked = needs.output_tokens or "of its deployment"
        return f"needs max_tokens {asked} (above max_output_tokens)"
    return "needs " + {"vision": "vision", "audio": "audio input", "tools": "function calling",
                       "response_schema": "a JSON-schema response format"}[capability]


class CapabilityFilter:
    """The facts of every deployment of every tier, and which of them can serve a call.

    Example:
        >>> f = CapabilityFilter({"fast": [Facts(vision=False, known=True)], "strong": [Facts(vision=True)]}, ())
        >>> image = needs_of([{"role": "user", "content": [{"type": "image_url"}]}], {})
        >>> f.serving("fast", image), f.serving("strong", image)
        (((), ((0, 'vision'),)), ((0,), ()))
    """

    def __init__(self, facts: Mapping[str, Sequence[Facts]], emulated: Sequence[str]) -> None:
        self.facts: dict[str, tuple[Facts, ...]] = {tier: tuple(f) for tier, f in facts.items()}
        self._emulated = frozenset(emulated)
        windows = [f.max_input_tokens for fs in self.facts.values() for f in fs if f.max_input_tokens is not None]
        self._smallest = min(windows, default=None)
        outputs = [f.max_output_tokens for fs in self.facts.values() for f in fs if f.max_output_tokens is not None]
        self._least_output = min(outputs, default=None)
        self._own_output = max((f.default_output or 0 for fs in self.facts.values() for f in fs), default=0)
        """The most a deployment's own ``max_tokens`` asks (0: none sets one): a call that sets none asks that."""

    def trivial(self, needs: Needs) -> bool:
        """Every deployment serves ``needs``: nothing special asked, and the cheap bound fits the
        smallest window of all (the usual call: checked in a few comparisons)."""
        return not needs.special and self.windows_fit(needs)

    def unknown(self, tier: str, index: int) -> tuple[str, ...]:
        """The facts of deployment ``index`` of ``tier`` nobody gave (LiteLLM has no information
        on its model, nor the configuration); on a ``json`` tier, tools and response schemas are
        emulated and not among them.

        Example:
            >>> CapabilityFilter({"fast": [Facts(vision=False)]}, ("fast",)).unknown("fast", 0)
            ('audio', 'max_input_tokens', 'max_output_tokens')
        """
        fact = self.facts[tier][index]
        if fact.known:
            return ()
        emulated = ("tools", "response_schema") if tier in self._emulated else ()
        return tuple(n for n in fact.unknown if n not in emulated)

    def tiers_having(self, capability: str) -> tuple[str, ...]:
        """The tiers with a deployment that may have ``capability`` (``vision``, ``audio``,
        ``tools``, ``response_schema``): known to, or not known not to; a ``json`` tier emulates
        tools and response schemas.

        Example:
            >>> CapabilityFilter({"fast": [Facts(tools=False)], "strong": [Facts()]}, ()).tiers_having("tools")
            ('strong',)
        """
        return tuple(tier for tier, facts in self.facts.items()
                     if (capability in ("tools", "response_schema") and tier in self._emulated)
                     or any(getattr(f, capability) is not False for f in facts))

    def windows_fit(self, needs: Needs) -> bool:
        """The cheap bound and ``max_tokens`` fit every deployment's limits: no window decides."""
        output = needs.output_tokens or self._own_output
        return (self._smallest is None or needs.bound + output <= self._smallest) \
            and (self._least_output is None or output <= self._least_output)

    def serving(self, tier: str, needs: Needs) -> tuple[tuple[int, ...], tuple[tuple[int, str], ...]]:
        """The deployments of ``tier`` that can serve ``needs`` (their positions), and those that
        cannot, each with the first capability it lacks."""
        emulated = tier in self._emulated
        ok: list[int] = []
        lacking: list[tuple[int, str]] = []
        for i, facts in enumerate(self.facts[tier]):
            lack = missing(facts, needs, emulated=emulated)
            if lack is None:
                ok.append(i)
            else:
                lacking.append((i, lack))
        return tuple(ok), tuple(lacking)
