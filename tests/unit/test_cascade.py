"""The cascade policy: its signals, how they combine, and its runs through the router
(LiteLLM's mock_response answers; real HTTP is in tests/integration/test_cascade_routing.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import ConfigError, RouterConfig, StepRequest, StepRouter
from steproute.policies.answer_scorer import ArithmeticSignal
from steproute.policies.cascade import CascadePolicy
from steproute.policies.confidence import (
    Answer,
    ConsistencySignal,
    HedgingSignal,
    JudgeSignal,
    LogprobSignal,
    SchemaSignal,
    ToolCallSignal,
    answer_key,
    parse_json_answer,
)

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
TOOL = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}


def ask(text: str = "q", **kw: Any) -> StepRequest:
    return StepRequest(kw.pop("step", "s"), [{"role": "user", "content": text}], **kw)


class ScriptedProbe:
    """The router's probe, scripted: what the extra samples and the judge answer."""

    def __init__(self, samples: list[str] | None = None, judge: str = "yes") -> None:
        self._samples, self._judge = samples or [], judge
        self.calls: list[str] = []

    def samples(self, n: int) -> list[Answer]:
        self.calls.append(f"samples {n}")
        return [Answer(t) for t in self._samples[:n]]

    def ask(self, tier: str, messages: Any, max_tokens: int) -> str:
        self.calls.append(f"judge {tier}")
        return self._judge


# -- signals -------------------------------------------------------------------------------------


def test_logprob_signal_reads_mean_or_least_probability_and_abstains_without_logprobs():
    answer = Answer("12", logprobs=(-0.1, -2.0))
    assert LogprobSignal().score(None, answer, None) == pytest.approx(0.3499, abs=1e-4)
    assert LogprobSignal(statistic="min").score(None, answer, None) == pytest.approx(0.1353, abs=1e-4)
    assert LogprobSignal().score(None, Answer("12"), None) is None


def test_hedging_catches_hedges_and_refusals_and_added_phrases():
    s = HedgingSignal(phrases=(r"\bperhaps\b",))
    assert [s.score(None, Answer(t), None) for t in (
        "I'm not sure it is 12.", "I cannot help with that.", "It is unclear.", "Perhaps 12", "It is 12.")] == \
        [0.0, 0.0, 0.0, 0.0, 1.0]
    assert s.score(None, Answer(""), None) == 0.0  # an empty answer is no answer
    assert s.score(None, Answer("", (("add", "{}"),)), None) is None  # a tool call has no text to hedge


def test_schema_signal_validates_text_fenced_json_and_tool_arguments():
    request = ask(response_schema=SCHEMA)
    s = SchemaSignal()
    assert s.score(request, Answer('{"n": 3}'), None) == 1.0
    assert s.score(request, Answer('```json\n{"n": 3}\n```'), None) == 1.0
    assert s.score(request, Answer("", (("Out", '{"n": 3}'),)), None) == 1.0
    assert s.score(request, Answer('{"n": "three"}'), None) == 0.0
    assert s.score(request, Answer("three"), None) == 0.0
    assert s.score(ask(), Answer("three"), None) is None  # no schema asked: no opinion
    with pytest.raises(ValueError):
        parse_json_answer(Answer("not json"))


def test_tool_call_signal_needs_a_known_tool_and_valid_arguments():
    request = ask(tools=[TOOL])
    s = ToolCallSignal()
    assert s.score(request, Answer("", (("add", '{"a": 1, "b": 2}'),)), None) == 1.0
    assert s.score(request, Answer("", (("add", '{"a": 1}'),)), None) == 0.0
    assert s.score(request, Answer("", (("add", '{"a": 1, "b": 2'),)), None) == 0.0
    assert s.score(request, Answer("", (("sub", '{"a": 1, "b": 2}'),)), None) == 0.0
    assert s.score(request, Answer("", (("add", '{"a": 1, "b": 2}'), ("sub", "{}"))), None) == 0.0
    assert s.score(request, Answer("three"), None) is None


def test_arithmetic_signal_checks_stated_calculations():
    s = ArithmeticSignal()
    assert s.score(None, Answer("4 x 20 = 80, then <<80+5=85>>85."), None) == 1.0
    assert s.score(None, Answer("12 + 30 = 32"), None) == 0.0
    assert s.score(None, Answer("It is forty-two."), None) is None


def test_consistency_compares_answer_keys_of_extra_samples():
    assert answer_key(Answer("The total is $1,250.")) == answer_key(Answer("#### 1250")) == "1250"
    assert answer_key(Answer("", (("add", '{"b": 2, "a": 1}'),))) == answer_key(Answer("", (("add", '{"a":1,"b":2}'),)))
    probe = ScriptedProbe(["so 12", "13"])
    assert ConsistencySignal(samples=3).score(ask(), Answer("12"), probe) == pytest.approx(2 / 3)
    assert probe.calls == ["samples 2"]


def test_judge_asks_its_tier_and_abstains_on_an_unclear_reply():
    s = JudgeSignal("fast")
    assert s.score(ask(), Answer("12"), ScriptedProbe(judge="Yes.")) == 1.0
    assert s.score(ask(), Answer("12"), ScriptedProbe(judge="no, it is 13")) == 0.0
    assert s.score(ask(), Answer("12"), ScriptedProbe(judge="maybe")) is None
    prompt = s.messages(ask("What is 6+6?"), Answer("12"))[1]["content"]
    assert "What is 6+6?" in prompt and "12" in prompt


# -- combining -----------------------------------------------------------------------------------


def test_all_stops_at_the_first_failure_so_model_calls_are_saved():
    policy = CascadePolicy(("fast", "strong"), [JudgeSignal("fast"), HedgingSignal()], combine="all")
    probe = ScriptedProbe()
    verdict = policy.judge(ask(), Answer("I don't know"), probe)
    assert (verdict.accepted, verdict.signals, probe.calls) == (False, (("hedging", 0.0),), [])
    verdict = policy.judge(ask(), Answer("12"), probe)
    assert (verdict.accepted, verdict.signals, probe.calls) == (True, (("hedging", 1.0), ("judge", 1.0)), ["judge fast"])


def test_any_accepts_on_one_pass_and_weighted_averages_against_the_threshold():
    answer = Answer("I'm not sure: 12", logprobs=(-0.05,))
    any_ = CascadePolicy(("fast", "strong"), [HedgingSignal(), LogprobSignal()], combine="any")
    assert any_.judge(ask(), answer, None).accepted
    weighted = CascadePolicy(("fast", "strong"), [HedgingSignal(weight=1), LogprobSignal(weight=3)],
                             combine="weighted", threshold=0.7)
    verdict = weighted.judge(ask(), answer, None)
    assert verdict.confidence == pytest.approx(3 * 0.9512 / 4, abs=1e-3) and verdict.accepted
    assert not CascadePolicy(("fast", "strong"), [HedgingSignal(weight=3), LogprobSignal(weight=1)],
                             combine="weighted", threshold=0.7).judge(ask(), answer, None).accepted


def test_an_answer_no_signal_applies_to_is_accepted():
    verdict = CascadePolicy(("fast", "strong"), [SchemaSignal()]).judge(ask(), Answer("12"), None)
    assert (verdict.accepted, verdict.confidence, verdict.reason) == (True, None, "no signal applies")


# -- configuration -------------------------------------------------------------------------------


def problems(**config: Any) -> list[str]:
    config.setdefault("tiers", {"fast": {"models": ["openai/a"]}, "strong": {"models": ["openai/b"]}})
    config.setdefault("default", "fast")
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(**config)
    return [f"{p.path}: {p.message}" for p in excinfo.value.problems]


def test_cascade_config_problems_name_their_field():
    assert problems(steps={"s": {"policy": "cascade", "signals": [{"signal": "scorer"}]}}) == [
        "steps.s.signals[0]: signal 'scorer' needs 'artefact' (from steproute train --policy cascade)"]
    assert problems(steps={"s": {"policy": "cascade", "signals": [{"signal": "magic"}]}})[0].startswith(
        "steps.s.signals[0].signal:")
    assert problems(steps={"s": {"policy": "cascade", "tiers": ["fast", "huge"], "speculative": True,
                                 "signals": [{"signal": "judge", "tier": "tiny"}]}}) == [
        "steps.s.tiers[1]: unknown tier 'huge' (known: fast, strong)",
        "steps.s.signals[0].tier: unknown tier 'tiny' (known: fast, strong)",
        "steps.s.speculative: speculative routing needs a 'start' policy"]
    assert problems(steps={"s": {"policy": "cascade", "start": {"policy": "fixed", "tier": "mega"}}}) == [
        "steps.s.start.tier: unknown tier 'mega' (known: fast, strong)"]


# -- through the router (mock responses) ---------------------------------------------------------

TIERS = {
    "fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "I'm not sure, maybe 12.", "api_key": "k"}]},
    "standard": {"models": [{"model": "openai/gpt-4.1-mini", "mock_response": '{"n": 12}', "api_key": "k"}]},
    "advanced": {"models": [{"model": "openai/gpt-4o", "mock_response": '{"n": 12}', "api_key": "k"}]},
}


def router_with(step: dict[str, Any], **kwargs: Any) -> StepRouter:
    return StepRouter(RouterConfig(tiers=TIERS, default="fast", steps={"s": {"policy": "cascade", **step}}), **kwargs)


def traced(step: dict[str, Any], **kwargs: Any) -> tuple[StepRouter, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return router_with(step, tracer_provider=provider, **kwargs), exporter


def test_a_rejected_answer_escalates_and_the_step_pays_for_every_attempt(tmp_path):
    router, exporter = traced({}, decision_log=tmp_path / "log.jsonl")
    result = router.complete(ask())
    d = result.decision
    assert (d.tier, d.model, d.escalated_from, d.attempts, d.policy) == (
        "standard", "openai/gpt-4.1-mini", "fast", 2, "cascade")
    assert [(a.tier, a.accepted, a.signals) for a in d.cascade] == [
        ("fast", False, (("hedging", 0.0),)), ("standard", True, (("hedging", 1.0),))]
    assert "escalated fast → standard" in d.reason and "hedging below threshold" in d.reason
    assert result.completion.content == '{"n": 12}'
    assert result.cost_usd == pytest.approx(sum(a.cost_usd for a in d.cascade))
    assert result.cost_usd > result.completion.cost_usd > 0
    route, *_ = [s for s in exporter.get_finished_spans() if s.name == "route s"]
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert [(c.name, c.attributes["steproute.cascade.role"], c.parent.span_id == route.context.span_id) for c in chats] == [
        ("chat openai/gpt-4o-mini", "attempt", True), ("chat openai/gpt-4.1-mini", "answer", True)]
    assert chats[0].attributes["steproute.cascade.signal.hedging"] == 0.0
    assert chats[0].attributes["steproute.cascade.accepted"] is False
    assert route.attributes["steproute.step.cost.usd"] == pytest.approx(result.cost_usd)
    assert route.attributes["steproute.tier"] == "standard"
    assert list(route.attributes["steproute.cascade.chain"]) == ["fast", "standard"]
    assert route.attributes["steproute.escalated_from"] == "fast"
    router.decision_log.close()
    entry = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert entry["tier"] == "standard" and entry["attempts"] == 2 and entry["escalated_from"] == "fast"
    assert [a["tier"] for a in entry["cascade"]] == ["fast", "standard"]
    assert entry["cascade"][0]["signals"] == {"hedging": 0.0}
    assert entry["cost_usd"] == pytest.approx(result.cost_usd)


def test_an_accepted_first_answer_costs_one_call():
    result = router_with({"signals": [{"signal": "schema"}]}).complete(ask())
    assert (result.decision.tier, result.decision.attempts, result.decision.escalated_from) == ("fast", 1, None)
    assert result.cost_usd == result.completion.cost_usd
    assert "accepted (no signal applies)" in result.decision.reason


def test_hints_bound_the_cascade():
    router = router_with({})
    assert router.complete(ask(hint=__import__("steproute").Hint(max_tier="fast"))).decision.attempts == 1
    fixed = router.complete(ask(hint=__import__("steproute").Hint(tier="advanced"))).decision
    assert (fixed.tier, fixed.policy, fixed.cascade) == ("advanced", "hint", ())
    floor = router.complete(ask(hint=__import__("steproute").Hint(min_tier="standard"))).decision
    assert [a.tier for a in floor.cascade] == ["standard"]


def test_the_last_tier_answers_unjudged_when_every_cheaper_answer_is_rejected():
    router = router_with({"signals": [{"signal": "schema"}, {"signal": "hedging"}], "tiers": ["fast", "advanced"]})
    result = router.complete(ask(response_schema={"type": "string"}))
    assert [(a.tier, a.accepted) for a in result.decision.cascade] == [("fast", False), ("advanced", None)]
    assert "last tier: not judged" == result.decision.cascade[-1].reason


def test_a_failed_cheap_tier_escalates_and_is_recorded():
    tiers = {**TIERS, "fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "litellm.RateLimitError",
                                           "api_key": "k"}]}}
    router = StepRouter(RouterConfig(tiers=tiers, default={"policy": "cascade"}))
    result = router.complete(ask())
    assert result.decision.tier == "standard"
    assert result.decision.cascade[0].reason.startswith("failed: ")


def test_an_escalation_moves_the_conversations_pin():
    router = router_with({})
    first = router.complete(ask(thread="t"))
    assert first.decision.tier == "standard"
    again = router.complete(ask(thread="t"))
    assert (again.decision.pinned, again.decision.tier, [a.tier for a in again.decision.cascade]) == (
        True, "standard", ["standard"])
    assert router.pin_store.get("t", "s").tier == "standard"


def test_signals_that_call_models_are_paid_for_and_traced():
    router, exporter = traced({"signals": [{"signal": "judge", "tier": "standard"}]})
    result = router.complete(ask())  # the judge (standard) answers '{"n": 12}': no verdict, no opinion
    assert result.decision.tier == "fast"
    assert result.decision.cascade[0].reason == "no signal applies"
    assert result.cost_usd > result.completion.cost_usd  # the judge's call counts
    roles = [s.attributes["steproute.cascade.role"] for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert roles == ["judge", "answer"]
    consistent = router_with({"signals": [{"signal": "consistency", "samples": 3}]}).complete(ask())
    assert dict(consistent.decision.cascade[0].signals) == {"consistency": 1.0}  # mock answers agree
    assert consistent.cost_usd == pytest.approx(3 * consistent.completion.cost_usd)


def test_stream_buffers_rejected_attempts_and_streams_the_last_tier():
    router = router_with({"tiers": ["fast", "advanced"]})
    items = list(router.stream(ask()))
    *chunks, summary = items
    assert "".join(c.content for c in chunks) == '{"n": 12}'  # nothing of the rejected cheap answer
    assert (summary.decision.tier, summary.decision.attempts) == ("advanced", 2)
    assert summary.cost_usd == pytest.approx(sum(a.cost_usd for a in summary.decision.cascade))
    accepted = list(router_with({"signals": [{"signal": "schema"}]}).stream(ask()))
    assert "".join(c.content for c in accepted[:-1]) == "I'm not sure, maybe 12."
    assert accepted[-1].decision.tier == "fast"

    async def collect() -> list:
        return [item async for item in router.astream(ask())]

    *achunks, asummary = asyncio.run(collect())
    assert "".join(c.content for c in achunks) == '{"n": 12}' and asummary.decision.escalated_from == "fast"


def test_a_batch_runs_the_cheap_tier_over_all_then_escalates_only_the_rejected():
    router = router_with({"signals": [{"signal": "schema"}], "tiers": ["fast", "advanced"], "max_concurrency": 2})
    requests = [ask(f"q{i}", response_schema=SCHEMA if i % 2 else None) for i in range(6)]
    results = router.complete_batch(requests)
    assert [r.decision.tier for r in results] == ["fast", "advanced"] * 3
    assert [r.decision.attempts for r in results] == [1, 2] * 3
    aresults = asyncio.run(router.acomplete_batch(requests))
    assert [r.decision.tier for r in aresults] == ["fast", "advanced"] * 3
    mixed = router.complete_batch([ask(step="other"), *requests[:2]])
    assert [r.decision.policy for r in mixed] == ["fixed", "cascade", "cascade"]


def test_a_batch_returns_or_raises_item_errors_after_finishing_the_others():
    router = router_with({})
    bad = ask(hint=__import__("steproute").Hint(tier="nope"))
    results = router.complete_batch([ask(), bad], return_exceptions=True)
    assert results[0].decision.tier == "standard" and "'nope' is not a tier" in str(results[1])
    with pytest.raises(Exception, match="'nope' is not a tier"):
        router.complete_batch([ask(), bad])


def test_the_chat_model_batches_cascade_steps_phase_by_phase():
    router = router_with({"signals": [{"signal": "hedging"}], "tiers": ["fast", "advanced"]})
    model = router.chat_model(step="s")
    messages = model.batch(["a", "b", "c"])
    assert [m.response_metadata["steproute"]["tier"] for m in messages] == ["advanced"] * 3
    assert all(m.response_metadata["steproute"]["attempts"] == 2 for m in messages)
    amessages = asyncio.run(model.abatch(["a"]))
    assert amessages[0].response_metadata["steproute"]["escalated_from"] == "fast"


def test_speculative_routing_cancels_the_cheap_call_when_start_picks_stronger():
    router = router_with({"start": {"policy": "rules", "rules": [{"when": {"regex": "prove"}, "tier": "advanced"}],
                                    "fallback": "fast"}, "speculative": True})
    hard = asyncio.run(router.acomplete(ask("prove it")))
    assert [(a.tier, a.reason) for a in hard.decision.cascade] == [
        ("fast", "speculative call cancelled"), ("advanced", "last tier: not judged")]
    assert "speculative: rules picked 'advanced', the 'fast' call was cancelled; escalated fast → advanced (" \
        in hard.decision.reason  # no word of a tier that cannot serve the call: every tier here can
    easy = asyncio.run(router.acomplete(ask("hello")))
    assert [a.tier for a in easy.decision.cascade] == ["fast", "standard"]
    assert "speculative: rules agreed" in easy.decision.reason
    sync = router.complete(ask("prove it"))  # sync calls ask start first: nothing to cancel
    assert [a.tier for a in sync.decision.cascade] == ["advanced"]
