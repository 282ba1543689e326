"""One trace per graph run: where a routed call's ``route`` span goes inside a LangChain run.

LangChain and LangGraph make no OpenTelemetry spans of their own, so without help each routed
call of a graph would be a trace of its own. :func:`run_trace_context` gives the LangGraph layer
the parent of a call's ``route`` span (as ``StepRequest.trace_context``), first that applies:

1. an OpenTelemetry-based LangChain instrumentation's span for the run (OpenInference's
   ``LangChainInstrumentor`` keeps one per run id, on a callback handler of the run, and does not
   make it current): the chat model's run's span, or the enclosing run's when LangChain streams
   without a run manager;
2. nothing (``None``) when the application has a span open: the call nests under it;
3. the root span of the top-level LangChain run (a graph's ``invoke``/``stream``, sync or async,
   with its subgraphs and prebuilt agents), a :class:`~steproute.telemetry.RunRoot` opened by
   the run's first routed call and ended with the run.

For 3, a callback handler rides on every LangChain run, put there by a configure hook (as
LangSmith's and OpenInference's tracers are). It maps each chain and tool run to its top-level
run: a dict lookup and a store on start, a pop on end; it ignores chat-model, LLM and retriever
events (token streaming never reaches it). Runs that never end are forgotten oldest first past
:data:`MAX_RUNS`; a root span given up on that way ends with ``steproute.run.unfinished``.

This module imports LangChain; the router core (``router``, ``_call``, ``telemetry``) never
imports it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.context import register_configure_hook
from opentelemetry import context as otel_context
from opentelemetry import trace

from steproute.telemetry import RunRoot

__all__ = ["MAX_RUNS", "RunTracker", "run_trace_context", "tracker"]

log = logging.getLogger("steproute")

MAX_RUNS = 100_000
"""Runs remembered at once (each a dict entry): past it, the oldest are forgotten."""

_NOT_FAILURES = frozenset({"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand", "GeneratorExit"})
"""Exceptions that end a LangGraph run without it failing: interrupts, ``Command`` to a parent,
a stream closed early."""


class _TopRun(RunRoot):
    """A :class:`RunRoot` that knows its top-level run's id."""

    __slots__ = ("run", "run_id")

    def __init__(self, run_id: UUID, name: str, thread: str | None) -> None:
        super().__init__(name, thread=thread, start_ns=time.time_ns())
        self.run_id = run_id
        self.run = run_id.int  # compared as an int: cheaper than UUID.__eq__


