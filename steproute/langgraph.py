"""The LangGraph / LangChain layer: the routed chat model, the ``step`` hint and a ready node.

:class:`RoutedChatModel` is a LangChain ``BaseChatModel``. On each call it reads the run's
metadata (which LangGraph fills with the node's ``metadata=``, ``langgraph_node`` and the
``thread_id``), builds a :class:`~steproute.types.StepRequest` and hands it to the
:class:`~steproute.router.StepRouter`. This module knows nothing of LiteLLM: it sees the
router's own result types only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import ensure_config, get_config_list
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator

from steproute._lc_messages import to_chunk, to_message, tool_choice_of
from steproute._run_trace import run_trace_context
from steproute._step_identity import HINT_FIELDS, HINT_KEY, resolve_step, step
from steproute._structured import structured_output
from steproute.errors import shown
from steproute.pinning import PIN_MODES
from steproute.router import StepRouter
from steproute.types import Hint, StepRequest

__all__ = ["HINT_KEY", "RoutedChatModel", "routed_node", "step"]

_SCHEMA_KWARG = "steproute_response_schema"
_METADATA_KWARG = "steproute_run_metadata"
"""The run's metadata, carried to ``_stream``: langchain-core streams without a run manager."""


def _request_from_run(
    messages: list[BaseMessage],
    metadata: Mapping[str, Any],
    model: RoutedChatModel,
    tools: Sequence[Mapping[str, Any]] | None,
    schema: Mapping[str, Any] | None,
    trace_context: Any = None,
) -> StepRequest:
    declared = metadata.get(HINT_KEY)
    declared = declared if isinstance(declared, Mapping) else {}
    # explicit hint > agent/subgraph > node > default (steproute._step_identity); a hint on the
    # run's metadata wins over the model's own, field by field
    identity = resolve_step(metadata, declared.get("step") or model.step, model.router.config.steps)
    origin = "hint" if declared.get("step") else identity.origin
    thread = metadata.get("thread_id") or metadata.get("conversation_id")
    tenant = metadata.get("tenant")
    if isinstance(tenant, Mapping):
        tenant = tenant.get("id")
    hint = Hint(*(declared.get(name) or getattr(model, name) for name in HINT_FIELDS))
    return StepRequest(
        step=str(identity.step),
        messages=convert_to_openai_messages(messages),
        kind=declared.get("kind") or model.kind,
        hint=hint,
        thread=str(thread) if thread is not None else None,
        tenant=str(tenant) if tenant is not None else None,
        tools=tuple(tools or ()),
        response_schema=schema,
        metadata=metadata,
        agent=identity.agent,
        origin=origin,
        trace_context=trace_context,
    )


