"""LiteLLM's responses and stream chunks turned into steproute's values, checked on the way:
the first choice only (said once), tool calls with a usable name and JSON-object arguments, a
``tool_calling: json`` tier's reply read back into tool calls, usage priced at the deployment.
An answer that cannot be passed on is a :class:`~steproute.model_output.MalformedResponse`
carrying what it cost."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from steproute.completions import Completion, CompletionChunk, Deployment, TokenLogprob, ToolCall, ToolCallChunk
from steproute.errors import Attempt
from steproute.json_tools import MalformedReply, parse_reply
from steproute.model_output import MalformedResponse, arguments_problem, first_choice_only, usable_name
from steproute.pricing import call_cost
from steproute.types import Usage

__all__ = ["chunks_of", "paid", "to_chunks", "to_completion", "usage_of"]


def usage_of(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    details = getattr(raw, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        input_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
        cache_read_tokens=int(cached or 0),
    )


def _logprobs(raw: Any) -> tuple[TokenLogprob, ...] | None:
    content = getattr(raw, "content", None) if raw is not None else None
    if content is None and isinstance(raw, Mapping):
        content = raw.get("content")
    if content is None:
        return None

    def get(item: Any, name: str) -> Any:
        return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)

    return tuple(
        TokenLogprob(
            token=str(get(t, "token")),
            logprob=float(get(t, "logprob")),
            top=tuple((str(get(c, "token")), float(get(c, "logprob"))) for c in get(t, "top_logprobs") or ()),
        )
        for t in content
    )


def to_completion(
    response: Any, deployment: Deployment, emulated: bool = False, failed_attempts: tuple[Attempt, ...] = (),
    step: str = "",
) -> Completion:
    """The first choice (said once when there were more); :class:`MalformedResponse` if unusable."""
    if len(response.choices) > 1:
        first_choice_only(len(response.choices))
    choice = response.choices[0]
    message = choice.message
    raw_calls = getattr(message, "tool_calls", None) or ()
    usage = usage_of(getattr(response, "usage", None))
    paid = call_cost(deployment.price, usage) if getattr(response, "usage", None) is not None else None
    paid_usage = usage if paid is not None else None
    if not all(usable_name(tc.function.name if tc.function else None) for tc in raw_calls):
        raise MalformedResponse.at(step, deployment, "a tool call without a usable name", failed_attempts, paid, paid_usage)
    problem = next(filter(None, (arguments_problem(tc.function.arguments) for tc in raw_calls)), None)
    if problem is not None:  # LangChain would keep it as an invalid call, which no agent loop runs
        raise MalformedResponse.at(step, deployment, problem, failed_attempts, paid, paid_usage)
    tool_calls = tuple(ToolCall(id=tc.id or f"call_{i}", name=tc.function.name, arguments=tc.function.arguments or "")
                       for i, tc in enumerate(raw_calls))
    content = message.content or ""
    finish_reason = choice.finish_reason
    if emulated:
        try:
            content, calls = parse_reply(content)
        except MalformedReply as exc:
            raise MalformedResponse.at(step, deployment, str(exc), failed_attempts, paid, paid_usage) from None
        if calls:
            tool_calls = tuple(ToolCall(id, name, arguments) for id, name, arguments in calls)
            finish_reason = "tool_calls"
    return Completion(
        content=content,
        model=deployment.model,
        provider=deployment.provider,
        usage=usage,
        cost_usd=call_cost(deployment.price, usage),
        tool_calls=tool_calls,
        finish_reason=finish_reason,
        response_model=getattr(response, "model", None),
        response_id=getattr(response, "id", None),
        logprobs=_logprobs(getattr(choice, "logprobs", None)),
        failed_attempts=failed_attempts,
    )


def paid(error: MalformedResponse, deployment: Deployment, usage: Any) -> MalformedResponse:
    """A malformed stream's error, with what the answer cost when the provider's usage came."""
    if usage is None:
        return error
    counted = usage_of(usage)
    return error.paid(call_cost(deployment.price, counted), counted)


def chunks_of(completion: Completion) -> Iterator[CompletionChunk]:
    """A finished completion replayed as a stream: its content and tool calls, then usage."""
    chunk_calls = tuple(ToolCallChunk(i, c.id, c.name, c.arguments) for i, c in enumerate(completion.tool_calls))
    yield CompletionChunk(content=completion.content, tool_call_chunks=chunk_calls, finish_reason=completion.finish_reason,
                          model=completion.model, provider=completion.provider)
    yield CompletionChunk(usage=completion.usage, cost_usd=completion.cost_usd, model=completion.model,
                          provider=completion.provider, failed_attempts=completion.failed_attempts)


def to_chunks(raw: Any, deployment: Deployment, attempts: tuple[Attempt, ...] = ()) -> Iterator[CompletionChunk]:
    usage = getattr(raw, "usage", None)
    for choice in getattr(raw, "choices", None) or ():
        if choice.index:  # the first choice only, as a non-streamed call answers (said once)
            first_choice_only(choice.index + 1)
            continue
        delta = choice.delta
        tool_chunks = tuple(
            ToolCallChunk(
                index=tc.index if tc.index is not None else i,
                id=tc.id,
                name=tc.function.name if tc.function else None,
                arguments=tc.function.arguments if tc.function else None,
            )
            for i, tc in enumerate(getattr(delta, "tool_calls", None) or ())
        )
        content = getattr(delta, "content", None) or ""
        if content or tool_chunks or choice.finish_reason:
            yield CompletionChunk(content=content, tool_call_chunks=tool_chunks, finish_reason=choice.finish_reason,
                                  model=deployment.model, provider=deployment.provider)
    if usage is not None:
        counted = usage_of(usage)
        yield CompletionChunk(usage=counted, cost_usd=call_cost(deployment.price, counted),
                              model=deployment.model, provider=deployment.provider, failed_attempts=attempts)
