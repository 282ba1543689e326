"""OpenTelemetry spans and metrics of routed calls, on ``opentelemetry-api`` only.

Each routed call is an INTERNAL span ``route {step}`` under the caller's current span (or under
the context the request carries, :attr:`~steproute.types.StepRequest.trace_context`), carrying
the decision and the step's totals; under it, a CLIENT span ``chat {model}`` for the model call
with the GenAI semantic-convention attributes and the call's cost. A :class:`RunRoot` in that
context is the root span of a graph run, opened by the run's first routed call. Attribute names are this
module's own constants (the GenAI conventions are still incubating, and their Python module is
private). Without an SDK installed and configured, every call here is a cheap no-op.

Example:
    >>> from opentelemetry.sdk.trace import TracerProvider                   # doctest: +SKIP
    >>> router = StepRouter(config, tracer_provider=TracerProvider())         # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from steproute._decision_counter import decision_counter
from steproute.tracing_backends import chat_cost_attributes

if TYPE_CHECKING:
    from steproute.latency import LatencyBook
    from steproute.types import Decision, StepRequest, Usage

__all__ = [
    "CHAT_SPAN_PREFIX",
    "ROUTE_SPAN_PREFIX",
    "RUN_ROOT",
    "RUN_SPAN_PREFIX",
    "RunRoot",
    "Telemetry",
    "configure",
    "error_type",
]

# -- attribute names: steproute's own --------------------------------------------------------
STEP = "steproute.step"
STEP_KIND = "steproute.step.kind"
POLICY = "steproute.policy"
TIER = "steproute.tier"
DECISION_ID = "steproute.decision.id"
DECISION_REASON = "steproute.decision.reason"
DECISION_SCORE = "steproute.decision.score"
PINNED = "steproute.pinned"
PIN_GROUP = "steproute.pin.group"
REPINNED = "steproute.repinned"
ESCALATED_FROM = "steproute.escalated_from"
GUARD = "steproute.guard"
LATENCY_FROM = "steproute.latency.moved_from"
EXPERIMENT, EXPERIMENT_ARM = "steproute.experiment", "steproute.experiment.arm"
EXPERIMENT_ASSIGNED = "steproute.experiment.assigned"
FALLBACK_FROM = "steproute.fallback.from"
ATTEMPTS = "steproute.attempts"
CASCADE_CHAIN = "steproute.cascade.chain"
CASCADE_ACCEPTED = "steproute.cascade.accepted"
CASCADE_CONFIDENCE = "steproute.cascade.confidence"
CASCADE_SIGNAL = "steproute.cascade.signal."
CASCADE_ROLE = "steproute.cascade.role"
STEP_COST = "steproute.step.cost.usd"
STEP_BASELINE_COST = "steproute.step.baseline_cost.usd"
STEP_SAVINGS = "steproute.step.savings.usd"
COST = "steproute.cost.usd"
STREAM_ABANDONED = "steproute.stream.abandoned"
USAGE_ESTIMATED = "steproute.usage.estimated"
LANGGRAPH_NODE = "langgraph.node"
RUN_UNFINISHED = "steproute.run.unfinished"
CAPABILITY_NEEDS = "steproute.capability.needs"
CAPABILITY_SKIPPED = "steproute.capability.skipped"
# -- GenAI semantic conventions (copied names, not imported) ---------------------------------
CONVERSATION_ID = "gen_ai.conversation.id"
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
TOKEN_TYPE = "gen_ai.token.type"
AGENT_NAME = "gen_ai.agent.name"
ERROR_TYPE = "error.type"
# -- OpenInference's, read by Phoenix (Langfuse's and LangSmith's: steproute.tracing_backends) --
OPENINFERENCE_COST = "llm.cost.total"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_MODEL = "llm.model_name"
OPENINFERENCE_PROVIDER = "llm.provider"
OPENINFERENCE_PROMPT_TOKENS = "llm.token_count.prompt"
OPENINFERENCE_COMPLETION_TOKENS = "llm.token_count.completion"
OPENINFERENCE_TOTAL_TOKENS = "llm.token_count.total"
OPENINFERENCE_CACHE_READ_TOKENS = "llm.token_count.prompt_details.cache_read"
OPENINFERENCE_INPUT = "input.value"
OPENINFERENCE_OUTPUT = "output.value"
OPENINFERENCE_OUTPUT_MIME = "output.mime_type"
OPENINFERENCE_PROJECT = "openinference.project.name"
ROUTE_SUMMARY = "steproute.summary"

ROUTE_SPAN_PREFIX = "route"
CHAT_SPAN_PREFIX = "chat"
RUN_SPAN_PREFIX = "invoke_agent"

RUN_ROOT = otel_context.create_key("steproute.run_root")
"""Context key of a :class:`RunRoot`: a ``trace_context`` holding one puts the ``route`` span under
the run's root span, opened on first use."""

