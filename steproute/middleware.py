"""``StepRouterMiddleware``: per-step routing inside LangChain's ``create_agent``.

In ``create_agent`` every model call runs in one graph node (``"model"``), so there is no node
name to route by. The middleware classifies each call into a step kind that follows the agent
loop (:func:`classify_call`) and routes it with that kind:

=================================================  ==============
the call                                           kind
=================================================  ==============
first call of a turn, with tools to choose from    ``plan``
first call of a turn, no tools                     ``synthesis`` (``extract`` with a ``response_format``)
after tool results, a tool forced by tool_choice,  ``tool_use``
or a tool result that reports an error
after tool results otherwise: the answer           ``synthesis``
after tool results, with a ``response_format``     ``extract`` (the structured final answer)
=================================================  ==============

A call is routed before its answer is known: the call after tool results may still call
another tool; it is routed as the answer it most often is.

The step's name is the agent's when the agent has one (``create_agent(name=...)``, or the node
it runs in as a subgraph; see :mod:`steproute._step_identity`), else the kind. The step's
``steps:`` entry is found by name, then by kind, so ``steps: {tool_use: fast}`` applies in every
agent and ``steps: {math_expert: advanced}`` to one agent. Inside a named agent each kind keeps
its own pin (``<agent>/<kind>``) unless the configuration sets a pin group.

Needs the ``langchain`` package (``pip install 'steproute[agents]'``).

Example:
    >>> from langchain.agents import create_agent                               # doctest: +SKIP
    >>> agent = create_agent(router.chat_model(), tools=[search],
    ...                      middleware=[StepRouterMiddleware(router)])           # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from steproute._step_identity import resolve_step
from steproute.langgraph import RoutedChatModel
from steproute.router import StepRouter
from steproute.types import StepKind

__all__ = ["StepRouterMiddleware", "classify_call"]

_KINDS = frozenset(k.value for k in StepKind)


def _forces_a_tool(tool_choice: Any) -> bool:
    if tool_choice is None or tool_choice in ("auto", "none", False):
        return False
    return True  # "any", "required", True, a tool's name or an OpenAI tool-choice dict


def classify_call(request: ModelRequest) -> str:
    """The default classifier: the step kind of one ``create_agent`` model call (see the table
    in :mod:`steproute.middleware`)."""
    messages = request.messages
    answer = "extract" if request.response_format is not None else "synthesis"
    tail: list[Any] = []  # the tool results at the end of the conversation
    for message in reversed(messages):
        if not isinstance(message, ToolMessage):
            break
        tail.append(message)
    if tail:
        if _forces_a_tool(request.tool_choice) or any(getattr(m, "status", None) == "error" for m in tail):
            return "tool_use"
        return answer
    since_user = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        since_user.append(message)
    if not any(isinstance(m, AIMessage) for m in since_user) and request.tools:
        return "plan"
    return answer


def _run_metadata() -> Mapping[str, Any]:
    try:
        from langgraph.config import get_config

        return get_config().get("metadata") or {}
    except RuntimeError:  # called outside a LangGraph run
        return {}


class StepRouterMiddleware(AgentMiddleware):  # type: ignore[misc]
    """Routes each model call of a ``create_agent`` agent as a step of its classified kind.

    ``classify`` maps a ``ModelRequest`` to a step kind (default :func:`classify_call`); a name
    that is not a built-in kind is used as the step's name itself. ``model_kwargs`` are passed
    to every routed call (``temperature``, ``max_tokens``, hints such as ``max_tier``).

    Example:
        >>> from steproute import RouterConfig, StepRouter
        >>> router = StepRouter(RouterConfig(
        ...     tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "ok"}]}},
        ...     default="fast"))
        >>> StepRouterMiddleware(router).name
        'StepRouterMiddleware'
    """

    def __init__(self, router: StepRouter, *, classify: Callable[[ModelRequest], str] = classify_call,
                 **model_kwargs: Any) -> None:
        super().__init__()
        self.router = router
        self.classify = classify
        self._models: dict[tuple[str | None, str | None, str | None], RoutedChatModel] = {}
        self._lock = threading.Lock()
        self._model_kwargs = model_kwargs

    def _pin_group_set(self, step: str, kind: str | None) -> bool:
        config = self.router.config
        entry = config.step_entry(step, kind)
        own = config.steps[entry].pinning if entry is not None else config.default.pinning
        return bool(config.pinning.group or (own is not None and own.group))

    def _model_for(self, label: str) -> RoutedChatModel:
        kind = label if label in _KINDS else None
        identity = resolve_step(_run_metadata(), None, self.router.config.steps)
        step: str | None
        group = None
        if kind is None:  # a custom classifier's step name
            step = label
        elif identity.origin in ("agent", "subgraph"):  # the model resolves the agent's name itself
            step = None
            if not self._pin_group_set(identity.step, kind):
                group = f"{identity.step}/{kind}"
        else:
            step = label
        key = (step, kind, group)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                fields = {"pin_group": group, **self._model_kwargs} if group else dict(self._model_kwargs)
                model = self._models[key] = self.router.chat_model(step=step, kind=kind, **fields)
        return model

    def _routed(self, request: ModelRequest) -> ModelRequest:
        label = self.classify(request)
        if not isinstance(label, str) or not label:
            raise ValueError(f"StepRouterMiddleware: the classifier returned a {type(label).__name__}, not a step name")
        return request.override(model=self._model_for(label))

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> Any:
        return handler(self._routed(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        return await handler(self._routed(request))
