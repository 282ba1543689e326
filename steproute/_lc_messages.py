"""LangChain messages from the router's results: answers, stream chunks, usage, tool choice.

The router core returns its own types (:class:`~steproute.router.RoutedCompletion`,
:class:`~steproute.dispatch.CompletionChunk`, ...); this module turns them into the
``AIMessage``/``AIMessageChunk`` a LangChain chat model returns, with the decision and its cost
under ``response_metadata["steproute"]``.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk

from steproute._step_identity import HINT_KEY
from steproute.dispatch import Completion, CompletionChunk
from steproute.json_tools import MAX_DEPTH, too_deep
from steproute.results import RoutedCompletion, StreamSummary
from steproute.types import Usage

__all__ = ["logprobs_metadata", "routing_metadata", "to_chunk", "to_message", "tool_choice_of", "usage_metadata"]


def usage_metadata(usage: Usage) -> UsageMetadata:
    result = UsageMetadata(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, total_tokens=usage.total_tokens)
    if usage.cache_read_tokens:
        result["input_token_details"] = {"cache_read": usage.cache_read_tokens}
    return result


def routing_metadata(result: RoutedCompletion | StreamSummary) -> dict[str, Any]:
    return {
        **result.decision.as_dict(),
        "cost_usd": result.cost_usd,
        "baseline_cost_usd": result.baseline_cost_usd,
        "savings_usd": result.savings_usd,
    }


def to_message(result: RoutedCompletion) -> AIMessage:
    completion: Completion = result.completion
    calls, invalid = [], []
    for tc in completion.tool_calls:
        try:
            if too_deep(tc.arguments):  # never parsed: json would raise RecursionError
                raise ValueError(f"arguments nested deeper than {MAX_DEPTH} levels")
            args = json.loads(tc.arguments) if tc.arguments.strip() else {}
            if not isinstance(args, dict):
                raise ValueError("arguments are not a JSON object")
            calls.append(tool_call(name=tc.name, args=args, id=tc.id))
        except ValueError as exc:
            invalid.append(invalid_tool_call(name=tc.name, args=tc.arguments, id=tc.id, error=str(exc)))
    return AIMessage(
        content=completion.content,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        id=completion.response_id,
        usage_metadata=usage_metadata(completion.usage),
        response_metadata={
            "model_name": completion.model,
            "model_provider": completion.provider,
            "finish_reason": completion.finish_reason,
            HINT_KEY: routing_metadata(result),
            **logprobs_metadata(completion),
        },
    )


def logprobs_metadata(completion: Completion) -> dict[str, Any]:
    """Log-probabilities in langchain-openai's shape: ``{"logprobs": {"content": [...]}}``."""
    if completion.logprobs is None:
        return {}
    return {"logprobs": {"content": [
        {"token": t.token, "logprob": t.logprob,
         "top_logprobs": [{"token": token, "logprob": logprob} for token, logprob in t.top]}
        for t in completion.logprobs
    ]}}


def to_chunk(item: CompletionChunk | StreamSummary) -> AIMessageChunk:
    if isinstance(item, StreamSummary):
        return AIMessageChunk(
            content="",
            usage_metadata=usage_metadata(item.usage),
            response_metadata={
                "model_name": item.decision.model,
                "finish_reason": item.finish_reason,
                HINT_KEY: routing_metadata(item),
            },
            chunk_position="last",
        )
    return AIMessageChunk(
        content=item.content,
        tool_call_chunks=[
            tool_call_chunk(name=c.name, args=c.arguments, id=c.id, index=c.index) for c in item.tool_call_chunks
        ],
    )


def tool_choice_of(choice: Any, tools: list[dict[str, Any]]) -> Any:
    if choice is None or choice is False:
        return None
    if choice == "any" or choice is True:
        return "required"
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, str):
        names = {t["function"]["name"] for t in tools if "function" in t}
        if choice not in names:
            raise ValueError(f"tool_choice {choice!r} is not one of the bound tools ({', '.join(sorted(names))})")
        return {"type": "function", "function": {"name": choice}}
    return choice
