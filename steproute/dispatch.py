"""Dispatch of one call to one tier, through LiteLLM.

A tier with one deployment is called directly with ``litellm.completion`` (the healthy path
costs no more than LiteLLM itself). A tier with several deployments becomes one
``litellm.Router`` model group whose deployments keep the config's order (LiteLLM's
``order``), so in-tier fallback, retries and cooldowns are LiteLLM's; its streams are opened
deployment by deployment (:mod:`steproute._stream_walk`), skipping those the Router cools down.
Either way the answer is turned into steproute's own :class:`Completion` /
:class:`CompletionChunk`, so the layers above never see LiteLLM's types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from steproute._encoding import check_sendable
from steproute._litellm import (
    Failure,
    collecting,
    cooling_down,
    deadlines,
    install_failure_recorder,
    litellm,
    ns,
    supports_response_format,
)
from steproute._refusals import Refusals
from steproute._stream_walk import StreamWalk, adrained_usage, drained_usage
from steproute.config import DispatchConfig, RouterConfig
from steproute.errors import Attempt, ConfigError, ConfigProblem, DispatchError, secret_values
from steproute.json_tools import MalformedReply, emulated_request, parse_reply
from steproute.model_output import (
    MalformedResponse,
    StreamedCallNames,
    arguments_problem,
    first_choice_only,
    usable_name,
)
from steproute.pricing import Price, call_cost, price_of
from steproute.types import Usage

__all__ = [
    "Completion",
    "CompletionChunk",
    "Deployment",
    "Dispatcher",
    "StreamCollector",
    "TokenLogprob",
    "ToolCall",
    "ToolCallChunk",
    "chunks_of",
]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text, as the provider sent it."""


@dataclass(frozen=True)
class ToolCallChunk:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """The log-probability of one generated token (``logprobs=True``), with the runner-up
    tokens when ``top_logprobs=k`` was asked for."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """A finished answer from one deployment."""

    content: str
    model: str
    """The configured model string of the deployment that answered."""
    provider: str
    usage: Usage
    cost_usd: float
    """The call's cost, at the price of the deployment that answered."""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    response_model: str | None = None
    """The model name the provider reported."""
    response_id: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    """Per-token log-probabilities, when the call asked for them and the provider sent them."""
    failed_attempts: tuple[Attempt, ...] = ()
    """Deployments tried before the one that answered (in-tier fallback), in order."""


