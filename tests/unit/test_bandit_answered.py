"""A bandit learns from the tier that ANSWERED its decision (after a cross-tier fallback), also as the
default behind a ``rules`` step, and is refused as a shadow candidate (it could never learn there).

Over the real path: a real StepRouter, LiteLLM's ``mock_response`` (``litellm.InternalServerError``
makes a tier fail), the decision log and the ``route`` span.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.errors import ConfigError
from steproute.policies.bandit import BanditPolicy
from tests.conftest import mock_tiers

DOWN = "litellm.InternalServerError"  # LiteLLM's mock raises it


def _tiers(*down: str) -> dict[str, Any]:
    tiers = mock_tiers()
    for name in down:
        tiers[name]["models"][0]["mock_response"] = DOWN
    return tiers


def _bandit(**extra: Any) -> dict[str, Any]:
    # prior on 'fast' and no exploration: the bandit decides 'fast' every time
    return {"policy": "bandit", "prior": "fast", "prior_strength": 50, "explore": 0.0, "seed": 0, **extra}


def _ask(step: str = "s") -> StepRequest:
    return StepRequest(step, [{"role": "user", "content": "hi"}])


def _entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


NOTE = "bandit: feedback on this call is learnt for tier 'standard', which answered (decided 'fast')"


@pytest.mark.parametrize("mode", ["sync", "async", "stream"])
def test_feedback_after_a_fallback_is_credited_to_the_tier_that_answered(mode, tmp_path, caplog):
    provider, exporter = _traced()
    router = StepRouter(RouterConfig(tiers=_tiers("fast"), default="fast",
                                     steps={"s": _bandit(tiers=["fast", "standard"])}),
                        decision_log=tmp_path / "d.jsonl", tracer_provider=provider)
    bandit = router.policy_of("s")
    assert isinstance(bandit, BanditPolicy)
    before = bandit.posterior("s")
    caplog.set_level(logging.WARNING, logger="steproute")
    decisions = []
    for _ in range(2):
        if mode == "sync":
            decision = router.complete(_ask()).decision
        elif mode == "async":
            decision = asyncio.run(router.acomplete(_ask())).decision
        else:
            decision = list(router.stream(_ask()))[-1].decision  # type: ignore[union-attr]
        assert (decision.tier, decision.fallback_from, decision.policy) == ("standard", "fast", "bandit")
        decisions.append(decision)
    for decision in decisions:
        router.feedback(decision.id, 1.0)
    after = bandit.posterior("s")
    assert after["fast"] == before["fast"], "the decided tier failed: it earned nothing"
    assert after["standard"] == (before["standard"][0] + 2, before["standard"][1])
    # said on the reason, the span and the log entry, and once on the logger
    assert all(d.reason.endswith(NOTE) for d in decisions)
    router.decision_log.close()  # type: ignore[union-attr]
    logged = [e for e in _entries(tmp_path / "d.jsonl") if e.get("type") != "feedback" and e.get("id") in
              {d.id for d in decisions}]
    assert len(logged) == 2 and all(e["reason"].endswith(NOTE) for e in logged)
    routes = [s for s in exporter.get_finished_spans() if s.name == "route s"]
    assert len(routes) == 2 and all(str(s.attributes["steproute.decision.reason"]).endswith(NOTE) for s in routes)
    said = [r.getMessage() for r in caplog.records if "which answered" in r.getMessage()]
    assert said == [f"step 's': {NOTE} (logged once)"], said


def test_no_note_and_the_decided_tier_learns_when_it_answered():
    router = StepRouter(RouterConfig(tiers=_tiers(), default="fast", steps={"s": _bandit(tiers=["fast", "standard"])}))
    decision = router.complete(_ask()).decision
    assert decision.tier == "fast" and "which answered" not in decision.reason and "not learnt" not in decision.reason
    before = router.policy_of("s").posterior("s")  # type: ignore[attr-defined]
    router.feedback(decision.id, 0.0)
    assert router.policy_of("s").posterior("s")["fast"] == (before["fast"][0], before["fast"][1] + 1)  # type: ignore[attr-defined]


def test_a_fallback_to_a_tier_that_is_not_an_arm_is_not_learnt_and_says_so(tmp_path):
    # the bandit's arms are fast and advanced; 'next' from fast lands on standard, which is not one of them
    router = StepRouter(RouterConfig(tiers=_tiers("fast"), default="fast", steps={"s": _bandit(tiers=["fast", "advanced"])}))
    bandit = router.policy_of("s")
    before = bandit.posterior("s")  # type: ignore[attr-defined]
    decision = router.complete(_ask()).decision
    assert (decision.tier, decision.fallback_from) == ("standard", "fast")
    assert decision.reason.endswith("bandit: feedback on this call is not learnt: tier 'standard' answered, "
                                    "not one of the bandit's tiers (fast, advanced) (decided 'fast')")
    with pytest.raises(ValueError, match="needs a decision log"):  # nothing learnt, nowhere to write it
        router.feedback(decision.id, 1.0)
    assert bandit.posterior("s") == before  # type: ignore[attr-defined]
    logged = StepRouter(RouterConfig(tiers=_tiers("fast"), default="fast",
                                     steps={"s": _bandit(tiers=["fast", "advanced"])}), decision_log=tmp_path / "d.jsonl")
    other = logged.complete(_ask()).decision
    logged.feedback(other.id, 1.0)  # written to the log, not learnt
    assert logged.policy_of("s").posterior("s") == before  # type: ignore[attr-defined]
    logged.decision_log.close()  # type: ignore[union-attr]
    assert _entries(tmp_path / "d.jsonl")[-1] == {"type": "feedback", "id": other.id, "quality": 1.0}


RULES_MISS = {"policy": "rules", "rules": [{"when": {"keywords": ["prove"]}, "tier": "advanced"}]}


@pytest.mark.parametrize("how", ["complete", "route"])
def test_a_bandit_default_behind_rules_that_missed_learns_from_feedback(how, tmp_path):
    router = StepRouter(RouterConfig(tiers=_tiers(), default=_bandit(), steps={"s": RULES_MISS}),
                        decision_log=tmp_path / "d.jsonl")
    bandit = router.policy_of("unconfigured-step")
    assert isinstance(bandit, BanditPolicy) and router.policy_of("s") is not bandit
    before = bandit.posterior("s")
    decision = router.complete(_ask()).decision if how == "complete" else router.route(_ask())[0]
    assert (decision.policy, decision.tier) == ("bandit", "fast")
    assert decision.reason.startswith("step policy had no match; default: bandit exploit 'fast'")
    router.feedback(decision.id, 0.0)
    assert bandit.posterior("s")["fast"] == (before["fast"][0], before["fast"][1] + 1)


def test_a_bandit_default_behind_rules_learns_the_tier_that_answered_after_a_fallback():
    router = StepRouter(RouterConfig(tiers=_tiers("fast"), default=_bandit(), steps={"s": RULES_MISS}))
    decision = router.complete(_ask()).decision
    assert (decision.policy, decision.tier, decision.fallback_from) == ("bandit", "standard", "fast")
    assert decision.reason.endswith(NOTE)
    router.feedback(decision.id, 1.0)  # no decision log: it must have been learnt
    assert router.policy_of("other").posterior("s")["standard"] == (2.0, 1.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["default", "steps.s"])
def test_a_bandit_as_a_shadow_candidate_is_refused_at_load_time(where):
    shadow = {"policy": "fixed", "tier": "fast", "shadow": {"candidate": {"policy": "bandit"}, "judge": "exact"}}
    config: dict[str, Any] = {"tiers": _tiers(), "default": "fast", "steps": {"s": "fast"}}
    if where == "default":
        config["default"] = shadow
    else:
        config["steps"] = {"s": shadow}
    with pytest.raises((ConfigError, ValueError)) as caught:
        StepRouter(RouterConfig(**config))
    text = str(caught.value)
    assert "a bandit as a shadow candidate cannot learn" in text and f"{where}.shadow" in text, text


def test_a_bandit_on_an_experiment_arm_learns_from_its_arms_calls():
    # what the shadow refusal points to: the bandit decides (and learns) for the calls of its arm only
    router = StepRouter(RouterConfig(tiers=_tiers("fast"), default="fast", steps={"s": "standard"}, experiment={
        "name": "try-bandit", "steps": ["s"], "arms": {"control": None, "bandit": _bandit()},
        "split": {"control": 0.0, "bandit": 1.0}}))
    decision = router.complete(StepRequest("s", [{"role": "user", "content": "hi"}], thread="t-1")).decision
    assert (decision.policy, decision.tier, decision.fallback_from) == ("bandit", "standard", "fast")
    assert decision.experiment is not None and decision.experiment.arm == "bandit" and decision.reason.endswith(NOTE)
    router.feedback(decision.id, 1.0)  # no decision log: it must have been learnt
    bandit = router._planner.arm_policies["bandit"]
    assert isinstance(bandit, BanditPolicy) and bandit.posterior("s")["standard"] == (2.0, 1.0)


IMAGE = [{"role": "user", "content": [
    {"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]


def test_a_capability_move_is_credited_to_the_tier_that_answered_and_said_on_the_span():
    # gpt-3.5-turbo cannot see images: the capability filter moves the bandit's 'fast' to 'advanced' (no fallback)
    provider, exporter = _traced()
    tiers = {"fast": {"models": [{"model": "openai/gpt-3.5-turbo", "mock_response": "x"}]},
             "advanced": {"models": [{"model": "openai/gpt-4o", "mock_response": "x"}]}}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast", steps={"s": _bandit()}), tracer_provider=provider)
    decision = router.complete(StepRequest("s", IMAGE)).decision
    note = "bandit: feedback on this call is learnt for tier 'advanced', which answered (decided 'fast')"
    assert (decision.tier, decision.fallback_from) == ("advanced", None) and decision.reason.endswith(note)
    (route,) = [s for s in exporter.get_finished_spans() if s.name == "route s"]
    assert str(route.attributes["steproute.decision.reason"]).endswith(note)
    router.feedback(decision.id, 1.0)
    assert router.policy_of("s").posterior("s")["advanced"] == (2.0, 1.0)  # type: ignore[attr-defined]