_SCOPE = "steproute"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("steproute")
    except metadata.PackageNotFoundError:  # pragma: no cover - source tree
        return "0.0.0"


class RunRoot:
    """The root span of one graph run, opened lazily: by the run's first routed call, with the
    run's start time, so a run that routes no call makes no trace. Whoever watches the run
    (steproute's LangChain callback handler) calls :meth:`end` when it ends.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> root = RunRoot("my-graph", thread="t-1", start_ns=0)
        >>> parent = root.context(TracerProvider().get_tracer("example"))  # opens the span
        >>> root.end()
        >>> root.opened, root.ended
        (True, True)
    """

    __slots__ = ("_context", "_marker", "_span", "ended", "name", "start_ns", "thread")

    _lock = threading.Lock()
    """One for all runs: taken only to open and to end a root (made for every top-level run,
    a root stays cheap until a routed call opens it)."""

    def __init__(self, name: str, *, thread: str | None = None, start_ns: int | None = None) -> None:
        self.name = name
        self.thread = thread
        self.start_ns = start_ns
        self.ended = False
        self._span: trace.Span | None = None
        self._context: otel_context.Context | None = None
        self._marker: otel_context.Context | None = None

    @property
    def marker(self) -> otel_context.Context:
        """The ``trace_context`` to give a :class:`~steproute.types.StepRequest` of this run."""
        marker = self._marker
        if marker is None:
            marker = self._marker = otel_context.set_value(RUN_ROOT, self, otel_context.Context())
        return marker

    @property
    def opened(self) -> bool:
        return self._span is not None

    def context(self, tracer: trace.Tracer, thread: str | None = None) -> otel_context.Context | None:
        """The context to start a routed call's span in: the root span's, opened on first use
        (``None`` when the run has ended without one: the call starts its own trace)."""
        if self._context is not None:
            return self._context
        with self._lock:
            if self._context is None and not self.ended:
                thread = self.thread or thread
                attributes: dict[str, Any] = {OPERATION_NAME: "invoke_agent", AGENT_NAME: self.name,
                                              OPENINFERENCE_SPAN_KIND: "AGENT"}
                if thread is not None:
                    attributes[CONVERSATION_ID] = thread
                self._span = tracer.start_span(f"{RUN_SPAN_PREFIX} {self.name}", context=otel_context.Context(),
                                               kind=SpanKind.INTERNAL, attributes=attributes,
                                               start_time=self.start_ns)
                self._context = trace.set_span_in_context(self._span)
            return self._context

    def end(self, error: BaseException | None = None, *, unfinished: bool = False) -> None:
        """The run ended (with ``error``, if it failed); ``unfinished``: it was given up on
        without an end (the span says so)."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
            span = self._span
        if span is None:
            return
        if span.is_recording():
            if error is not None:
                _set_error(span, error)
            if unfinished:
                span.set_attribute(RUN_UNFINISHED, True)
        span.end()


class Telemetry:
    """Makes the spans and records the metrics of routed calls.

    ``record_content`` (off by default) puts each answered call's prompt (its messages, as
    JSON) and answer on its ``chat`` span as OpenInference's ``input.value``/``output.value``,
    each passed through ``redact`` first when given.

    ``tracer_provider``/``meter_provider`` default to the global ones (set by the application
    or :func:`configure`), looked up on each use, so a provider installed after the router was
    built is still used. ``latency``: the router's observed latency, exported as metrics.
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None, *, record_content: bool = False,
                 redact: Callable[[str], str] | None = None, latency: LatencyBook | None = None) -> None:
        self.record_content = record_content
        """Whether ``chat`` spans carry the prompt and the answer (``input.value``/``output.value``)."""
        self.redact = redact
        """Applied to recorded text first (the PII guard's :meth:`~steproute.guards.PiiGuard.redact`)."""
        version = _version()
        self.tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, version, meter_provider=meter_provider)
        self.cost = meter.create_counter("steproute.cost", unit="USD", description="Cost of routed model calls")
        self.calls = meter.create_counter("steproute.calls", unit="{call}", description="Routed model calls")
        self.tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                             description="Tokens per model call, by token type")
        self.duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                               description="Duration of model calls")
        self.decision_duration = meter.create_histogram("steproute.decision.duration", unit="s",
                                                        description="Time to choose a tier")
        self.decisions = decision_counter(meter)  # steproute.decisions: tier mix, escalation, fallback by step
        if latency is not None:
            latency.export(meter)

    # -- the route span ---------------------------------------------------------------------

    def start_route(self, request: StepRequest) -> trace.Span:
        """Open ``route {step}`` (not made current) as a child of ``request.trace_context`` when
        given (under its :class:`RunRoot`'s span, if it holds one), else of the current span."""
        parent = request.trace_context
        if parent is not None:
            root = otel_context.get_value(RUN_ROOT, parent)
            if isinstance(root, RunRoot):
                parent = root.context(self.tracer, request.thread)
        attributes: dict[str, Any] = {STEP: request.step, OPENINFERENCE_SPAN_KIND: "CHAIN"}
        node = request.metadata.get("langgraph_node") if isinstance(request.metadata, Mapping) else None
        if node is not None:
            attributes[LANGGRAPH_NODE] = str(node)
        if request.thread is not None:
            attributes[CONVERSATION_ID] = request.thread
        return self.tracer.start_span(f"{ROUTE_SPAN_PREFIX} {request.step}", context=parent,
                                      kind=SpanKind.INTERNAL, attributes=attributes)

    def decided(self, span: trace.Span, decision: Decision, seconds: float) -> None:
        self.decision_duration.record(seconds, {STEP: decision.step, POLICY: decision.policy})
        if not span.is_recording():
            return
        span.set_attributes({
            STEP_KIND: decision.kind or "",
            POLICY: decision.policy,
            TIER: decision.tier,
            DECISION_ID: decision.id,
            DECISION_REASON: decision.reason,
            PINNED: decision.pinned,
        })
        if decision.score is not None:
            span.set_attribute(DECISION_SCORE, decision.score)
        if decision.escalated_from is not None:
            span.set_attribute(ESCALATED_FROM, decision.escalated_from)
        if decision.guard is not None:
            span.set_attribute(GUARD, decision.guard)
        if decision.latency_from is not None:
            span.set_attribute(LATENCY_FROM, decision.latency_from)
        if decision.pin_group is not None:
            span.set_attribute(PIN_GROUP, decision.pin_group)
        if (arm := decision.experiment) is not None:
            span.set_attributes({EXPERIMENT: arm.name, EXPERIMENT_ARM: arm.arm, EXPERIMENT_ASSIGNED: arm.assigned})

    def fell_back(self, span: trace.Span, decision: Decision) -> None:
        """A cross-tier fallback on the ``route`` span: the tier that answered, and the one that failed."""
        if span.is_recording() and decision.fallback_from is not None:
            span.set_attributes({TIER: decision.tier, FALLBACK_FROM: decision.fallback_from,
                                 DECISION_REASON: decision.reason})

    def cascaded(self, span: trace.Span, decision: Decision) -> None:
        """A cascade's outcome on its ``route`` span: the tier that answered and the chain."""
        if not span.is_recording() or not decision.cascade:
            return
        span.set_attributes({
            TIER: decision.tier,
            ATTEMPTS: decision.attempts,
            CASCADE_CHAIN: [a.tier for a in decision.cascade],
            DECISION_REASON: decision.reason,
        })
        if decision.escalated_from is not None:
            span.set_attribute(ESCALATED_FROM, decision.escalated_from)

    def end_route(self, span: trace.Span, cost_usd: float, baseline_cost_usd: float | None,
                  error: BaseException | None = None, *, repinned: bool = False, tier: str | None = None) -> None:
        """Close a ``route`` span with the step's cost; its baseline and savings only when it
        has one (``None``: a failed call, nothing answered to price on the baseline tier).
        A one-line summary (tier and cost, readable at fractions of a cent) is its
        ``output.value``, the first thing a tracing UI shows of a span."""
        if span.is_recording():
            summary = route_summary(tier, cost_usd, baseline_cost_usd, failed=error is not None)
            span.set_attributes({STEP_COST: cost_usd, REPINNED: repinned, ROUTE_SUMMARY: summary,
                                 OPENINFERENCE_OUTPUT: summary, OPENINFERENCE_OUTPUT_MIME: "text/plain"})
            if baseline_cost_usd is not None:
                span.set_attributes({STEP_BASELINE_COST: baseline_cost_usd,
                                     STEP_SAVINGS: baseline_cost_usd - cost_usd})
            if error is not None:
                _set_error(span, error)
        span.end()

    # -- chat spans: one per attempt, made when its outcome is known --------------------------

    def chat(
        self,
        route: trace.Span,
        decision: Decision,
        *,
        model: str,
        provider: str,
        started_ns: int,
        ended_ns: int,
        usage: Usage | None = None,
        cost_usd: float = 0.0,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reason: str | None = None,
        error_type: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        messages: Any = None,
        response: str | None = None,
    ) -> None:
        """Record one model call: a ``chat {model}`` span under ``route`` and its metrics;
        ``attributes`` are added to the span (a cascade attempt's verdict); ``messages`` and
        ``response``, the call's prompt and answer, only when content is recorded."""
        base: dict[str, str] = {OPERATION_NAME: "chat", PROVIDER_NAME: provider, REQUEST_MODEL: model}
        if response_model:
            base[RESPONSE_MODEL] = response_model
        if error_type is not None:
            base[ERROR_TYPE] = error_type
        self.duration.record(max(ended_ns - started_ns, 0) / 1e9, base)
        if usage is not None:
            self.tokens.record(usage.input_tokens, {**base, TOKEN_TYPE: "input"})
            self.tokens.record(usage.output_tokens, {**base, TOKEN_TYPE: "output"})
        labels: dict[str, str | bool] = {STEP: decision.step, TIER: decision.tier, REQUEST_MODEL: model,
                                         POLICY: decision.policy, PINNED: decision.pinned}
        if error_type is not None:
            labels[ERROR_TYPE] = error_type
        self.calls.add(1, labels)
        if cost_usd:
            self.cost.add(cost_usd, labels)
        span = self.tracer.start_span(f"{CHAT_SPAN_PREFIX} {model}", context=trace.set_span_in_context(route),
                                      kind=SpanKind.CLIENT, start_time=started_ns)
        if span.is_recording():
            span_attributes: dict[str, Any] = {**base, COST: cost_usd, OPENINFERENCE_COST: cost_usd,
                                               OPENINFERENCE_SPAN_KIND: "LLM", OPENINFERENCE_PROVIDER: provider,
                                               OPENINFERENCE_MODEL: model,
                                               **chat_cost_attributes(model, provider, cost_usd, usage)}
            if usage is not None:
                span_attributes.update({
                    INPUT_TOKENS: usage.input_tokens, OUTPUT_TOKENS: usage.output_tokens,
                    OPENINFERENCE_PROMPT_TOKENS: usage.input_tokens,
                    OPENINFERENCE_COMPLETION_TOKENS: usage.output_tokens,
                    OPENINFERENCE_TOTAL_TOKENS: usage.total_tokens,
                })
                if usage.cache_read_tokens:
                    span_attributes[CACHE_READ_TOKENS] = usage.cache_read_tokens
                    span_attributes[OPENINFERENCE_CACHE_READ_TOKENS] = min(usage.cache_read_tokens,
                                                                           usage.input_tokens)
            if response_id:
                span_attributes[RESPONSE_ID] = response_id
            if finish_reason:
                span_attributes[FINISH_REASONS] = [finish_reason]
            if attributes:
                span_attributes.update(attributes)
            if self.record_content:
                span_attributes.update(self._content(messages, response))
            span.set_attributes(span_attributes)
            if error_type is not None:
                span.set_status(Status(StatusCode.ERROR, error_type))
        span.end(end_time=ended_ns)

    def _content(self, messages: Any, response: str | None) -> dict[str, str]:
        content: dict[str, str] = {}
        for key, value in ((OPENINFERENCE_INPUT, messages), (OPENINFERENCE_OUTPUT, response)):
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
            content[key] = self.redact(text) if self.redact is not None else text
        if OPENINFERENCE_INPUT in content and not isinstance(messages, str):
            content["input.mime_type"] = "application/json" if content[OPENINFERENCE_INPUT].startswith("[{") else "text/plain"
        return content

    @staticmethod
    def trace_id(span: trace.Span) -> str | None:
        """The span's trace id as 32 hex digits, or ``None`` when it is not sampled."""
        context = span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None