@dataclass(frozen=True)
class CompletionChunk:
    """One streamed piece. The last chunk of a stream carries ``usage`` and ``cost_usd``."""

    content: str = ""
    tool_call_chunks: tuple[ToolCallChunk, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    model: str | None = None
    provider: str | None = None
    failed_attempts: tuple[Attempt, ...] = ()
    """On the usage chunk: deployments tried before the one that answered."""


@dataclass(frozen=True)
class Deployment:
    """A deployment ready to call: its LiteLLM parameters, provider and price."""

    tier: str
    index: int
    model: str
    provider: str
    price: Price
    params: Mapping[str, Any] = field(repr=False)

    @property
    def id(self) -> str:
        return f"{self.tier}/{self.index}"

    def takes_response_format(self, method: str) -> bool:
        """Whether the model takes ``method``'s response format (``json_schema``, ``json_mode``)."""
        return supports_response_format(self.model, self.provider, method)


class _Tier:
    def __init__(self, name: str, deployments: list[Deployment], settings: DispatchConfig, tool_calling: str) -> None:
        self.name = name
        self.deployments = deployments
        self.settings = settings
        self.json_tools = tool_calling == "json"
        self._router: Any = None
        self._refusals = Refusals(len(deployments), tuple(s for d in deployments for s in secret_values(d.params)))
        if len(deployments) > 1:
            model_list = []
            for d in deployments:
                params = dict(d.params)
                params["order"] = d.index + 1
                params["timeout"], params["stream_timeout"] = deadlines(d.params, settings.timeout, settings.stream_timeout)
                model_list.append({"model_name": name, "litellm_params": params, "model_info": {"id": d.id}})
            self._router = litellm().Router(
                model_list=model_list,
                num_retries=settings.num_retries,
                allowed_fails=settings.allowed_fails,
                cooldown_time=settings.cooldown_time,
            )

    # -- building the call -------------------------------------------------------------------

    def _kwargs(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
        """LiteLLM's arguments for an answer (not streamed); the Router's deployments carry their deadlines."""
        if self._router is not None:
            return {**params, "model": self.name, "messages": list(messages)}
        return self._direct(self.deployments[0], messages, params, params.get("num_retries", self.settings.num_retries))

    def _direct(self, d: Deployment, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                retries: int) -> dict[str, Any]:
        """LiteLLM's arguments to call ``d`` itself; every call has a deadline, the call's own
        ``timeout`` first; ``num_retries`` 0 too (else the OpenAI client retries twice)."""
        kwargs = {**d.params, **params, "model": d.model, "messages": list(messages), "num_retries": retries}
        kwargs.pop("stream_timeout", None)
        if params.get("timeout") is None:
            answer, stream = deadlines(d.params, self.settings.timeout, self.settings.stream_timeout)
            kwargs["timeout"] = stream if params.get("stream") else answer
        return kwargs

    def _answered_by(self, response: Any) -> Deployment:
        if self._router is None:
            return self.deployments[0]
        model_id = (getattr(response, "_hidden_params", None) or {}).get("model_id")
        for d in self.deployments:
            if d.id == model_id:
                return d
        return self.deployments[0]

    def _attempts(self, failures: list[Failure]) -> tuple[Attempt, ...]:
        by_id = {d.id: d for d in self.deployments}
        first = self.deployments[0]
        return tuple(self._refusals.attempt(model_id if model_id in by_id else None, by_id.get(model_id, first).model,
                                            by_id.get(model_id, first).provider, error, ns(started), ns(ended))
                     for model_id, error, started, ended in failures)

    def _error(self, step: str, exc: Exception, failures: list[Failure]) -> DispatchError:
        """A typed :class:`~steproute.errors.ProviderError` when every attempt was refused (bad
        credentials, a bad request), else a :class:`DispatchError`; messages scrubbed."""
        first = self.deployments[0]
        return self._refusals.error(step, self.name, self._attempts(failures), exc, first.model, first.provider)

    # -- calls -------------------------------------------------------------------------------

    def _emulating(
        self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> tuple[Sequence[Mapping[str, Any]], Mapping[str, Any], bool]:
        if not self.json_tools:
            return messages, params, False
        return emulated_request(messages, params)

    def _preferred_id(self, prefer: str | None) -> str | None:
        """The deployment id to try first for a pinned model, when it is not the tier's first."""
        if self._router is None or prefer is None or prefer == self.deployments[0].model:
            return None
        return next((d.id for d in self.deployments if d.model == prefer), None)

    def _call(self, kwargs: dict[str, Any], prefer: str | None) -> Any:
        if self._router is None:
            return litellm().completion(**kwargs)
        preferred = self._preferred_id(prefer)
        if preferred is not None:  # keep a pinned conversation on its model while that model answers
            try:
                return self._router.completion(**{**kwargs, "model": preferred})
            except Exception:  # recorded by the failure hook; the tier's usual order takes over
                pass
        return self._router.completion(**kwargs)

    async def _acall(self, kwargs: dict[str, Any], prefer: str | None) -> Any:
        if self._router is None:
            return await litellm().acompletion(**kwargs)
        preferred = self._preferred_id(prefer)
        if preferred is not None:
            try:
                return await self._router.acompletion(**{**kwargs, "model": preferred})
            except Exception:
                pass
        return await self._router.acompletion(**kwargs)

    def complete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                 prefer: str | None = None) -> Completion:
        """One call to the tier; ``prefer`` names a deployment to try first (a pinned model)."""
        check_sendable(step, messages, params)
        messages, params, emulated = self._emulating(messages, params)
        kwargs = self._kwargs(messages, params)
        with collecting() as failures:
            try:
                response = self._call(kwargs, prefer)
            except Exception as exc:
                raise self._error(step, exc, failures) from exc
        return _to_completion(response, self._answered_by(response), emulated, self._attempts(failures), step)

    async def acomplete(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                        prefer: str | None = None) -> Completion:
        check_sendable(step, messages, params)
        messages, params, emulated = self._emulating(messages, params)
        kwargs = self._kwargs(messages, params)
        with collecting() as failures:
            try:
                response = await self._acall(kwargs, prefer)
            except Exception as exc:
                raise self._error(step, exc, failures) from exc
        return _to_completion(response, self._answered_by(response), emulated, self._attempts(failures), step)

    def _walk(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
              prefer: str | None) -> tuple[StreamWalk[Deployment], Sequence[Mapping[str, Any]], dict[str, Any]]:
        """A stream's deployments in turn: a pinned one first, none the Router cools down (all
        cooling down: the tier's error says so, no deployment is called)."""
        check_sendable(step, messages, params)
        messages, params, _ = self._emulating(messages, params)
        order = sorted(self.deployments, key=lambda d: d.model != prefer) if self._preferred_id(prefer) else self.deployments
        cooling = cooling_down(self._router, [d.id for d in order]) if self._router is not None else set()
        ready = [d for d in order if d.id not in cooling]
        if not ready:
            raise self._refusals.cooled_down(step, self.name)
        walk = StreamWalk(ready, 1 + self.settings.num_retries, lambda d: d.id, self._attempts,
                          lambda exc, failures: self._error(step, exc, failures))
        return walk, messages, {**params, "stream": True, "stream_options": {"include_usage": True}}

    def stream(self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
               prefer: str | None = None) -> Iterator[CompletionChunk]:
        """The tier's answer, streamed from the first deployment that opens a stream (see :meth:`_walk`)."""
        if self.json_tools and params.get("tools"):
            # An emulated tool call is known only once the whole JSON reply is in.
            yield from chunks_of(self.complete(step, messages, params, prefer))
            return
        walk, messages, kwargs = self._walk(step, messages, params, prefer)
        for d in walk:
            stream: Any = None
            try:
                with walk.opening(d):  # not held across yields: the context is the consumer's
                    stream = litellm().completion(**self._direct(d, messages, kwargs, 0))
                attempts = walk.attempts
                names = StreamedCallNames(step, d, attempts)
                for raw in stream:
                    for chunk in names.seen(_to_chunks(raw, d, attempts)):
                        walk.started = True
                        yield chunk
                _check_finished(stream, d)
                return
            except MalformedResponse as exc:
                raise _paid(exc, d, drained_usage(stream)) from None
            except Exception as exc:
                walk.failed(d, exc)

    async def astream(
        self, step: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], prefer: str | None = None
    ) -> AsyncIterator[CompletionChunk]:
        if self.json_tools and params.get("tools"):
            for chunk in chunks_of(await self.acomplete(step, messages, params, prefer)):
                yield chunk
            return
        walk, messages, kwargs = self._walk(step, messages, params, prefer)
        for d in walk:
            stream: Any = None
            try:
                with walk.opening(d):
                    stream = await litellm().acompletion(**self._direct(d, messages, kwargs, 0))
                attempts = walk.attempts
                names = StreamedCallNames(step, d, attempts)
                async for raw in stream:
                    for chunk in names.seen(_to_chunks(raw, d, attempts)):
                        walk.started = True
                        yield chunk
                _check_finished(stream, d)
                return
            except MalformedResponse as exc:
                raise _paid(exc, d, await adrained_usage(stream)) from None
            except Exception as exc:
                walk.failed(d, exc)


class StreamCollector:
    """Adds a stream's chunks up into the :class:`Completion` they make."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.provider = ""
        self.parts: list[str] = []
        self.usage = Usage()
        self.cost_usd = 0.0
        self.finish_reason: str | None = None
        self.failed_attempts: tuple[Attempt, ...] = ()
        self.usage_known = False
        """Whether the provider's usage has come (the last chunk of a stream that ran to its end)."""

    def see(self, chunk: CompletionChunk) -> None:
        if chunk.model:
            self.model = chunk.model
        if chunk.provider:
            self.provider = chunk.provider
        if chunk.content:
            self.parts.append(chunk.content)
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage, self.cost_usd, self.failed_attempts = chunk.usage, chunk.cost_usd or 0.0, chunk.failed_attempts
            self.usage_known = True

    def completion(self) -> Completion:
        return Completion("".join(self.parts), self.model, self.provider, self.usage, self.cost_usd,
                          finish_reason=self.finish_reason, failed_attempts=self.failed_attempts)


class StreamTruncated(Exception):
    """The provider's stream ended without a finish reason: the answer is cut short. (LiteLLM
    reports ``finish_reason="stop"`` for it all the same.)"""


def _check_finished(stream: Any, deployment: Deployment) -> None:
    """Raise :class:`StreamTruncated` when a stream ended without the provider's finish reason
    (LiteLLM's ``mock_response`` streams never send one: not checked)."""
    if deployment.params.get("mock_response") is None and getattr(stream, "received_finish_reason", "") is None:
        raise StreamTruncated("the stream ended without a finish reason")


class Dispatcher:
    """Calls a tier's deployments through LiteLLM.

    Built from a validated :class:`~steproute.config.RouterConfig`; raises
    :class:`~steproute.ConfigError` for deployments LiteLLM cannot place (unknown provider).
    """

    def __init__(self, config: RouterConfig) -> None:
        install_failure_recorder()
        problems: list[ConfigProblem] = []
        self._tiers: dict[str, _Tier] = {}
        for name, tier in config.tiers.items():
            deployments = []
            for i, model in enumerate(tier.models):
                try:
                    _, provider, _, _ = litellm().get_llm_provider(model.model)
                except Exception:
                    said = "the model from the environment" if model.model_from_env else repr(model.model)
                    problems.append(ConfigProblem(
                        f"tiers.{name}.models[{i}].model",
                        f"LiteLLM cannot tell the provider of {said}; write it as 'provider/model'"))
                    continue
                price = price_of(model, f"tiers.{name}.models[{i}]")
                deployments.append(Deployment(name, i, model.model, provider, price, model.litellm_params()))
            if deployments:
                self._tiers[name] = _Tier(name, deployments, config.dispatch, tier.tool_calling)
        if problems:
            raise ConfigError(problems)

    def tier(self, name: str) -> _Tier:
        return self._tiers[name]

    def deployments(self, tier: str) -> tuple[Deployment, ...]:
        """The tier's deployments, in fallback order."""
        return tuple(self._tiers[tier].deployments)

    def first_deployment(self, tier: str) -> Deployment:
        return self._tiers[tier].deployments[0]



# -- LiteLLM → steproute types -------------------------------------------------------------


def _usage(raw: Any) -> Usage:
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


def _to_completion(
    response: Any, deployment: Deployment, emulated: bool = False, failed_attempts: tuple[Attempt, ...] = (),
    step: str = "",
) -> Completion:
    """The first choice (said once when there were more); :class:`MalformedResponse` if unusable."""
    if len(response.choices) > 1:
        first_choice_only(len(response.choices))
    choice = response.choices[0]
    message = choice.message
    raw_calls = getattr(message, "tool_calls", None) or ()
    usage = _usage(getattr(response, "usage", None))
    paid = call_cost(deployment.price, usage) if getattr(response, "usage", None) is not None else None
    if not all(usable_name(tc.function.name if tc.function else None) for tc in raw_calls):
        raise MalformedResponse.at(step, deployment, "a tool call without a usable name", failed_attempts, paid)
    problem = next(filter(None, (arguments_problem(tc.function.arguments) for tc in raw_calls)), None)
    if problem is not None:  # LangChain would keep it as an invalid call, which no agent loop runs
        raise MalformedResponse.at(step, deployment, problem, failed_attempts, paid)
    tool_calls = tuple(ToolCall(id=tc.id or f"call_{i}", name=tc.function.name, arguments=tc.function.arguments or "")
                       for i, tc in enumerate(raw_calls))
    content = message.content or ""
    finish_reason = choice.finish_reason
    if emulated:
        try:
            content, calls = parse_reply(content)
        except MalformedReply as exc:
            raise MalformedResponse.at(step, deployment, str(exc), failed_attempts, paid) from None
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


def _paid(error: MalformedResponse, deployment: Deployment, usage: Any) -> MalformedResponse:
    """A malformed stream's error, with what the answer cost when the provider's usage came."""
    return error.paid(call_cost(deployment.price, _usage(usage))) if usage is not None else error


def chunks_of(completion: Completion) -> Iterator[CompletionChunk]:
    """A finished completion replayed as a stream: its content and tool calls, then usage."""
    chunk_calls = tuple(ToolCallChunk(i, c.id, c.name, c.arguments) for i, c in enumerate(completion.tool_calls))
    yield CompletionChunk(content=completion.content, tool_call_chunks=chunk_calls, finish_reason=completion.finish_reason,
                          model=completion.model, provider=completion.provider)
    yield CompletionChunk(usage=completion.usage, cost_usd=completion.cost_usd, model=completion.model,
                          provider=completion.provider, failed_attempts=completion.failed_attempts)


def _to_chunks(raw: Any, deployment: Deployment, attempts: tuple[Attempt, ...] = ()) -> Iterator[CompletionChunk]:
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
        counted = _usage(usage)
        yield CompletionChunk(usage=counted, cost_usd=call_cost(deployment.price, counted),
                              model=deployment.model, provider=deployment.provider, failed_attempts=attempts)
