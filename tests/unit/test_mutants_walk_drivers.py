"""Tests that kill mutmut mutants of steproute/_walk_drivers.py (see docs/architecture.md, "Mutation testing").

Each routes calls through the real router with :class:`~steproute.testing.FunctionTransport`
and reads what a user sees: the calls the tiers got (step, tier, deployment, thread), the
chunks and the summary, the decision's cascade, the decision-log entry (tier, model, cost,
``abandoned``, ``error``), the spans, and the tenant budget's spend.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import DispatchError, RouterConfig, StepRequest, StepRouter
from steproute.completions import Completion
from steproute.decision_log import JsonlDecisionLog, read_log
from steproute.errors import Attempt
from steproute.pinning import InMemoryPinStore, Pin
from steproute.policies.confidence import JUDGE_PROMPT
from steproute.pricing import call_cost, estimate_usage
from steproute.results import StreamSummary
from steproute.testing import FunctionTransport, Reply, TierCall
from steproute.types import Usage

FAST, FAST2, STRONG = "openai/gpt-4o-mini", "openai/gpt-4.1-mini", "openai/gpt-4o"
TIERS = {"fast": {"models": [{"model": FAST, "api_key": "sk-fast"}, {"model": FAST2, "api_key": "sk-fast2"}]},
         "strong": {"models": [{"model": STRONG, "api_key": "sk-strong"}]}}
LONG = " ".join(["steproute streams every word of this answer"] * 20)
RULES = {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "strong"}], "fallback": "fast"}
LLM_START = {"policy": "llm", "router_tier": "fast", "fallback": "fast"}


class Seen:
    """A router over ``handler`` (or ``transport``) with its spans, log and budget recorded."""

    def __init__(self, tmp_path: Any, handler: Any = None, steps: dict[str, Any] | None = None, *,
                 transport: Any = None, **config: Any) -> None:
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.transport = transport if transport is not None else FunctionTransport(handler)
        self.pins = InMemoryPinStore()
        self.path = tmp_path / "decisions.jsonl"
        self.log = JsonlDecisionLog(self.path)
        self.router = StepRouter(RouterConfig(tiers=TIERS, default="fast", steps=steps or {},
                                              guards={"budgets": {"limits": {"acme": 10.0}}}, **config),
                                 tracer_provider=tracer_provider, transport=self.transport, pin_store=self.pins,
                                 decision_log=self.log)

    def entries(self) -> list[dict[str, Any]]:
        self.log.close()
        return read_log(self.path).decisions

    def spans(self, prefix: str) -> list[Any]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def spent(self) -> float:
        total, reserved = self.router.budget_store.usage("acme", self.router._budget.window()[0])
        assert reserved == 0.0
        return float(total)

    def price(self, tier: str, index: int = 0) -> Any:
        return self.router.deployments(tier)[index].price


def ask(text: str = "How much are 3 notebooks at 4.50?", step: str = "calc", **kw: Any) -> StepRequest:
    return StepRequest(step, [{"role": "user", "content": text}], tenant="acme", **kw)


def cascade(*signals: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"calc": {"policy": "cascade", "tiers": ["fast", "strong"], "signals": list(signals), **kw}}


HEDGING = cascade({"signal": "hedging"})


def fast_hedges(call: TierCall) -> str:
    return "I'm not sure, maybe 13.5." if call.tier == "fast" else "13.50"


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


# -- a stream is booked once: what its consumer does after the answer is booked books nothing -------


def _closed_after(seen: Seen, stop: str, sync: bool) -> list[Any]:
    """Stream ``ask()``, keep items until ``stop`` (``first``: one chunk; ``summary``: up to the
    summary), then close the stream without reading the rest."""
    def enough(kept: list[Any]) -> bool:
        return len(kept) == 1 if stop == "first" else isinstance(kept[-1], StreamSummary)

    if sync:
        kept: list[Any] = []
        stream = seen.router.stream(ask())
        for item in stream:
            kept.append(item)
            if enough(kept):
                break
        stream.close()
        return kept

    async def main() -> list[Any]:
        out: list[Any] = []
        astream = seen.router.astream(ask())
        async for item in astream:
            out.append(item)
            if enough(out):
                break
        await astream.aclose()
        return out

    return asyncio.run(main())


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
@pytest.mark.parametrize(("steps", "stop"), [({}, "summary"), (HEDGING, "summary"), (HEDGING, "first")],
                         ids=["live-closed-after-summary", "replayed-closed-after-summary", "replayed-closed-early"])
def test_a_stream_closed_once_its_answer_is_booked_is_booked_once(tmp_path, steps, stop, sync):
    # a bug the mutants showed: closing the stream after its answer was booked (a consumer that
    # stops at the summary, or a replayed cascade answer left half read) booked the call a second
    # time, as failed with GeneratorExit: a second log entry, a failed chat span, the route span
    # ended twice
    seen = Seen(tmp_path, lambda call: "13.50", steps)
    kept = _closed_after(seen, stop, sync)
    assert kept[0].content == "13.50"
    (entry,) = seen.entries()
    assert "error" not in entry and "abandoned" not in entry
    assert (entry["tier"], entry["model"]) == ("fast", FAST)
    (route,) = seen.spans("route")
    assert route.status.is_ok and "error.type" not in route.attributes
    assert all("error.type" not in span.attributes for span in seen.spans("chat"))
    assert len(seen.spans("chat")) == 1
    assert seen.spent() == pytest.approx(entry["cost_usd"]) and entry["cost_usd"] > 0


# -- the step and the pinned deployment reach every kind of call ----------------------------------------


def pinned_seen(tmp_path: Any, handler: Any) -> Seen:
    """Steps ``calc`` (a speculative cascade from fast) and ``plain`` (fast), pinned in
    ``reevaluate`` mode; :func:`due_pin` gives a thread a pin due for re-evaluation on fast's
    second deployment: the policy decides afresh, picks fast, and the pin's deployment goes first."""
    steps = {**cascade({"signal": "hedging"}, start=RULES, speculative=True), "plain": "fast"}
    return Seen(tmp_path, handler, steps, pinning={"mode": "reevaluate", "after_seconds": 60, "group": "g"})