class RoutedChatModel(BaseChatModel):
    """A LangChain chat model that routes every call to a tier by step.

    The step comes from a :func:`step` hint in the run metadata (a LangGraph node's
    ``metadata=``), else ``step=`` given here, else the LangGraph node's name
    (``langgraph_node``), else ``"default"``.
    ``response_metadata["model_name"]`` is the model that answered;
    ``response_metadata["steproute"]`` holds the decision, ``cost_usd``,
    ``baseline_cost_usd`` and ``savings_usd``.

    Example:
        >>> from steproute import RouterConfig, StepRouter
        >>> router = StepRouter(RouterConfig(
        ...     tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "hi"}]}},
        ...     default="fast"))
        >>> message = router.chat_model().invoke("hello")
        >>> message.content, message.response_metadata["steproute"]["tier"]
        ('hi', 'fast')
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    router: StepRouter = Field(exclude=True)
    step: str | None = None
    """Step name when the run declares none (a :func:`step` hint in the metadata wins)."""
    kind: str | None = None
    """Step kind for calls that declare none."""
    tier: str | None = None
    """A fixed tier for this model's calls (a run's :func:`step` hint wins, field by field)."""
    min_tier: str | None = None
    """Floor on the tier of this model's calls."""
    max_tier: str | None = None
    """Ceiling on the tier of this model's calls."""
    pin: str | None = None
    """Pin mode of this model's calls: ``sticky``, ``upgrade_only``, ``reevaluate``, ``turn`` or ``off``."""
    pin_group: str | None = None
    """Pin group of this model's calls (default: the step's name)."""
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    """Per-call timeout in seconds (overrides the config's ``dispatch.timeout``)."""
    max_retries: int | None = None
    """Retries per deployment (overrides the config's ``dispatch.num_retries``)."""
    streaming: bool = False
    """Accepted for LangChain compatibility; ``stream()`` streams either way."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other LiteLLM parameters sent with every call."""

    @model_validator(mode="after")
    def _known_hints(self) -> RoutedChatModel:
        where = f"chat_model(step={shown(self.step)})" if self.step else "chat_model()"
        for name in ("tier", "min_tier", "max_tier"):
            value = getattr(self, name)
            if value is not None and value not in self.router.tiers:
                raise ValueError(f"{where}: {name} {shown(value)} is not a tier (known: {', '.join(self.router.tiers)})")
        if self.pin is not None and self.pin not in PIN_MODES:
            raise ValueError(f"{where}: pin must be one of {', '.join(PIN_MODES)}")
        return self

    @property
    def _llm_type(self) -> str:
        return "steproute"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"tiers": list(self.router.tiers), "step": self.step, **self._default_params()}

    def _default_params(self) -> dict[str, Any]:
        params = dict(self.model_kwargs)
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.stop:
            params["stop"] = self.stop
        if self.timeout is not None:
            params["timeout"] = self.timeout
        if self.max_retries is not None:
            params["num_retries"] = self.max_retries
        return params

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "steproute"
        params["ls_model_name"] = kwargs.get("model", "steproute")
        return params

    def with_config(self, config: RunnableConfig | None = None, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Like any runnable's ``with_config``; a :func:`step` hint in ``metadata`` becomes the
        model's own hints (``step``, ``kind``, ``tier``, ...), so it survives agent factories that
        unwrap a configured model (``create_agent``, ``create_react_agent``)."""
        merged: dict[str, Any] = {**(config or {}), **kwargs}
        given = merged.get("metadata")
        metadata: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        declared = metadata.get(HINT_KEY)
        if not isinstance(declared, Mapping):
            return super().with_config(config, **kwargs)
        own = {name: declared[name] for name in ("step", "kind", *HINT_FIELDS) if declared.get(name)}
        model = self.model_copy(update=own)
        rest = {key: value for key, value in metadata.items() if key != HINT_KEY}
        merged = {**merged, "metadata": rest} if rest else {k: v for k, v in merged.items() if k != "metadata"}
        return super(RoutedChatModel, model).with_config(cast(RunnableConfig, merged)) if merged else model

    # -- tools and structured output ------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | bool | dict | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools to the model (OpenAI tool format on the wire).

        ``tool_choice`` may be ``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, a
        tool name, or an OpenAI tool-choice dict.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        structured = kwargs.get("ls_structured_output_format")
        if structured is not None and structured.get("schema") is not None:
            kwargs[_SCHEMA_KWARG] = convert_to_openai_tool(structured["schema"])["function"].get("parameters", {})
        choice = tool_choice_of(tool_choice, formatted)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(  # type: ignore[override]
        self, schema: dict[str, Any] | type | None = None, *, method: str = "function_calling",
        include_raw: bool = False, strict: bool | None = None, **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers parsed into ``schema`` (a pydantic model, a TypedDict or a JSON schema).

        ``method`` is ``"function_calling"`` (the schema as a tool; works on every tier),
        ``"json_schema"`` (LiteLLM's ``response_format`` with the schema, ``strict`` as given) or
        ``"json_mode"`` (``{"type": "json_object"}``). Where a tier cannot take that response
        format, the call is made by tool calling and the answer says so (see
        ``docs/integrations.md``).

        Example:
            >>> from steproute import RouterConfig, StepRouter
            >>> router = StepRouter(RouterConfig(tiers={"fast": {"models": [
            ...     {"model": "openai/gpt-4o-mini", "mock_response": '{"city": "Oslo"}'}]}}, default="fast"))
            >>> schema = {"title": "Weather", "type": "object", "properties": {"city": {"type": "string"}}}
            >>> router.chat_model().with_structured_output(schema, method="json_mode").invoke("weather?")
            {'city': 'Oslo'}
        """
        return structured_output(self, schema, method=method, include_raw=include_raw, strict=strict,
                                 schema_kwarg=_SCHEMA_KWARG, **kwargs)

    # -- the calls ---------------------------------------------------------------------------
    #
    # langchain-core calls ``_stream`` without a run manager (``stream()``, and ``invoke()`` when a
    # streaming callback is attached), so the run's metadata, where the step hint is, would be
    # lost; the public entry points carry it along as a keyword argument.

    def _carry(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        metadata = {**(self.metadata or {}), **(ensure_config(config).get("metadata") or {})}
        return {**kwargs, _METADATA_KWARG: metadata}

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return super().invoke(input, config, stop=stop, **self._carry(config, kwargs))

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **self._carry(config, kwargs))

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        return super().stream(input, config, stop=stop, **self._carry(config, kwargs))

    def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        return super().astream(input, config, stop=stop, **self._carry(config, kwargs))

    def _prepare(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> tuple[StepRequest, dict[str, Any]]:
        params = {**self._default_params(), **kwargs}
        if "model" in params:
            raise ValueError(
                "RoutedChatModel chooses the model per step; pass a tier hint (step(..., tier=...)) "
                "instead of model=")
        if stop:
            params["stop"] = stop
        schema = params.pop(_SCHEMA_KWARG, None)
        params.pop("ls_structured_output_format", None)  # LangChain's tracing option, not a LiteLLM one
        response_format = params.get("response_format")
        if schema is None and isinstance(response_format, Mapping):
            schema = (response_format.get("json_schema") or {}).get("schema")
        tools = params.get("tools")
        carried = params.pop(_METADATA_KWARG, None)
        # langchain-core streams without a run manager: then the metadata the entry point carried
        metadata = run_manager.metadata if run_manager is not None else (carried or {})
        request = _request_from_run(messages, metadata, self, tools, schema, run_trace_context(run_manager))
        return request, params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request, params = self._prepare(messages, stop, run_manager, kwargs)
        message = to_message(self.router.complete(request, **params))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request, params = self._prepare(messages, stop, run_manager, kwargs)
        message = to_message(await self.router.acomplete(request, **params))
        return ChatResult(generations=[ChatGeneration(message=message)])

    # -- batches: a cascade step runs phase by phase (StepRouter.complete_batch) ---------------

    def _cascade_batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None
                       ) -> list[RunnableConfig] | None:
        """The per-item configs when some item's step is a cascade (``None``: a plain batch)."""
        configs = get_config_list(config, len(inputs))
        for c in configs:
            metadata = {**self.metadata, **(c.get("metadata") or {})} if self.metadata else (c.get("metadata") or {})
            request = _request_from_run([], metadata, self, None, None)
            if self.router.runs_in_phases(request):
                return configs
        return None

    def _started(self, messages: list[BaseMessage], c: RunnableConfig, size: int, kwargs: dict[str, Any]
                 ) -> dict[str, Any]:
        return {"messages": messages, "serialized": self._serialized, "options": {"stop": None, **kwargs},
                "invocation_params": {**self._default_params(), **kwargs}, "name": c.get("run_name"),
                "run_id": c.pop("run_id", None), "batch_size": size}

    def _manager(self, c: RunnableConfig, manager_class: Any) -> Any:
        return manager_class.configure(c.get("callbacks"), self.callbacks, self.verbose, c.get("tags"), self.tags,
                                       c.get("metadata"), self.metadata)

    def batch(self, inputs: list[LanguageModelInput], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Like any chat model's ``batch``; when a step is a ``cascade``, the first tier answers
        the whole batch, then only the rejected items go up a tier (bounded by
        ``max_concurrency``)."""
        configs = self._cascade_batch(inputs, config) if inputs else None
        if configs is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        managers: list[Any] = []
        requests: list[StepRequest] = []
        params: dict[str, Any] = {}
        for value, c in zip(inputs, configs, strict=True):
            messages = self._convert_input(value).to_messages()
            started = self._started(messages, c, len(inputs), kwargs)
            (manager,) = self._manager(c, CallbackManager).on_chat_model_start(
                started.pop("serialized"), [started.pop("messages")], **started)
            request, params = self._prepare(messages, None, manager, dict(kwargs))
            managers.append(manager)
            requests.append(request)
        results = self.router.complete_batch(requests, max_concurrency=configs[0].get("max_concurrency"),
                                             return_exceptions=True, **params)
        out = [self._ended(manager, result) for manager, result in zip(managers, results, strict=True)]
        return _batch_out(out, return_exceptions)

    async def abatch(self, inputs: list[LanguageModelInput], config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Async :meth:`batch`."""
        configs = self._cascade_batch(inputs, config) if inputs else None
        if configs is None:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        managers: list[Any] = []
        requests: list[StepRequest] = []
        params: dict[str, Any] = {}
        for value, c in zip(inputs, configs, strict=True):
            messages = self._convert_input(value).to_messages()
            started = self._started(messages, c, len(inputs), kwargs)
            (manager,) = await self._manager(c, AsyncCallbackManager).on_chat_model_start(
                started.pop("serialized"), [started.pop("messages")], **started)
            request, params = self._prepare(messages, None, manager, dict(kwargs))
            managers.append(manager)
            requests.append(request)
        results = await self.router.acomplete_batch(requests, max_concurrency=configs[0].get("max_concurrency"),
                                                    return_exceptions=True, **params)
        out: list[Any] = []
        for manager, result in zip(managers, results, strict=True):
            if isinstance(result, BaseException):
                await manager.on_llm_error(result)
                out.append(result)
            else:
                message = to_message(result)
                await manager.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
                out.append(message)
        return _batch_out(out, return_exceptions)

    @staticmethod
    def _ended(manager: CallbackManagerForLLMRun, result: Any) -> Any:
        if isinstance(result, BaseException):
            manager.on_llm_error(result)
            return result
        message = to_message(result)
        manager.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
        return message

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request, params = self._prepare(messages, stop, run_manager, kwargs)
        # closed here when the consumer stops: the router books the stream as abandoned at once
        with contextlib.closing(self.router.stream(request, **params)) as stream:
            for item in stream:
                chunk = ChatGenerationChunk(message=to_chunk(item))
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request, params = self._prepare(messages, stop, run_manager, kwargs)
        stream = self.router.astream(request, **params)
        try:
            async for item in stream:
                chunk = ChatGenerationChunk(message=to_chunk(item))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            await stream.aclose()  # the consumer stopped: the router books the stream as abandoned


def _batch_out(out: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for item in out:
            if isinstance(item, BaseException):
                raise item
    return out


def routed_node(
    router: StepRouter,
    step_name: str,
    prompt: Any,
    *,
    output_key: str = "answer",
    kind: str | None = None,
    tier: str | None = None,
    min_tier: str | None = None,
    max_tier: str | None = None,
    **model_fields: Any,
) -> Runnable:
    """A ready LangGraph node: a prompt over the state, the routed model, the answer written back.

    ``prompt`` is a template string (``"Rewrite this question: {question}"``), a list of
    ``(role, template)`` pairs, or any LangChain prompt template; its variables are read from
    the graph state. The answer's text is written to ``output_key``; with
    ``output_key="messages"`` the whole ``AIMessage`` is appended instead (for
    ``MessagesState`` graphs).

    Example:
        >>> from steproute import RouterConfig, StepRouter
        >>> router = StepRouter(RouterConfig(
        ...     tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "Paris"}]}},
        ...     default="fast"))
        >>> node = router.node("extract", "Capital of {country}?", output_key="capital")
        >>> node.invoke({"country": "France"})
        {'capital': 'Paris'}
    """
    from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate

    if isinstance(prompt, BasePromptTemplate):
        template = prompt
    elif isinstance(prompt, str):
        template = ChatPromptTemplate.from_messages([("user", prompt)])
    else:
        template = ChatPromptTemplate.from_messages(prompt)
    hint = step(step_name, kind=kind, tier=tier, min_tier=min_tier, max_tier=max_tier)
    model = router.chat_model(step=step_name, **model_fields).with_config(metadata=hint)

    def write(message: AIMessage) -> dict[str, Any]:
        return {output_key: [message] if output_key == "messages" else message.text}

    return (template | model | RunnableLambda(write, name="write_" + output_key)).with_config(run_name=step_name)