class RunTracker(BaseCallbackHandler):
    """Maps every chain and tool run to the :class:`RunRoot` of its top-level run.

    A top-level chain run (no parent, or a parent this tracker never saw) gets a ``RunRoot``;
    its descendants share it; the root ends with the run. Nothing is opened here: the span
    exists only once a routed call asks for it.

    Example:
        >>> from uuid import uuid4
        >>> runs = RunTracker(limit=10)
        >>> graph, node = uuid4(), uuid4()
        >>> runs.on_chain_start({}, {}, run_id=graph, name="my-graph", metadata={"thread_id": "t-1"})
        >>> runs.on_chain_start({}, {}, run_id=node, parent_run_id=graph)
        >>> root = runs.root(node)
        >>> root.name, root.thread, root is runs.root(graph)
        ('my-graph', 't-1', True)
    """

    run_inline = True
    """Called in the run's own thread and task (never from an executor): it only touches a dict."""
    raise_error = False
    ignore_llm = True
    ignore_chat_model = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, limit: int = MAX_RUNS) -> None:
        self.limit = limit
        self._runs: dict[int, _TopRun] = {}
        """By ``run_id.int``: hashing an int is cheaper than a UUID (its ``__hash__`` is Python code)."""
        self._evicting = threading.Lock()
        self._warned = False

    @property
    def size(self) -> int:
        """Runs remembered now (started, not yet ended). (No ``__len__``: LangChain's configure
        hook tests the handler for truth.)"""
        return len(self._runs)

    def root(self, run_id: UUID | None) -> _TopRun | None:
        """The root of the top-level run ``run_id`` belongs to (``None``: a run it never saw)."""
        return self._runs.get(run_id.int) if run_id is not None else None

    # -- starts ------------------------------------------------------------------------------

    def on_chain_start(self, serialized: dict[str, Any], inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:
        runs = self._runs
        root = runs.get(parent_run_id.int) if parent_run_id is not None else None
        if root is None:  # a top-level run (or one under a parent never seen: LangSmith's @traceable)
            thread = metadata.get("thread_id") if metadata else None
            root = _TopRun(run_id, str(kwargs.get("name") or "run"), str(thread) if thread is not None else None)
        runs[run_id.int] = root
        if len(runs) > self.limit:
            self._forget_oldest()

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        runs = self._runs
        root = runs.get(parent_run_id.int) if parent_run_id is not None else None
        if root is not None:  # a tool run on its own starts no trace: only a chain does
            runs[run_id.int] = root
            if len(runs) > self.limit:
                self._forget_oldest()

    # -- ends --------------------------------------------------------------------------------

    def _ended(self, run_id: UUID, error: BaseException | None) -> None:
        key = run_id.int
        root = self._runs.pop(key, None)
        if root is not None and root.run == key:
            root.end(None if error is None or _not_a_failure(error) else error)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, error)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._runs.pop(run_id.int, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._runs.pop(run_id.int, None)

    # -- bounded memory ------------------------------------------------------------------------

    def _forget_oldest(self) -> None:
        """Forget the oldest quarter of the runs (those that never ended, by then)."""
        if not self._evicting.acquire(blocking=False):
            return
        try:
            runs = self._runs
            try:
                oldest = list(itertools.islice(runs, max(len(runs) - self.limit * 3 // 4, 1)))
            except RuntimeError:  # resized by another thread meanwhile: next time
                return
            given_up = 0
            for key in oldest:
                root = runs.pop(key, None)
                if root is not None and not root.ended and root.run == key:
                    given_up += root.opened
                    root.end(unfinished=True)
            if not self._warned:
                self._warned = True
                log.warning("steproute: more than %d LangChain runs started and never ended; forgot the %d oldest "
                            "(%d root spans ended with steproute.run.unfinished=true)", self.limit, len(oldest), given_up)
        finally:
            self._evicting.release()


def _not_a_failure(error: BaseException) -> bool:
    return any(cls.__name__ in _NOT_FAILURES for cls in type(error).__mro__)


tracker = RunTracker()
"""The process's tracker, on every LangChain run through the configure hook below."""

_tracker_var: ContextVar[RunTracker | None] = ContextVar("steproute_run_tracker", default=tracker)
register_configure_hook(_tracker_var, inheritable=True)


def _instrumented_span(manager: Any, run_id: UUID | None, parent_run_id: UUID | None) -> trace.Span | None:
    """An OpenTelemetry-based instrumentation's span for the run (or its parent): a handler of the
    run with ``get_span(run_id)``, as OpenInference's ``OpenInferenceTracer`` has."""
    for handler in manager.handlers:
        get_span = getattr(handler, "get_span", None)
        if get_span is None or handler is tracker:
            continue
        for key in (run_id, parent_run_id):
            if key is None:
                continue
            try:
                span = get_span(key)
            except Exception:  # another library's handler with another get_span: not ours to judge
                break
            if isinstance(span, trace.Span) and span.get_span_context().is_valid:
                return span
    return None


def run_trace_context(run_manager: Any = None) -> otel_context.Context | None:
    """The parent of a routed call's ``route`` span (``StepRequest.trace_context``), for a call in
    the LangChain run of ``run_manager`` (``None`` when LangChain gave none, as when it streams:
    then the enclosing run, from the runnable config in context). ``None``: the current context.

    Example:
        >>> run_trace_context(None) is None  # outside any LangChain run
        True
    """
    if run_manager is not None:
        manager, run_id, parent_run_id = run_manager, run_manager.run_id, run_manager.parent_run_id
    else:
        config = var_child_runnable_config.get()
        manager = config.get("callbacks") if config else None
        if not isinstance(manager, BaseCallbackManager):
            return None
        run_id, parent_run_id = None, manager.parent_run_id
    if parent_run_id is None and run_id is None:
        return None
    span = _instrumented_span(manager, run_id, parent_run_id)
    if span is not None:
        return trace.set_span_in_context(span)
    if trace.get_current_span().get_span_context().is_valid:
        return None  # the application's span is the parent
    root = tracker.root(parent_run_id)
    return root.marker if root is not None else None
