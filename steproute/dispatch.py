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
from typing import Any

from steproute._encoding import check_sendable
from steproute._latency_feed import TimedTier
from steproute._litellm import (
    Failure,
    collecting,
    cooling_down,
    deadlines,
    install_failure_recorder,
    litellm,
    ns,
)
from steproute._refusals import Refusals
from steproute._responses import chunks_of, paid, to_chunks, to_completion
from steproute._stream_walk import StreamWalk, adrained_usage, drained_usage
from steproute.completions import Completion, CompletionChunk, Deployment, TokenLogprob, ToolCall, ToolCallChunk
from steproute.config import DispatchConfig, RouterConfig
from steproute.errors import Attempt, ConfigError, ConfigProblem, DispatchError, secret_values
from steproute.json_tools import emulated_request
from steproute.latency import LatencyBook
from steproute.model_output import (
    MalformedResponse,
    StreamedCallNames,
)
from steproute.pricing import price_of
from steproute.tier_client import TierClient, Transport
from steproute.types import Usage

__all__ = [
    "Completion",
    "CompletionChunk",
    "Deployment",
    "Dispatcher",
    "LiteLLMTransport",
    "StreamCollector",
    "TokenLogprob",
    "ToolCall",
    "ToolCallChunk",
    "chunks_of",
]


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
        return to_completion(response, self._answered_by(response), emulated, self._attempts(failures), step)

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
        return to_completion(response, self._answered_by(response), emulated, self._attempts(failures), step)

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
                    for chunk in names.seen(to_chunks(raw, d, attempts)):
                        walk.started = True
                        yield chunk
                _check_finished(stream, d)
                return
            except MalformedResponse as exc:
                raise paid(exc, d, drained_usage(stream)) from None
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
                    for chunk in names.seen(to_chunks(raw, d, attempts)):
                        walk.started = True
                        yield chunk
                _check_finished(stream, d)
                return
            except MalformedResponse as exc:
                raise paid(exc, d, await adrained_usage(stream)) from None
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
    Every tier's calls are timed into :attr:`latency` (see :mod:`steproute.latency`).
    """

    def __init__(self, config: RouterConfig, transport: Transport | None = None) -> None:
        install_failure_recorder()
        transport = transport if transport is not None else LiteLLMTransport()
        self.latency = LatencyBook.from_config(config.tier_names(), config.latency)
        """What each tier's and deployment's calls took: the latency check of decisions reads it."""
        self._transport, self._settings = transport, config.dispatch
        self._tool_calling = {name: tier.tool_calling for name, tier in config.tiers.items()}
        self._subsets: dict[tuple[str, tuple[int, ...]], TierClient] = {}
        problems: list[ConfigProblem] = []
        self._tiers: dict[str, TierClient] = {}
        self._deployments: dict[str, tuple[Deployment, ...]] = {}
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
                self._deployments[name] = tuple(deployments)
                client = transport.client(name, deployments, config.dispatch, tier.tool_calling)
                self._tiers[name] = TimedTier(client, name, self.latency)
        if problems:
            raise ConfigError(problems)

    def tier(self, name: str) -> TierClient:
        return self._tiers[name]

    def ask(self, tier: str, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> str:
        """A short deterministic call through ``tier`` (step ``router``): what the ``llm`` policy routes with."""
        return self._tiers[tier].complete("router", messages, {"max_tokens": max_tokens, "temperature": 0}).content

    def subset(self, tier: str, indices: tuple[int, ...]) -> TierClient:
        """A client of only the deployments of ``tier`` at ``indices`` (those that can serve a
        call, see :mod:`steproute.capabilities`), made once per set."""
        client = self._subsets.get((tier, indices))
        if client is None:
            chosen = [d for d in self._deployments[tier] if d.index in indices]
            client = TimedTier(self._transport.client(tier, chosen, self._settings, self._tool_calling[tier]),
                               tier, self.latency)
            self._subsets[(tier, indices)] = client
        return client

    def deployments(self, tier: str) -> tuple[Deployment, ...]:
        """The tier's deployments, in fallback order."""
        return self._deployments[tier]

    def first_deployment(self, tier: str) -> Deployment:
        return self._deployments[tier][0]


class LiteLLMTransport:
    """The default :class:`~steproute.tier_client.Transport`: each tier through LiteLLM (one
    deployment: ``litellm.completion``; several: a ``litellm.Router`` model group)."""

    def client(self, tier: str, deployments: Sequence[Deployment], settings: DispatchConfig,
               tool_calling: str) -> TierClient:
        return _Tier(tier, list(deployments), settings, tool_calling)



# -- LiteLLM → steproute types -------------------------------------------------------------


