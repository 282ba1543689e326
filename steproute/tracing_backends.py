"""The attributes Langfuse and LangSmith take a model call's cost, usage, model and type from.

steproute puts them on each ``chat`` span, always (a few short strings per call, no content, no
network; a backend ignores names it does not know), so that a trace's cost in these backends is
steproute's, without a price table to keep in step. The ``route`` span carries none of them:
both backends add up every span of a trace that has a cost, so a step total there would be
counted twice. (Phoenix takes no cost from attributes: see :mod:`steproute.phoenix`.)

Where each name comes from:

- **Langfuse** (``packages/shared/src/server/otel/OtelIngestionProcessor.ts`` and
  ``ObservationTypeMapper.ts`` in langfuse/langfuse): ``langfuse.observation.cost_details`` (a
  JSON object; any cost point given is used as is, and Langfuse then prices nothing itself),
  ``gen_ai.usage.cost`` when that is absent, ``langfuse.observation.usage_details`` (JSON; used
  instead of the ``gen_ai.usage.*``/``llm.token_count.*`` attributes, which it would otherwise
  all take as usage types), ``langfuse.observation.model.name`` (first of the model names it
  reads) and ``langfuse.observation.type`` (first of the type mappings).
- **LangSmith** (docs.langchain.com/langsmith/trace-with-opentelemetry and /cost-tracking):
  ``langsmith.span.kind`` (the run type), ``langsmith.metadata.{key}`` (``ls_provider`` and
  ``ls_model_name``, which its price map matches), ``gen_ai.usage.*_tokens``, and the
  OpenInference ``metadata`` attribute, a JSON object merged into the run's metadata, which
  carries ``usage_metadata`` with ``total_cost``: the cost a run is sent with.

Example:
    >>> from steproute.types import Usage
    >>> attributes = chat_cost_attributes("openai/gpt-4o-mini", "openai", 0.00003, Usage(100, 20))
    >>> attributes["langfuse.observation.cost_details"], attributes["langsmith.metadata.ls_model_name"]
    ('{"total": 3e-05}', 'gpt-4o-mini')
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steproute.types import Usage

__all__ = ["COST_ATTRIBUTES", "chat_cost_attributes"]

GENAI_COST = "gen_ai.usage.cost"
GENAI_TOTAL_TOKENS = "gen_ai.usage.total_tokens"
LANGFUSE_TYPE = "langfuse.observation.type"
LANGFUSE_MODEL = "langfuse.observation.model.name"
LANGFUSE_COST_DETAILS = "langfuse.observation.cost_details"
LANGFUSE_USAGE_DETAILS = "langfuse.observation.usage_details"
LANGSMITH_SPAN_KIND = "langsmith.span.kind"
LANGSMITH_PROVIDER = "langsmith.metadata.ls_provider"
LANGSMITH_MODEL = "langsmith.metadata.ls_model_name"
METADATA = "metadata"
"""OpenInference's span metadata (a JSON object): LangSmith merges it into the run's metadata."""

COST_ATTRIBUTES = frozenset({GENAI_COST, LANGFUSE_COST_DETAILS, LANGFUSE_USAGE_DETAILS, METADATA})
"""The names a backend adds up across a trace: on ``chat`` spans only, never on a ``route`` span."""


def chat_cost_attributes(model: str, provider: str, cost_usd: float, usage: Usage | None) -> dict[str, Any]:
    """Langfuse's and LangSmith's attributes for one model call: ``model`` (the configured
    deployment, the one steproute priced the call at) from ``provider``, which cost ``cost_usd``
    for ``usage`` (``None``: a failed attempt, no usage; its cost is still given, $0 or what a
    malformed answer cost, so neither backend prices it itself).

    Example:
        >>> a = chat_cost_attributes("openai/gpt-4o", "openai", 0.0, None)
        >>> a["langfuse.observation.type"], a["langsmith.span.kind"], a["metadata"]
        ('generation', 'llm', '{"usage_metadata": {"total_cost": 0.0}}')
    """
    usage_metadata: dict[str, Any] = {}
    attributes: dict[str, Any] = {
        LANGFUSE_TYPE: "generation",
        LANGFUSE_MODEL: model,
        LANGFUSE_COST_DETAILS: json.dumps({"total": cost_usd}),
        GENAI_COST: cost_usd,
        LANGSMITH_SPAN_KIND: "llm",
        LANGSMITH_PROVIDER: provider,
        LANGSMITH_MODEL: model.removeprefix(f"{provider}/"),  # as LangChain's chat models name it
    }
    if usage is not None:
        total = usage.total_tokens
        cached = min(usage.cache_read_tokens, usage.input_tokens)
        details: dict[str, int] = {"input": usage.input_tokens - cached}
        if cached:  # a usage type of its own: Langfuse prices each type, so "input" leaves them out
            details["input_cached_tokens"] = cached
        details.update(output=usage.output_tokens, total=total)
        attributes[LANGFUSE_USAGE_DETAILS] = json.dumps(details)
        attributes[GENAI_TOTAL_TOKENS] = total
        usage_metadata = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                          "total_tokens": total}
        if cached:
            usage_metadata["input_token_details"] = {"cache_read": cached}
    usage_metadata["total_cost"] = cost_usd
    attributes[METADATA] = json.dumps({"usage_metadata": usage_metadata})
    return attributes