def usd(amount: float) -> str:
    """A cost in dollars, readable at fractions of a cent: two significant digits below $0.01.

    Example:
        >>> usd(0.0017), usd(0.000012345), usd(1.5), usd(0.0)
        ('$0.0017', '$0.000012', '$1.50', '$0')
    """
    if amount == 0:
        return "$0"
    if abs(amount) >= 0.01:
        return f"${amount:.2f}"
    decimals = min(12, 1 - math.floor(math.log10(abs(amount))))
    return f"${amount:.{decimals}f}"


def route_summary(tier: str | None, cost_usd: float, baseline_cost_usd: float | None, *, failed: bool = False) -> str:
    """The ``route`` span's one-line summary: tier, cost, and the saving on the baseline tier.

    Example:
        >>> route_summary("fast", 0.0017, 0.0100)
        'tier fast · $0.0017 (baseline $0.01, saved $0.0083)'
    """
    text = f"tier {tier or '?'} · {usd(cost_usd)}"
    if baseline_cost_usd is not None:
        text += f" (baseline {usd(baseline_cost_usd)}, saved {usd(baseline_cost_usd - cost_usd)})"
    return text + (" · failed" if failed else "")


def error_type(error: BaseException) -> str:
    """The name ``error.type`` records: the provider's error behind a steproute error."""
    cause = error.__cause__
    return type(cause if cause is not None else error).__name__


