"""Leftovers of issue 17 in the dispatch path, without a server: the stream walk's bounds, a
tier cooling down named as such, what a paid failed attempt adds to the step, and a failed
call's ``route`` span without savings. (Over HTTP: tests/integration/test_dispatch_leftovers_llmock.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import DispatchError, StepRequest
from steproute._call import CallRecord
from steproute._refusals import COOLED_DOWN, Refusals
from steproute._stream_walk import StreamWalk
from steproute.errors import Attempt, failure_note
from steproute.telemetry import Telemetry
from steproute.types import Decision, Usage


class Dropped(Exception):
    """A connection dropped before the first chunk (transient)."""


def walk_of(deployments: list[str], tries: int) -> StreamWalk[str]:
    return StreamWalk(deployments, tries, str, lambda failures: tuple(Attempt(f[0], type(f[1]).__name__)
                                                                       for f in failures),
                      lambda exc, failures: DispatchError("s", "fast", [Attempt(f[0], "X") for f in failures]))


@pytest.mark.parametrize("tries", [1, 2, 3])
def test_the_walk_opens_each_deployment_at_most_tries_times_then_fails_with_every_attempt(tries):
    walk = walk_of(["a", "b"], tries)
    opened = []
    with pytest.raises(DispatchError) as info:
        for d in walk:
            opened.append(d)
            with walk.opening(d):
                pass
            walk.failed(d, Dropped())
    assert opened == ["a"] * tries + ["b"] * tries
    assert [a.model for a in info.value.attempts] == opened


def test_the_walk_never_reopens_a_stream_that_started():
    walk = walk_of(["a", "b"], 3)
    with pytest.raises(DispatchError) as info:
        for d in walk:
            with walk.opening(d):
                pass
            walk.started = True
            walk.failed(d, Dropped())
    assert [a.model for a in info.value.attempts] == ["a"]


def test_a_refused_open_moves_to_the_next_deployment_at_once():
    class AuthenticationError(Exception):
        status_code = 401

    walk = walk_of(["a", "b"], 3)
    opened = []
    for d in walk:
        opened.append(d)
        if d == "a":
            with walk.opening(d):
                pass
            walk.failed(d, AuthenticationError("bad key"))
            continue
        break
    assert opened == ["a", "b"]


def test_a_tier_cooling_down_is_one_attempt_that_names_no_deployment():
    err = Refusals(2).cooled_down("extract", "fast")
    (attempt,) = err.attempts
    assert (attempt.model, attempt.error_type, attempt.kind, attempt.cost_usd) == (None, COOLED_DOWN, None, None)
    assert "none was called" in attempt.message and "tier 'fast'" in attempt.message
    assert "no deployment (CooledDown)" in str(err)
    assert failure_note(err.attempts).startswith("no deployment: CooledDown (every deployment of tier 'fast'")


def test_litellms_no_deployments_error_with_no_attempt_is_the_cooled_down_one():
    class RouterRateLimitError(Exception):
        pass

    err = Refusals(2).error("extract", "fast", (), RouterRateLimitError("No deployments available"),
                            "openai/gpt-4o-mini", "openai")
    assert [(a.model, a.error_type) for a in err.attempts] == [(None, COOLED_DOWN)]


# -- CallRecord: paid failed attempts, no savings on failure ------------------------------------


def record_with_spans(request: StepRequest) -> tuple[CallRecord, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return CallRecord(Telemetry(tracer_provider=provider), None, request), exporter


class Hold:
    def __init__(self) -> None:
        self.settled: list[tuple[float, bool]] = []

    def settle(self, cost: float, usage_known: bool = True) -> None:
        self.settled.append((cost, usage_known))


class Where:
    provider = "openai"


def decision(tier: str = "fast", model: str = "openai/gpt-4o-mini", **extra: Any) -> Decision:
    return Decision(step="extract", kind=None, tier=tier, model=model, policy="fixed", reason="fixed", **extra)


def test_a_paid_failed_attempt_is_on_the_steps_cost_span_and_budget():
    request = StepRequest("extract", [{"role": "user", "content": "hi"}])
    record, exporter = record_with_spans(request)
    record.budget = hold = Hold()
    record.decided(decision(), Where())  # type: ignore[arg-type]
    malformed = Attempt("openai/gpt-4o-mini", "MalformedResponse", "openai", cost_usd=0.003)
    cooled = Attempt(None, COOLED_DOWN)
    record.tier_failed(decision(), [cooled, malformed], error_type="DispatchError", deployment=Where())  # type: ignore[arg-type]
    total = record.answered(decision(tier="strong", model="openai/gpt-4o"), usage=Usage(10, 5), cost_usd=0.01,
                            baseline_cost_usd=0.01, provider="openai")
    assert total == pytest.approx(0.013)
    assert hold.settled == [(pytest.approx(0.013), True)]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"chat openai/gpt-4o-mini", "chat openai/gpt-4o", "route extract"}  # none for `cooled`
    assert spans["chat openai/gpt-4o-mini"].attributes["steproute.cost.usd"] == pytest.approx(0.003)
    route = spans["route extract"].attributes
    assert route["steproute.step.cost.usd"] == pytest.approx(0.013)
    assert route["steproute.step.savings.usd"] == pytest.approx(-0.003)  # real: the malformed answer was paid


def test_a_failed_call_has_its_cost_and_no_baseline_nor_savings_on_its_span():
    request = StepRequest("extract", [{"role": "user", "content": "hi"}])
    record, exporter = record_with_spans(request)
    record.budget = hold = Hold()
    record.decided(decision(), Where())  # type: ignore[arg-type]
    error = DispatchError("extract", "fast", [Attempt("openai/gpt-4o-mini", "MalformedResponse", "openai",
                                                      cost_usd=0.002)])
    record.failed(error)
    assert hold.settled == [(pytest.approx(0.002), True)]
    (route,) = [s for s in exporter.get_finished_spans() if s.name == "route extract"]
    assert route.attributes["steproute.step.cost.usd"] == pytest.approx(0.002)
    assert "steproute.step.savings.usd" not in route.attributes
    assert "steproute.step.baseline_cost.usd" not in route.attributes


def test_a_failed_call_that_spent_nothing_has_no_savings_either():
    record, exporter = record_with_spans(StepRequest("extract", [{"role": "user", "content": "hi"}]))
    record.decided(decision(), Where())  # type: ignore[arg-type]
    record.failed(DispatchError("extract", "fast", [Attempt("openai/gpt-4o-mini", "Timeout", "openai")]))
    (route,) = [s for s in exporter.get_finished_spans() if s.name == "route extract"]
    assert route.attributes["steproute.step.cost.usd"] == 0.0
    assert "steproute.step.savings.usd" not in route.attributes