def due_pin(seen: Seen, thread: str) -> None:
    seen.pins.put(thread, "g", Pin("fast", FAST2, "d-old", time.time() - 3600))


@pytest.mark.parametrize("path", ["stream-judged", "stream-live", "astream-live", "astream-judged", "acomplete-speculative",
                                  "acomplete-judged"])
def test_each_call_names_its_step_and_tries_the_pins_deployment_first(tmp_path, path):
    seen = pinned_seen(tmp_path, lambda call: "13.50")
    step = "plain" if path.endswith("live") else "calc"
    due_pin(seen, "t1")
    request = ask(step=step, thread="t1")
    if path.startswith("stream"):
        *_, summary = list(seen.router.stream(request))
    elif path.startswith("astream"):
        *_, summary = asyncio.run(collect(seen.router.astream(request)))
    else:
        summary = asyncio.run(seen.router.acomplete(request))
    (call,) = seen.transport.calls
    assert (call.step, call.tier, call.model) == (step, "fast", FAST2)
    assert (summary.decision.tier, summary.decision.model) == ("fast", FAST2)


# -- async judging: a signal that calls a model is judged off the event loop ---------------------------


def test_an_async_cascade_with_a_judge_signal_judges_off_the_event_loop_and_escalates_on_its_no(tmp_path):
    seen_threads: list[bool] = []

    def answer(call: TierCall) -> str:
        if call.messages[0].get("content") == JUDGE_PROMPT:
            seen_threads.append(threading.current_thread() is threading.main_thread())
            return "no" if "maybe" in str(call.messages) else "yes"
        return fast_hedges(call)

    seen = Seen(tmp_path, answer, cascade({"signal": "judge", "tier": "strong"}))
    result = asyncio.run(seen.router.acomplete(ask()))
    assert result.completion.content == "13.50" and result.decision.tier == "strong"
    rejected, answered = result.decision.cascade
    assert (rejected.tier, rejected.accepted, rejected.signals) == ("fast", False, (("judge", 0.0),))
    assert answered.tier == "strong"
    assert seen_threads == [False]  # the judge's call ran on a worker thread, not the event loop's


def test_an_async_cascade_with_consistency_samples_the_attempts_tier(tmp_path):
    def answer(call: TierCall) -> str:
        return "13.50" if call.params.get("temperature") != 0.7 or call.tier == "strong" else "14"

    seen = Seen(tmp_path, answer, cascade({"signal": "consistency", "samples": 2}))
    result = asyncio.run(seen.router.acomplete(ask()))
    assert result.decision.cascade[0].signals == (("consistency", 0.5),) and result.decision.tier == "strong"
    assert [(c.tier, c.params.get("temperature")) for c in seen.transport.calls] == [
        ("fast", None), ("fast", 0.7), ("strong", None)]


# -- speculative routing ------------------------------------------------------------------------------


def test_a_speculative_start_that_agrees_makes_one_call_at_the_first_tier(tmp_path):
    seen = Seen(tmp_path, lambda call: "13.50", cascade({"signal": "hedging"}, start=RULES, speculative=True))
    result = asyncio.run(seen.router.acomplete(ask("hello")))
    *_, summary = asyncio.run(collect(seen.router.astream(ask("hello"))))
    for done in (result, summary):
        assert done.decision.tier == "fast"
        assert "; speculative: rules agreed (cascade: start at 'fast' (no rule matched; fallback tier));" in done.decision.reason
    assert [(c.step, c.tier) for c in seen.transport.calls] == [("calc", "fast")] * 2


def test_a_rules_start_that_picks_stronger_cancels_the_first_call_before_it_is_sent(tmp_path):
    seen = Seen(tmp_path, lambda call: "13.50", cascade({"signal": "hedging"}, start=RULES, speculative=True))
    *chunks, summary = asyncio.run(collect(seen.router.astream(ask("prove it"))))
    assert "".join(c.content for c in chunks) == "13.50"
    assert [(a.tier, a.reason) for a in summary.decision.cascade] == [
        ("fast", "speculative call cancelled"), ("strong", "last tier: not judged")]
    assert "speculative: rules picked 'strong', the 'fast' call was cancelled" in summary.decision.reason
    # a start that decides without a model call decides before the speculative call ever runs
    assert [c.tier for c in seen.transport.calls] == ["strong"]


def test_a_start_that_calls_a_model_decides_off_the_event_loop_while_the_first_call_runs(tmp_path):
    on_main: list[bool] = []

    def answer(call: TierCall) -> str:
        if call.step == "router":
            on_main.append(threading.current_thread() is threading.main_thread())
            time.sleep(0.2)  # the speculative call fails meanwhile
            return "strong"
        if call.tier == "fast":
            raise TimeoutError("fast is down")
        return "13.50"

    seen = Seen(tmp_path, answer, cascade({"signal": "hedging"}, start=LLM_START, speculative=True))
    result = asyncio.run(seen.router.acomplete(ask()))
    assert (result.completion.content, result.decision.tier) == ("13.50", "strong")
    assert on_main == [False]
    # the first call ran (and failed) while the start decided; its failure is not the call's
    assert [c.tier for c in seen.transport.calls if c.step == "calc"] == ["fast", "fast", "strong"]
    assert result.decision.cascade[0].reason == "speculative call cancelled"



async def cancel_stream(seen: Any, until: Any) -> None:
    """Read ``seen.router.astream(ask())`` in a task, cancel it once ``until()`` returns, and expect the cancel."""
    task = asyncio.create_task(collect(seen.router.astream(ask())))
    await until()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

def test_a_stream_cancelled_while_its_start_decides_is_booked_as_cancelled(tmp_path):
    def answer(call: TierCall) -> str:
        if call.step == "router":
            time.sleep(0.3)
            return "strong"
        return "13.50"

    seen = Seen(tmp_path, answer, cascade({"signal": "hedging"}, start=LLM_START, speculative=True))

    asyncio.run(cancel_stream(seen, lambda: asyncio.sleep(0.05)))
    (entry,) = seen.entries()
    assert entry["error"] == "CancelledError"


def test_an_async_judged_stream_cancelled_while_its_attempt_runs_is_booked_as_cancelled(tmp_path):
    async def answer(call: TierCall) -> str:
        await asyncio.sleep(5)
        return "13.50"

    seen = Seen(tmp_path, answer, HEDGING)

    asyncio.run(cancel_stream(seen, lambda: asyncio.sleep(0.05)))
    (entry,) = seen.entries()
    assert entry["error"] == "CancelledError" and entry["tier"] == "fast"


# -- streams: buffered attempts, a stream broken after it started, streams stopped early -----------------


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_judged_stream_whose_first_tier_fails_escalates_and_one_accepted_is_replayed(tmp_path, sync):
    def answer(call: TierCall) -> str:
        if call.tier == "fast" and "down" in str(call.messages):
            raise TimeoutError("down")
        return "13.50"

    seen = Seen(tmp_path, answer, HEDGING)
    for text, tier in (("down", "strong"), ("up", "fast")):
        items = list(seen.router.stream(ask(text))) if sync else asyncio.run(collect(seen.router.astream(ask(text))))
        *chunks, summary = items
        assert "".join(c.content for c in chunks) == "13.50" and summary.decision.tier == tier
        assert summary.content == "13.50"


class BrokenMidStream:
    """A transport whose fast tier's streams drop after their first chunk."""

    def __init__(self, handler: Any) -> None:
        self.inner = FunctionTransport(handler)

    @property
    def calls(self) -> list[TierCall]:
        return self.inner.calls

    def client(self, tier: str, deployments: Any, settings: Any, tool_calling: str) -> Any:
        return _Breaks(self.inner.client(tier, deployments, settings, tool_calling), tier == "fast")


def _dropped(step: str) -> DispatchError:
    return DispatchError(step, "fast", (Attempt(FAST, "APIConnectionError", "openai"),))


class _Breaks:
    def __init__(self, inner: Any, breaks: bool) -> None:
        self.inner, self.breaks = inner, breaks

    def complete(self, *args: Any, **kw: Any) -> Completion:
        return self.inner.complete(*args, **kw)

    async def acomplete(self, *args: Any, **kw: Any) -> Completion:
        return await self.inner.acomplete(*args, **kw)

    def stream(self, step: str, *args: Any, **kw: Any) -> Iterator[Any]:
        for i, chunk in enumerate(self.inner.stream(step, *args, **kw)):
            if self.breaks and i == 1:
                raise _dropped(step)
            yield chunk

    async def astream(self, step: str, *args: Any, **kw: Any) -> AsyncIterator[Any]:
        i = 0
        async for chunk in self.inner.astream(step, *args, **kw):
            if self.breaks and i == 1:
                raise _dropped(step)
            i += 1
            yield chunk


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_stream_that_broke_after_its_first_chunk_fails_and_never_moves_to_another_tier(tmp_path, sync):
    seen = Seen(tmp_path, transport=BrokenMidStream(lambda call: "thirteen fifty"))
    shown: list[str] = []

    async def consume() -> None:
        async for item in seen.router.astream(ask()):
            shown.append(item.content)

    with pytest.raises(DispatchError):
        if sync:
            for item in seen.router.stream(ask()):
                shown.append(item.content)
        else:
            asyncio.run(consume())
    assert shown == ["thirteen "]
    assert [c.tier for c in seen.transport.calls] == ["fast"]
    (entry,) = seen.entries()
    assert entry["error"] == "DispatchError"


def _abandon(seen: Seen, request: StepRequest, sync: bool, after: int = 3, **params: Any) -> str:
    if sync:
        stream = seen.router.stream(request, **params)
        text = "".join(next(stream).content for _ in range(after))
        stream.close()
        return text

    async def main() -> str:
        astream = seen.router.astream(request, **params)
        parts = [(await astream.__anext__()).content for _ in range(after)]
        await astream.aclose()
        return "".join(parts)

    return asyncio.run(main())


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_stream_stopped_on_the_tiers_second_deployment_is_billed_at_its_price_for_each_choice(tmp_path, sync):
    def answer(call: TierCall) -> str:
        if call.model == FAST:
            raise TimeoutError("down")
        return LONG

    seen = Seen(tmp_path, answer)
    request = ask()
    streamed = _abandon(seen, request, sync, n=2)
    (entry,) = seen.entries()
    assert entry["abandoned"] is True and "error" not in entry
    assert (entry["tier"], entry["model"]) == ("fast", FAST2)
    usage = estimate_usage(FAST2, request.messages, streamed, 2)
    assert (entry["input_tokens"], entry["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert usage.output_tokens > estimate_usage(FAST2, request.messages, streamed).output_tokens
    assert entry["cost_usd"] == pytest.approx(call_cost(seen.price("fast", 1), usage))
    assert entry["cost_usd"] != pytest.approx(call_cost(seen.price("fast", 0), usage))
    assert entry["baseline_cost_usd"] == pytest.approx(call_cost(seen.price("strong"), usage))
    assert seen.spent() == pytest.approx(entry["cost_usd"])


def test_a_stream_stopped_whose_model_is_no_deployment_is_billed_at_the_tiers_first(tmp_path):
    dated = "openai/gpt-4o-mini-2024-07-18"

    def answer(call: TierCall) -> Completion:
        return Completion(LONG, dated, "openai", Usage(10, 200), 0.5)

    seen = Seen(tmp_path, answer)
    request = ask()
    streamed = _abandon(seen, request, True)
    (entry,) = seen.entries()
    assert entry["abandoned"] is True and entry["model"] == dated
    usage = estimate_usage(FAST, request.messages, streamed)
    assert entry["cost_usd"] == pytest.approx(call_cost(seen.price("fast"), usage))


def test_a_stream_cancelled_before_the_fallback_tiers_first_chunk_is_booked_at_that_tier(tmp_path):
    async def answer(call: TierCall) -> Reply:
        if call.tier == "fast":
            raise TimeoutError("down")
        await asyncio.sleep(5)
        return Reply("13.50")

    seen = Seen(tmp_path, answer)

    async def third_call() -> None:
        while len(seen.transport.calls) < 3:
            await asyncio.sleep(0.01)

    asyncio.run(cancel_stream(seen, third_call))
    (entry,) = seen.entries()
    assert entry["abandoned"] is True and "error" not in entry
    assert (entry["tier"], entry["model"], entry["output_tokens"]) == ("strong", STRONG, 0)
    assert entry["cost_usd"] == pytest.approx(entry["input_tokens"] * seen.price("strong").input)


class PinsDownOnWrite(InMemoryPinStore):
    """A pin store that makes a thread's first pin but fails every later write (a store gone away)."""

    def put(self, thread: str, group: str, pin: Pin) -> None:
        raise ConnectionError("pin store down")

    async def aput(self, thread: str, group: str, pin: Pin) -> None:
        raise ConnectionError("pin store down")


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_live_stream_whose_answer_cannot_be_booked_fails_with_the_stores_error(tmp_path, sync):
    def answer(call: TierCall) -> str:
        if call.model == FAST:
            raise TimeoutError("down")
        return "13.50"

    seen = Seen(tmp_path, answer, pinning={"mode": "sticky", "group": "g"})
    seen.router.pin_store = PinsDownOnWrite()  # the re-pin to fast's second deployment is written once answered
    with pytest.raises(ConnectionError, match="pin store down"):
        if sync:
            list(seen.router.stream(ask(thread="t1")))
        else:
            asyncio.run(collect(seen.router.astream(ask(thread="t1"))))
    (entry,) = seen.entries()
    assert entry["error"] == "ConnectionError" and "abandoned" not in entry


# -- a trained cascade routing judges each attempt as its own tier's (async, on the event loop) -------------


@pytest.fixture(scope="module")
def routing_of_three(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from steproute.evaluation import EvalRow, Outcome, Target
    from steproute.evaluation._cascade_routing_train import train_cascade_routing
    from steproute.policies._artefact import save_artefact

    rows = []
    for i in range(60):
        right = i % 3 != 0 and i % 20 != 1
        question = f"prove the theorem number {i} rigorously" if i % 3 == 0 else f"say hi to person {i}"
        cheap = "2 + 2 = 4. The answer is 4." if right else "I'm not sure, maybe 5."
        rows.append(EvalRow(f"q{i}", ({"role": "user", "content": question},),
                            {"cheap": Outcome(float(right), 0.05, cheap), "mid": Outcome(float(right), 0.2, cheap),
                             "strong": Outcome(1.0, 1.0, "The answer is 4.")}))
    artefact = train_cascade_routing(rows, ("cheap", "mid", "strong"), folds=3, target=Target(quality_ratio=0.9),
                                     embedding_cache=False)
    path = tmp_path_factory.mktemp("routing3") / "routing.steproute"
    save_artefact(artefact, path)
    return path


def test_an_async_cascade_routing_judges_the_middle_tiers_answer_against_escalating_to_the_last(routing_of_three):
    tiers = {"fast": {"models": [FAST]}, "mid": {"models": [FAST2]}, "strong": {"models": [STRONG]}}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast",
                                     steps={"s": {"policy": "cascade", "artefact": str(routing_of_three), "lambda": 0.2}}),
                        transport=FunctionTransport(lambda call: "The answer is 4." if call.tier == "strong"
                                                    else "I'm not sure, maybe 5."))
    result = asyncio.run(router.acomplete(StepRequest("s", [{"role": "user", "content": "say hi to person 999"}])))
    fast, mid, strong = result.decision.cascade
    assert [(a.tier, a.accepted) for a in (fast, mid)] == [("fast", False), ("mid", False)]
    assert "value of escalating to 'mid'" in fast.reason and "value of escalating to 'strong'" in mid.reason
    assert strong.tier == "strong" and result.completion.content == "The answer is 4."