def _set_error(span: trace.Span, error: BaseException) -> None:
    span.set_attribute(ERROR_TYPE, error_type(error))
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def configure(
    *,
    service_name: str = "steproute",
    project_name: str | None = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    export_metrics: bool = True,
    metrics_interval_s: float = 30.0,
) -> tuple[Any, Any]:
    """Install global tracer and meter providers that export over OTLP/HTTP (an application
    convenience; needs the ``otel`` extra: ``pip install 'steproute[otel]'``).

    ``endpoint`` is the collector's base URL (``http://127.0.0.1:6006`` for Phoenix,
    ``http://127.0.0.1:4318`` for an OpenTelemetry Collector); without it the standard
    ``OTEL_EXPORTER_OTLP_*`` variables apply. ``export_metrics=False`` for backends that take
    only traces (Phoenix answers 405 to metrics). ``project_name`` (default: ``service_name``)
    is the ``openinference.project.name`` resource attribute: the Phoenix project the traces
    land in (without it, Phoenix's "default"). Returns ``(tracer_provider, meter_provider)``;
    call their ``shutdown()`` to flush before exit.

    Raises:
        ImportError: the SDK or the exporter is not installed (the message says how to).
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ImportError(f"steproute.telemetry.configure needs the otel extra: pip install 'steproute[otel]' ({exc})") from None
    resource = Resource.create({"service.name": service_name, OPENINFERENCE_PROJECT: project_name or service_name})
    base = endpoint.rstrip("/") if endpoint else None
    span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None, headers=dict(headers or {}))
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    readers = []
    if export_metrics:
        metric_exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None, headers=dict(headers or {}))
        readers.append(PeriodicExportingMetricReader(metric_exporter, export_interval_millis=metrics_interval_s * 1000))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider
