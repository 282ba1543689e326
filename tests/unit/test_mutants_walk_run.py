"""Tests that kill mutmut mutants of steproute/_walk_run.py (see docs/architecture.md, "Mutation testing").

Each routes a call through the real router with :class:`~steproute.testing.FunctionTransport`
and reads what a user sees: the ``chat`` spans (role, verdict, provider, tokens, cost), the
``steproute.calls`` metric's tier, the decision's cascade and cost, the calls the tiers got,
the warning logged once, and the pin stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import DispatchError, Hint, RouterConfig, StepRequest, StepRouter
from steproute.completions import Completion, TokenLogprob, ToolCall
from steproute.errors import Attempt
from steproute.pinning import InMemoryPinStore, Pin
from steproute.policies.confidence import JUDGE_PROMPT
from steproute.testing import FunctionTransport, Reply, TierCall
from steproute.types import Usage

FAST, FAST2, STRONG = "openai/gpt-4o-mini", "openai/gpt-4.1-mini", "openai/gpt-4o"
TIERS = {"fast": {"models": [{"model": FAST, "api_key": "sk-fast"}, {"model": FAST2, "api_key": "sk-fast2"}]},
         "strong": {"models": [{"model": STRONG, "api_key": "sk-strong"}]}}
HI = [{"role": "user", "content": "How much are 3 notebooks at 4.50?"}]
USAGE = Usage(11, 7)

ROLE, ACCEPTED, CONFIDENCE = "steproute.cascade.role", "steproute.cascade.accepted", "steproute.cascade.confidence"


class Seen:
    """A router over ``handler`` with its spans, metrics and calls recorded."""

    def __init__(self, handler: Any, steps: dict[str, Any] | None = None, tiers: Any = None, **config: Any) -> None:
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.transport = FunctionTransport(handler)
        self.pins = InMemoryPinStore()
        self.router = StepRouter(RouterConfig(tiers=tiers or TIERS, default="fast", steps=steps or {}, **config),
                                 tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[self.reader]),
                                 transport=self.transport, pin_store=self.pins)

    def chats(self, role: str | None = None) -> list[Any]:
        spans = [s for s in self.exporter.get_finished_spans() if s.name.startswith("chat")]
        return spans if role is None else [s for s in spans if s.attributes.get(ROLE) == role]

    def calls_by_tier(self) -> dict[tuple[Any, Any, Any], int]:
        """``steproute.calls`` by (tier, model, error type)."""
        out: dict[tuple[Any, Any, Any], int] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != "steproute.calls":
                        continue
                    for point in metric.data.data_points:
                        a = point.attributes
                        key = (a.get("steproute.tier"), a.get("gen_ai.request.model"), a.get("error.type"))
                        out[key] = out.get(key, 0) + point.value
        return out


def cascade(*signals: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"calc": {"policy": "cascade", "tiers": ["fast", "strong"], "signals": list(signals), **kw}}


def ask(text: str = "", **kw: Any) -> StepRequest:
    return StepRequest("calc", [{"role": "user", "content": text}] if text else HI, **kw)


def is_judge(call: TierCall) -> bool:
    return call.messages[0].get("content") == JUDGE_PROMPT


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes)


# -- the signals' own calls: Probe.samples, Probe.ask, their spans and cost ---------------------------


def test_consistency_samples_ask_the_same_tier_warmer_and_each_is_booked_and_paid():
    def answer(call: TierCall) -> Reply:
        if call.params.get("temperature") == 0.7 and call.deployment == 0:
            raise TimeoutError("the first deployment is slow for samples")
        return Reply("13.50", finish_reason="stop", usage=USAGE)

    seen = Seen(answer, cascade({"signal": "consistency", "samples": 3}))
    result = seen.router.complete(ask())
    calls = seen.transport.calls
    assert [(c.step, c.tier, c.model, c.params.get("temperature")) for c in calls] == [
        ("calc", "fast", FAST, None),
        ("calc", "fast", FAST, 0.7), ("calc", "fast", FAST2, 0.7),  # a sample: the first deployment fails
        ("calc", "fast", FAST, 0.7), ("calc", "fast", FAST2, 0.7)]
    (only,) = result.decision.cascade
    assert (only.tier, only.accepted, only.signals) == ("fast", True, (("consistency", 1.0),))
    samples = seen.chats("sample")
    assert len(samples) == 2
    for span in samples:
        a = attrs(span)
        assert (a["gen_ai.request.model"], a["gen_ai.provider.name"], a["gen_ai.response.model"]) == (FAST2, "openai", FAST2)
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 7)
        assert a["gen_ai.response.finish_reasons"] == ("stop",) and a["steproute.cost.usd"] > 0
    failed = [s for s in seen.chats() if s.attributes.get("error.type") == "TimeoutError"]
    assert [s.attributes["gen_ai.request.model"] for s in failed] == [FAST, FAST]  # the samples' failed attempts
    paid = sum(s.attributes["steproute.cost.usd"] for s in seen.chats())
    assert only.cost_usd == pytest.approx(paid) and result.cost_usd == pytest.approx(paid)
    assert only.cost_usd > result.completion.cost_usd  # the samples are carried on the attempt
    tiers = seen.calls_by_tier()
    assert tiers == {("fast", FAST, None): 1, ("fast", FAST2, None): 2, ("fast", FAST, "TimeoutError"): 2}


def test_consistency_samples_keep_a_warmer_temperature_the_call_gave():
    seen = Seen(lambda call: Reply("13.50", usage=USAGE), cascade({"signal": "consistency", "samples": 2}))
    seen.router.complete(ask(), temperature=0.9)
    assert [c.params["temperature"] for c in seen.transport.calls] == [0.9, 0.9]
    cool = Seen(lambda call: Reply("13.50", usage=USAGE), cascade({"signal": "consistency", "samples": 2}))
    cool.router.complete(ask(), temperature=0.2)
    assert [c.params["temperature"] for c in cool.transport.calls] == [0.2, 0.7]


def test_a_judge_is_asked_cold_and_short_and_its_yes_accepts():
    def answer(call: TierCall) -> Reply:
        return Reply("yes" if is_judge(call) else "13.50", usage=USAGE)

    seen = Seen(answer, cascade({"signal": "judge", "tier": "strong"}))
    result = seen.router.complete(ask())
    (_, judge) = seen.transport.calls
    assert (judge.step, judge.tier, dict(judge.params)) == ("calc", "strong", {"max_tokens": 4, "temperature": 0})
    (only,) = result.decision.cascade
    assert (only.tier, only.accepted, only.signals, only.confidence) == ("fast", True, (("judge", 1.0),), 1.0)
    (span,) = seen.chats("judge")
    assert (span.attributes["gen_ai.request.model"], span.attributes["gen_ai.provider.name"]) == (STRONG, "openai")
    assert seen.calls_by_tier() == {("fast", FAST, None): 1, ("strong", STRONG, None): 1}
    assert result.cost_usd == pytest.approx(sum(s.attributes["steproute.cost.usd"] for s in seen.chats()))


def test_a_judge_reads_a_tool_call_answer_as_its_tool_calls():
    call_1 = ToolCall("call_1", "price_of", '{"product": "notebook"}')

    def answer(call: TierCall) -> Reply:
        return Reply("no" if is_judge(call) else "", tool_calls=[call_1] if not is_judge(call) else (), usage=USAGE)

    seen = Seen(answer, cascade({"signal": "judge", "tier": "strong"}))
    result = seen.router.complete(ask())
    judged = seen.transport.calls[1].messages[1]["content"]
    assert '"tool": "price_of"' in judged and '"arguments": "{\\"product\\": \\"notebook\\"}"' in judged
    assert result.decision.cascade[0].signals == (("judge", 0.0),)


def test_the_logprob_signal_reads_the_answers_token_logprobs():
    def answer(call: TierCall) -> Completion:
        return Completion("13.50", call.model, "openai", USAGE, 0.001, finish_reason="stop",
                          logprobs=(TokenLogprob("13", -0.1), TokenLogprob(".50", -0.3)))

    seen = Seen(answer, cascade({"signal": "logprob", "threshold": 0.5}))
    result = seen.router.complete(ask())
    assert seen.transport.calls[0].params["logprobs"] is True
    (only,) = result.decision.cascade
    assert only.accepted and only.signals == (("logprob", pytest.approx(math.exp(-0.2))),)
    assert only.confidence == pytest.approx(math.exp(-0.2))


# -- a rejected answer: WalkRun.judge ------------------------------------------------------------------


def hedging_fast(call: TierCall) -> Reply:
    if call.tier == "fast" and call.deployment == 0:
        raise TimeoutError("slow")
    text = "I'm not sure, I cannot say." if call.tier == "fast" else "13.50 EUR"
    return Reply(text, finish_reason="stop", usage=USAGE)


def test_a_rejected_answer_has_its_own_span_with_its_verdict_and_the_calls_before_it():
    seen = Seen(hedging_fast, cascade({"signal": "hedging"}))
    before = time.time_ns()
    result = seen.router.complete(ask())
    assert all(before <= s.start_time <= s.end_time <= time.time_ns() for s in seen.chats())  # each span its own time
    first, last = result.decision.cascade
    assert (first.tier, first.model, first.accepted, first.confidence) == ("fast", FAST2, False, 0.0)
    assert (last.tier, last.model, last.accepted, last.reason) == ("strong", STRONG, None, "last tier: not judged")
    (rejected,) = [s for s in seen.chats("attempt") if "error.type" not in s.attributes]
    a = attrs(rejected)
    assert (a[ACCEPTED], a[CONFIDENCE], a["steproute.cascade.signal.hedging"]) == (False, 0.0, 0.0)
    assert (a["gen_ai.request.model"], a["gen_ai.provider.name"], a["gen_ai.response.model"]) == (FAST2, "openai", FAST2)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 7)
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    timed_out = [s for s in seen.chats() if s.attributes.get("error.type") == "TimeoutError"]
    assert [s.attributes["gen_ai.request.model"] for s in timed_out] == [FAST]  # the rejected attempt's failed call
    assert seen.calls_by_tier() == {("fast", FAST, "TimeoutError"): 1, ("fast", FAST2, None): 1,
                                    ("strong", STRONG, None): 1}
    assert result.cost_usd == pytest.approx(first.cost_usd + result.completion.cost_usd)


def test_a_rejected_answer_with_samples_carries_their_cost():
    def answer(call: TierCall) -> Reply:
        if call.tier == "strong":
            return Reply("13.50", usage=USAGE)
        return Reply(f"maybe {len(seen.transport.calls)}", usage=USAGE)  # every sample differs: rejected

    seen = Seen(answer, cascade({"signal": "consistency", "samples": 3}))
    before = time.time_ns()
    result = seen.router.complete(ask())
    assert all(before <= s.start_time <= s.end_time for s in seen.chats())  # the rejected attempt's from its call
    first, _ = result.decision.cascade
    fast_spans = [s for s in seen.chats() if s.attributes["gen_ai.request.model"] == FAST]
    assert len(fast_spans) == 3 and first.accepted is False
    assert first.cost_usd == pytest.approx(sum(s.attributes["steproute.cost.usd"] for s in fast_spans))


# -- the answer's span and cost: WalkRun.answered, _book ---------------------------------------------


def test_an_accepted_answers_span_carries_its_verdict_and_response():
    seen = Seen(lambda call: Reply("13.50 EUR", finish_reason="stop", usage=USAGE), cascade({"signal": "hedging"}))
    result = seen.router.complete(ask())
    (answer,) = seen.chats("answer")
    a = attrs(answer)
    assert (a[ACCEPTED], a[CONFIDENCE], a["steproute.cascade.signal.hedging"]) == (True, 1.0, 1.0)
    assert (a["gen_ai.response.model"], a["gen_ai.response.id"], a["gen_ai.response.finish_reasons"]) == (
        FAST, result.completion.response_id, ("stop",))
    assert result.completion.response_id and result.decision.score == 1.0


def test_the_last_tiers_unjudged_answer_names_its_model_and_has_no_verdict_on_its_span():
    seen = Seen(hedging_fast, cascade({"signal": "hedging"}))
    result = seen.router.complete(ask())
    assert result.decision.cascade[-1].model == STRONG
    (answer,) = seen.chats("answer")
    assert ACCEPTED not in answer.attributes and CONFIDENCE not in answer.attributes


def test_a_paid_malformed_attempt_before_the_answer_is_in_the_steps_cost():
    malformed = Attempt(FAST, "MalformedResponse", "openai", kind=None, cost_usd=0.25)

    def answer(call: TierCall) -> Completion:
        return Completion("13.50", FAST2, "openai", USAGE, 0.001, failed_attempts=(malformed,))

    seen = Seen(answer)
    result = seen.router.complete(ask())
    assert result.cost_usd == pytest.approx(0.251)


# -- a failed tier: WalkRun.failed ---------------------------------------------------------------------


def failing_fast(call: TierCall) -> str:
    if call.tier == "fast":
        raise ZeroDivisionError("down")
    return "13.50 EUR"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("steproute") and r.levelno == logging.WARNING]


def test_a_fallback_is_logged_once_naming_the_step_the_tier_and_where_it_went(caplog):
    seen = Seen(failing_fast)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        result = seen.router.complete(ask())
        seen.router.complete(ask())
    assert result.decision.fallback_from == "fast"
    (message,) = warnings_of(caplog)
    assert message.startswith("step 'calc', tier 'fast': ") and message.endswith(
        "; fell back to tier 'strong' (logged once per step, tier and error)")
    failed = [s for s in seen.chats() if "error.type" in s.attributes]
    assert [(s.attributes["gen_ai.request.model"], s.attributes["error.type"]) for s in failed][:2] == [
        (FAST, "ZeroDivisionError"), (FAST2, "ZeroDivisionError")]
    assert all(ROLE not in s.attributes for s in seen.chats())
    assert seen.calls_by_tier()[("fast", FAST, "ZeroDivisionError")] == 2
    other = Seen(failing_fast)  # another router logs it once too
    with caplog.at_level(logging.WARNING, logger="steproute"):
        caplog.clear()
        other.router.complete(ask())
    assert len(warnings_of(caplog)) == 1


def test_a_cascade_tier_that_fails_is_an_attempt_and_the_log_says_it_escalated(caplog):
    seen = Seen(failing_fast, cascade({"signal": "hedging"}))
    with caplog.at_level(logging.WARNING, logger="steproute"):
        result = seen.router.complete(ask())
    failed_tier = result.decision.cascade[0]
    assert (failed_tier.tier, failed_tier.model, failed_tier.accepted) == ("fast", FAST, None)  # its first deployment
    assert failed_tier.reason.startswith("failed: ")
    (message,) = warnings_of(caplog)
    assert message.startswith("step 'calc', tier 'fast': ") and message.endswith(
        "; the cascade escalated to tier 'strong' (logged once per step, tier and error)")
    failed = [s for s in seen.chats() if "error.type" in s.attributes]
    assert len(failed) == 2 and all(s.attributes[ROLE] == "attempt" for s in failed)
    assert {s.attributes["error.type"] for s in failed} == {"ZeroDivisionError"}


def test_a_refusal_that_fallback_on_lets_through_is_named_in_the_log(caplog):
    from steproute import ProviderAuthError
    from steproute.errors import ProviderFailure

    def answer(call: TierCall) -> str:
        if call.tier == "fast":
            failure = ProviderFailure("auth", "AuthenticationError", "Incorrect API key provided.")
            raise ProviderAuthError(call.step, call.tier, (Attempt(call.model, "AuthenticationError", "openai",
                                                                   kind="auth"),),
                                    deployment=call.model, provider="openai", failure=failure)
        return "42"

    seen = Seen(answer, {"calc": {"policy": "fixed", "tier": "fast", "fallback_on": ["auth"]}})
    with caplog.at_level(logging.WARNING, logger="steproute"):
        assert seen.router.complete(ask()).decision.fallback_from == "fast"
    (message,) = warnings_of(caplog)
    assert message.endswith("; fell back to tier 'strong' (fallback_on lists 'auth') (logged once per step, tier "
                            "and error)")
    (failed,) = [s for s in seen.chats() if "error.type" in s.attributes]
    assert (failed.attributes["gen_ai.request.model"], failed.attributes["error.type"]) == (FAST, "AuthenticationError")


def test_a_tier_failed_without_attempts_is_booked_at_its_first_deployment():
    def answer(call: TierCall) -> str:
        if call.tier == "fast":
            raise DispatchError(call.step, call.tier, ())  # the whole tier, no deployment named
        return "42"

    seen = Seen(answer)
    assert seen.router.complete(ask()).decision.fallback_from == "fast"
    (failed,) = [s for s in seen.chats() if "error.type" in s.attributes]
    assert (failed.attributes["gen_ai.request.model"], failed.attributes["error.type"]) == (FAST, "DispatchError")
    assert seen.calls_by_tier()[("fast", FAST, "DispatchError")] == 1


# -- a deployment refused inside the tier: WalkRun.refused_in_tier -------------------------------------


def test_a_refused_deployment_hidden_by_the_tiers_next_one_is_logged_once(caplog):
    refused = Attempt(FAST, "AuthenticationError", "openai", kind="auth")

    def answer(call: TierCall) -> Completion:
        return Completion("13.50", FAST2, "openai", USAGE, 0.001, failed_attempts=(refused,))

    seen = Seen(answer)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        seen.router.complete(ask())
        seen.router.complete(ask())
    (message,) = warnings_of(caplog)
    assert message.startswith("step 'calc', tier 'fast': ") and message.endswith(
        "; the tier's next deployment answered (logged once per step, tier and error)")


# -- speculative routing: WalkRun.cancelled --------------------------------------------------------------


def test_a_cancelled_speculative_call_is_booked_at_its_tier_and_model():
    start = {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "strong"}], "fallback": "fast"}
    seen = Seen(lambda call: Reply("done", usage=USAGE), cascade({"signal": "hedging"}, start=start, speculative=True))
    before = time.time_ns()
    result = asyncio.run(seen.router.acomplete(ask("prove it")))
    assert all(before <= s.start_time <= s.end_time for s in seen.chats())
    cancelled, answered = result.decision.cascade
    assert (cancelled.tier, cancelled.model, cancelled.reason) == ("fast", FAST, "speculative call cancelled")
    assert (answered.tier, answered.model, result.decision.tier, result.decision.model) == (
        "strong", STRONG, "strong", STRONG)
    (span,) = seen.chats("speculative")
    assert (span.attributes["gen_ai.request.model"], span.attributes["gen_ai.provider.name"],
            span.attributes["error.type"]) == (FAST, "openai", "cancelled")
    assert seen.calls_by_tier()[("fast", FAST, "cancelled")] == 1


# -- pins: WalkRun._pin, close, aclose ----------------------------------------------------------------


@pytest.mark.parametrize("sync", [True, False])
def test_an_escalation_moves_the_threads_pin_to_the_tier_and_model_that_answered(sync):
    seen = Seen(hedging_fast, cascade({"signal": "hedging"}), pinning={"mode": "sticky"})
    before = time.time()
    request = ask(thread="t1")
    result = seen.router.complete(request) if sync else asyncio.run(seen.router.acomplete(request))
    after = time.time()
    (pin,) = [p for p in (seen.pins.get("t1", g) for g in ("calc", "default", "")) if p is not None]
    assert (pin.tier, pin.model, pin.decision_id) == ("strong", STRONG, result.decision.id)
    assert before <= pin.created <= after


@pytest.mark.parametrize("sync", [True, False])
def test_a_pinned_model_that_fails_is_re_pinned_to_the_deployment_that_answered(sync):
    down: set[str] = set()

    def answer(call: TierCall) -> Reply:
        if call.model in down:
            raise TimeoutError("down")
        return Reply("13.50", usage=USAGE)

    seen = Seen(answer, pinning={"mode": "sticky"})
    run = (lambda r: seen.router.complete(r)) if sync else (lambda r: asyncio.run(seen.router.acomplete(r)))
    first = run(ask(thread="t1"))
    (group,) = [g for g in ("calc", "default", "") if seen.pins.get("t1", g) is not None]
    assert seen.pins.get("t1", group).model == FAST and not first.decision.repinned
    down.add(FAST)
    second = run(ask(thread="t1"))
    assert second.decision.repinned and second.decision.model == FAST2
    assert seen.pins.get("t1", group) == Pin("fast", FAST2, first.decision.id, seen.pins.get("t1", group).created,
                                            turns=1, repins=1)
    down.clear()
    run(ask(thread="t1"))
    assert [c.model for c in seen.transport.calls][-1] == FAST2  # the pinned model is tried first


def test_a_trained_scorer_reads_the_answers_finish_reason(tmp_path):
    import numpy as np

    from steproute.policies._artefact import Artefact, save_artefact
    from steproute.policies.answer_scorer import FEATURES

    coef = np.zeros(len(FEATURES))
    coef[FEATURES.index("truncated")] = -10.0  # a cut-off answer is wrong, any other right
    path = tmp_path / "scorer.steproute"
    save_artefact(Artefact("cascade", {"labels": [FAST, STRONG], "threshold": 0.5, "features": list(FEATURES)},
                           {"mean": np.zeros(len(FEATURES)), "scale": np.ones(len(FEATURES)), "coef": coef,
                            "intercept": np.array([5.0])}), path)

    def answer(call: TierCall) -> Reply:
        return Reply("13.50", finish_reason="length" if call.tier == "fast" else "stop", usage=USAGE)

    seen = Seen(answer, cascade({"signal": "scorer", "artefact": str(path)}))
    first, last = seen.router.complete(ask()).decision.cascade
    assert (first.accepted, last.tier) == (False, "strong")
    assert first.signals == (("scorer", pytest.approx(1 / (1 + math.exp(5.0)), abs=1e-6)),)  # rounded to 6 places


# -- the walk's rules as the call sets them: WalkRun.__init__ -------------------------------------------


@pytest.mark.parametrize(("steps", "request_", "tiers_called"), [
    ({"calc": {"policy": "fixed", "tier": "fast", "tier_fallback": "none"}}, ask(), ["fast", "fast"]),
    ({}, ask(hint=Hint(tier="fast")), ["fast", "fast"]),  # a hint's tier is fixed: no fallback out of it
    ({}, ask(), ["fast", "fast", "strong"]),  # unset: the next tier
])
def test_a_failed_tier_falls_back_only_as_the_step_allows(steps, request_, tiers_called):
    seen = Seen(failing_fast, steps)
    if tiers_called[-1] == "fast":
        with pytest.raises(DispatchError) as raised:
            seen.router.complete(request_)
        assert raised.value.tiers == ("fast",)
    else:
        assert seen.router.complete(request_).decision.fallback_from == "fast"
    assert [c.tier for c in seen.transport.calls] == tiers_called


def test_a_guards_tier_is_fixed_no_fallback_out_of_it():
    seen = Seen(failing_fast, guards={"pii": {"tier": "fast"}})
    with pytest.raises(DispatchError):
        seen.router.complete(ask("mail ann.lee@example.org the total"))
    assert [c.tier for c in seen.transport.calls] == ["fast", "fast"]


# -- a tier that cannot be asked for logprobs: WalkRun._with_logprobs -------------------------------------

HAIKU, HAIKU3 = "anthropic/claude-haiku-4-5", "anthropic/claude-3-haiku-20240307"
NO_LOGPROBS = {"fast": {"models": [{"model": HAIKU, "api_key": "sk-a"}, {"model": HAIKU3, "api_key": "sk-b"}]},
               "strong": {"models": [{"model": STRONG, "api_key": "sk-strong"}]}}
def logprob_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The logprob warnings only: whether the installed LiteLLM's maps price and describe these models varies."""
    return [w for w in warnings_of(caplog) if "logprob" in w]


NOTE = (f"logprob signal: tier 'fast' ({HAIKU}, {HAIKU3}) does not take logprobs, not asked (the signal abstains)")


def test_a_tier_that_refuses_logprobs_is_named_once_on_the_reason_and_once_a_step_in_the_log(caplog):
    steps = {name: cascade({"signal": "hedging"}, {"signal": "logprob"})["calc"] for name in ("calc", "sum")}
    seen = Seen(lambda call: Reply("13.50", usage=USAGE), steps, tiers=NO_LOGPROBS)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        first = seen.router.complete(ask())
        seen.router.complete(ask())
        seen.router.complete(StepRequest("sum", HI))
    assert all("logprobs" not in c.params for c in seen.transport.calls)
    assert first.decision.reason == f"cascade: start at 'fast'; {NOTE}; accepted (hedging=1; accepted)"
    assert logprob_warnings(caplog) == [f"step 'calc': {NOTE} (logged once)", f"step 'sum': {NOTE} (logged once)"]
    other = Seen(lambda call: Reply("13.50", usage=USAGE), steps, tiers=NO_LOGPROBS)  # another router tells it too
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="steproute"):
        other.router.complete(ask())
    assert logprob_warnings(caplog) == [f"step 'calc': {NOTE} (logged once)"]


def test_a_speculative_cascade_names_a_tier_that_refuses_logprobs_once():
    start = {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "strong"}], "fallback": "fast"}
    seen = Seen(lambda call: Reply("13.50", usage=USAGE),
                cascade({"signal": "hedging"}, {"signal": "logprob"}, start=start, speculative=True), tiers=NO_LOGPROBS)
    result = asyncio.run(seen.router.acomplete(ask("add it up")))
    assert "speculative: rules agreed" in result.decision.reason and result.decision.reason.count(NOTE) == 1


# -- each attempt's request: WalkRun.pending -------------------------------------------------------------


def test_each_tier_is_asked_in_its_own_style():
    tiers = {"fast": {**TIERS["fast"], "style": {"system_prompt": "Be brief."}},
             "strong": {**TIERS["strong"], "style": {"system_prompt": "Show your work."}}}
    seen = Seen(failing_fast, tiers=tiers)
    seen.router.complete(ask())
    assert [(c.tier, c.messages[0]["content"]) for c in seen.transport.calls] == [
        ("fast", "Be brief."), ("fast", "Be brief."), ("strong", "Show your work.")]


def test_logprobs_are_asked_only_of_the_attempts_a_cascade_judges():
    def answer(call: TierCall) -> Completion:
        logprob = -3.0 if call.tier == "fast" else -0.01
        return Completion("13.50", call.model, "openai", USAGE, 0.001, logprobs=(TokenLogprob("13.50", logprob),))

    seen = Seen(answer, cascade({"signal": "logprob", "threshold": 0.5}))
    result = seen.router.complete(ask())
    assert [a.accepted for a in result.decision.cascade] == [False, None]
    assert [(c.tier, "logprobs" in c.params) for c in seen.transport.calls] == [("fast", True), ("strong", False)]


def test_a_pinned_model_is_preferred_only_on_the_pinned_tier():
    tiers = {"fast": {"models": [{"model": FAST, "api_key": "sk-fast"}]},
             "strong": {"models": [{"model": STRONG, "api_key": "sk-strong"}, {"model": FAST, "api_key": "sk-fast"}]}}
    hedge = [False]

    def answer(call: TierCall) -> str:
        return "I'm not sure, I cannot say." if call.tier == "fast" and hedge[0] else "13.50 EUR"

    seen = Seen(answer, cascade({"signal": "hedging"}), tiers=tiers, pinning={"mode": "sticky"})
    assert seen.router.complete(ask(thread="t1")).decision.tier == "fast"  # pinned to fast, FAST
    hedge[0] = True
    escalated = seen.router.complete(ask(thread="t1"))  # follows the pin, is rejected, escalates
    assert (escalated.decision.tier, escalated.decision.model) == ("strong", STRONG)
    assert [(c.tier, c.model) for c in seen.transport.calls][-2:] == [("fast", FAST), ("strong", STRONG)]


def test_a_speculative_start_that_picks_a_tier_that_cannot_serve_the_call_and_none_above_can_keeps_the_speculative_call():
    """The start policy picks `standard` (gpt-3.5-turbo cannot see), no stronger cascade tier is left:
    the speculative call at `fast` goes on (it was cancelled and made again on `fast`, and the reason
    said "escalated fast → fast"), and the reason says why."""
    answered: list[str] = []

    def answer(call: TierCall) -> str:
        answered.append(call.tier)
        return f"{call.tier}:{call.model}"

    router = StepRouter(RouterConfig(
        tiers={"fast": {"models": [FAST]}, "standard": {"models": ["openai/gpt-3.5-turbo"]}, "strong": {"models": [STRONG]}},
        default="fast", steps={"describe": {
            "policy": "cascade", "tiers": ["fast", "standard"], "speculative": True,
            "start": {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "standard"}], "fallback": "fast"}}}),
        transport=FunctionTransport(answer))
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    result = asyncio.run(router.acomplete(StepRequest("describe", [{"role": "user", "content": [
        {"type": "text", "text": "prove it"}, image]}])))
    assert (result.decision.tier, result.decision.model, result.completion.content) == ("fast", FAST, f"fast:{FAST}")
    said = "speculative: rules picked 'standard', which cannot serve the call; the 'fast' call goes on ("
    assert said in result.decision.reason
    assert "cancelled" not in result.decision.reason and "escalated" not in result.decision.reason
    assert (result.decision.attempts, result.decision.escalated_from, answered) == (1, None, ["fast"])


def test_a_speculative_call_kept_on_its_tier_was_made_to_the_conversations_deployment():
    """A re-evaluated pin kept on `fast` (its deployment, FAST2, served the conversation last): the start
    policy's tier cannot serve the call and none above it in the cascade can, so the speculative call,
    made to FAST2 first, goes on."""
    answered: list[str] = []

    def answer(call: TierCall) -> str:
        answered.append(call.model)
        return f"{call.tier}:{call.model}"

    result = stale_pin_image_call([STRONG], ["fast", "standard"], answer)
    assert (result.decision.tier, result.decision.model, answered) == ("fast", FAST2, [FAST2])
    assert "rules picked 'standard', which cannot serve the call; the 'fast' call goes on" in result.decision.reason


def test_a_pin_on_a_deployment_its_tier_no_longer_has_moves_to_the_one_that_answered_a_checked_call():
    """The capability filter leaves out a deployment of `fast` (an image); the pin names one `fast` no
    longer has: nothing the filter skipped, so the deployment that answers is a re-pin, as without the filter."""
    answered: list[str] = []

    def answer(call: TierCall) -> str:
        answered.append(call.model)
        return "a cat"

    router = StepRouter(RouterConfig(tiers={"fast": {"models": [FAST, "openai/gpt-3.5-turbo"]}, "strong": {"models": [STRONG]}},
                                     default="fast"),  # gpt-3.5-turbo cannot see: the filter keeps fast's first only
                        transport=FunctionTransport(answer))
    router.pin_store.put("t-1", "look", Pin("fast", "openai/gone", "d-0", 0.0))
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    result = router.complete(StepRequest("look", [{"role": "user", "content": [{"type": "text", "text": "what"}, image]}],
                                         thread="t-1"))
    assert (result.decision.tier, result.decision.model, result.decision.repinned, answered) == ("fast", FAST, True, [FAST])
    pin = router.pin_store.get("t-1", "look")
    assert (pin.tier, pin.model, pin.decision_id, pin.turns, pin.repins) == ("fast", FAST, "d-0", 1, 1)


def test_an_async_capability_move_leaves_the_conversations_pin_on_its_own_tier_and_model():
    answered: list[str] = []

    def answer(call: TierCall) -> str:
        answered.append(call.model)
        return "ok"

    router = StepRouter(RouterConfig(tiers={"fast": {"models": ["openai/gpt-3.5-turbo"]}, "standard": {"models": [FAST]},
                                            "strong": {"models": [STRONG]}}, default="fast"),
                        transport=FunctionTransport(answer))
    text = [{"role": "user", "content": "hello"}]
    image = [{"role": "user", "content": [{"type": "text", "text": "what"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    assert asyncio.run(router.acomplete(StepRequest("chat", text, thread="t-1"))).decision.tier == "fast"
    moved = asyncio.run(router.acomplete(StepRequest("chat", image, thread="t-1")))
    assert (moved.decision.tier, moved.decision.model, moved.decision.repinned) == ("standard", FAST, False)
    pin = router.pin_store.get("t-1", "chat")
    assert (pin.tier, pin.model, pin.repins) == ("fast", "openai/gpt-3.5-turbo", 0)
    assert answered == ["openai/gpt-3.5-turbo", FAST]


def test_a_speculative_call_restarted_on_a_stronger_tier_tries_the_conversations_deployment_first_there_too():
    """As above, but the walk restarts at `strong`, which also has FAST2: the restarted decision is
    at `strong`, so the deployment that served the conversation last goes first there."""
    answered: list[tuple[str, str]] = []

    def answer(call: TierCall) -> str:
        answered.append((call.tier, call.model))
        return f"{call.tier}:{call.model}"

    result = stale_pin_image_call([STRONG, FAST2], ["fast", "standard", "strong"], answer)
    assert (result.decision.tier, result.decision.model, answered) == ("strong", FAST2, [("strong", FAST2)])
    assert "it cannot serve the call: tier 'strong'" in result.decision.reason


def stale_pin_image_call(strong_models: list[str], cascade: list[str], answer: Callable[[TierCall], Any]) -> Any:
    """An image call on thread t-1, pinned long ago to fast's FAST2, under a speculative cascade over ``cascade``
    whose start rule sends "prove" to standard (a tier that cannot take images)."""
    router = StepRouter(RouterConfig(
        tiers={"fast": {"models": [FAST, FAST2]}, "standard": {"models": ["openai/gpt-3.5-turbo"]},
               "strong": {"models": strong_models}},
        default="fast", steps={"describe": {
            "policy": "cascade", "tiers": cascade, "speculative": True,
            "pinning": {"mode": "reevaluate", "after_seconds": 1},
            "start": {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "standard"}], "fallback": "fast"}}}),
        transport=FunctionTransport(answer))
    router.pin_store.put("t-1", "describe", Pin("fast", FAST2, "d-0", time.time() - 100))
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    return asyncio.run(router.acomplete(StepRequest("describe", [{"role": "user", "content": [
        {"type": "text", "text": "prove it"}, image]}], thread="t-1")))
