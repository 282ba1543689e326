"""``StepRouterMiddleware``: per-step routing inside LangChain's ``create_agent``.

In ``create_agent`` every model call runs in one graph node (``"model"``), so there is no node
name to route by. The middleware classifies each call into a step kind from the request and
routes it as that step, with the step's policy, its pin and its telemetry:

- ``extract`` when the agent asks for a structured response (``response_format``),
- ``tool_use`` right after tool results,
- ``plan`` for the first call of a turn (no model answer yet),
- ``synthesis`` otherwise.

Needs the ``langchain`` package (``pip install 'steproute[agents]'``).

Example:
    >>> from langchain.agents import create_agent                               # doctest: +SKIP
    >>> agent = create_agent(router.chat_model(), tools=[search],
    ...                      middleware=[StepRouterMiddleware(router)])           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from steproute.langgraph import RoutedChatModel
from steproute.router import StepRouter

__all__ = ["StepRouterMiddleware", "classify_call"]


def classify_call(request: ModelRequest) -> str:
    """The default classifier: the step kind of one ``create_agent`` model call."""
    if request.response_format is not None:
        return "extract"
    messages = request.messages
    if messages and isinstance(messages[-1], ToolMessage):
        return "tool_use"
    since_user = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        since_user.append(message)
    if not any(isinstance(m, AIMessage) for m in since_user):
        return "plan"
    return "synthesis"


class StepRouterMiddleware(AgentMiddleware):  # type: ignore[misc]
    """Routes each model call of a ``create_agent`` agent as a step of its classified kind.

    ``classify`` maps a ``ModelRequest`` to a step name (default :func:`classify_call`, which
    returns the kind); the step's config entry (by name, then kind) gives its policy and pin.
    ``model_kwargs`` are passed to every routed call.
    """

    def __init__(self, router: StepRouter, *, classify: Callable[[ModelRequest], str] = classify_call,
                 **model_kwargs: Any) -> None:
        super().__init__()
        self.router = router
        self.classify = classify
        self._models: dict[str, RoutedChatModel] = {}
        self._model_kwargs = model_kwargs

    def _model_for(self, step: str) -> RoutedChatModel:
        model = self._models.get(step)
        if model is None:
            kind = step if step in ("extract", "tool_use", "plan", "synthesis") else None
            model = self._models[step] = self.router.chat_model(step=step, kind=kind, **self._model_kwargs)
        return model

    def _routed(self, request: ModelRequest) -> ModelRequest:
        step = self.classify(request)
        if not isinstance(step, str) or not step:
            raise ValueError(f"StepRouterMiddleware: the classifier returned {step!r}, not a step name")
        return request.override(model=self._model_for(step))

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> Any:
        return handler(self._routed(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        return await handler(self._routed(request))
