"""``llm``: ask a model, through a cheap tier, which tier a request needs.

The routing model sees the step, the request's user content (no system prompt, no tool
schemas) and the tiers with what each is for, and must answer with one tier name. Parsing is
strict: the answer, stripped of whitespace, quotes, backticks and a final full stop, must be a
tier name (any case), or a JSON object ``{"tier": "..."}``. Anything else, or a failed call,
sends the request to ``fallback``; :attr:`LLMRouterPolicy.unparsable` and ``.failed`` count them
and the decision's reason says so.

The policy gets its model call from the router (``ask(tier, messages, max_tokens) -> text``):
it never imports dispatch. On async paths the router runs it in a worker thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from steproute.policies.base import Choice
from steproute.policies.features import routing_text
from steproute.types import StepRequest

__all__ = ["DEFAULT_INSTRUCTIONS", "Ask", "LLMRouterPolicy", "parse_tier"]

Ask = Callable[[str, Sequence[Mapping[str, Any]], int], str]
"""``ask(tier, messages, max_tokens)``: the text a tier answers."""

DEFAULT_INSTRUCTIONS = (
    "You route requests to the cheapest model tier that will answer them well. "
    "Read the request and reply with exactly one tier name and nothing else."
)
_STRIP = " \t\r\n\"'`*."


def parse_tier(text: str, tiers: Sequence[str]) -> str | None:
    """The tier named by a routing answer, or ``None`` when it names none exactly.

    Example:
        >>> parse_tier(" `Strong`.", ["fast", "strong"]), parse_tier('{"tier": "fast"}', ["fast", "strong"])
        ('strong', 'fast')
        >>> parse_tier("fast or strong", ["fast", "strong"]) is None
        True
        >>> parse_tier('{"tier": "strong"', ["fast", "strong"])  # cut before its closing brace
        'strong'
    """
    by_lower = {t.lower(): t for t in tiers}
    cleaned = text.strip(_STRIP)
    if cleaned.startswith("{"):
        # an object cut before its closing brace is closed; stripping took the quote that closes
        # its last string, so the object is also read from its brace with the quotes kept
        value = _object(cleaned)
        if value is None:
            value = _object(text[text.index("{"):].rstrip(_STRIP.replace('"', "")))
        named = value.get("tier") if isinstance(value, dict) else None
        return by_lower.get(named.strip(_STRIP).lower()) if isinstance(named, str) else None
    return by_lower.get(cleaned.lower())


def _object(text: str) -> object:
    """``text`` read as JSON, a closing brace added when it has none (``None``: not JSON)."""
    try:
        return json.loads(text if text.endswith("}") else text + "}")
    except json.JSONDecodeError:
        return None


class LLMRouterPolicy:
    """LLM-as-router (see the module docstring)."""

    name = "llm"
    blocking = True
    """Makes a model call: the router runs it off the event loop on async paths."""

    def __init__(self, ask: Ask, router_tier: str, choices: Mapping[str, str], fallback: str, *,
                 instructions: str | None = None, max_tokens: int = 8) -> None:
        self._ask = ask
        self.router_tier = router_tier
        self.choices = dict(choices)
        self.fallback = fallback
        self.instructions = instructions or DEFAULT_INSTRUCTIONS
        self.max_tokens = max_tokens
        self.calls = 0
        self.unparsable = 0
        self.failed = 0
        self._lock = threading.Lock()

    def messages(self, request: StepRequest) -> list[dict[str, str]]:
        """The routing question for a request."""
        query, context, _ = routing_text(request)
        tiers = "\n".join(f"- {name}: {what}" if what else f"- {name}" for name, what in self.choices.items())
        step = request.step + (f" (a {request.kind} step)" if request.kind else "")
        earlier = f"Earlier in the conversation the user said:\n{context[:1000]}\n\n" if context else ""
        return [
            {"role": "system", "content": f"{self.instructions}\n\nTiers, cheapest first:\n{tiers}"},
            {"role": "user", "content": f"Step: {step}\n\n{earlier}Request:\n{query[:4000]}\n\n"
                                        f"Answer with one of: {', '.join(self.choices)}."},
        ]

    def choose(self, request: StepRequest) -> Choice:
        with self._lock:
            self.calls += 1
        try:
            answer = self._ask(self.router_tier, self.messages(request), self.max_tokens)
        except Exception as exc:  # a routing call that fails must not fail the step
            with self._lock:
                self.failed += 1
            return Choice(self.fallback, f"llm: the routing call failed ({type(exc).__name__}); fallback {self.fallback!r}")
        tier = parse_tier(answer or "", list(self.choices))
        if tier is None:
            with self._lock:
                self.unparsable += 1
            return Choice(self.fallback, f"llm: unparsable routing answer ({len(answer or '')} chars); "
                                         f"fallback {self.fallback!r}")
        return Choice(tier, f"llm: {self.router_tier} answered {tier!r}")
