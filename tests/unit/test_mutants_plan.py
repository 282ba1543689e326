"""Tests that kill mutmut mutants of steproute/_plan.py (see docs/architecture.md, "Mutation testing").

The planner is pure: a configuration in, a plan and a decision out. Each test asserts the tier,
bounds, pin settings or the exact reason a decision carries.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import replace
from typing import Any

import pytest

from steproute import ConfigError, Hint, RouterConfig, RoutingError, StepRequest
from steproute._plan import Planner
from steproute.guards import PII_THREAD_CHARS
from steproute.latency import DEADLINE_KEY, TOTAL, LatencyBook
from steproute.pinning import PinSettings
from steproute.policies import FixedPolicy
from tests.conftest import mock_tiers

TIERS = ("fast", "standard", "advanced")
NEVER = [{"name": "never", "when": {"keywords": ["\x00never\x00"]}, "tier": "advanced"}]


def planner(**config: Any) -> Planner:
    config.setdefault("tiers", mock_tiers())
    config.setdefault("default", "fast")
    return Planner(RouterConfig(**config), lambda tier: f"model-of-{tier}", lambda tier, messages, n: "")


def ask(step: str = "s", text: str = "hi", **kw: Any) -> StepRequest:
    return StepRequest(step, [{"role": "user", "content": text}], **kw)


# -- plans ----------------------------------------------------------------------------------------


def test_the_default_plan_spans_every_tier_and_pins_sticky_by_step():
    p = planner()
    plan = p.plan_of(ask())
    assert (plan.kind, plan.low, plan.high, plan.fixed, plan.policy_is_default, plan.unconfigured) == (
        None, 0, 2, None, True, False)
    assert plan.policy is p.default and plan.tier_fallback is None  # unset: the walk reads it as `next` (tier_walk.walk_rules)
    assert plan.pinning == PinSettings("sticky", "s", None, None)
    assert p.tiers == TIERS and p.rank == {"fast": 0, "standard": 1, "advanced": 2}


def test_a_step_entry_by_name_or_kind_gives_its_policy_kind_and_tier_fallback():
    p = planner(steps={"s": {"policy": "fixed", "tier": "standard", "kind": "chat", "tier_fallback": "none"},
                       "code": {"policy": "fixed", "tier": "advanced"}})
    plan = p.plan_of(ask())
    assert (plan.kind, plan.policy_is_default, plan.tier_fallback, plan.unconfigured) == ("chat", False, "none", False)
    assert plan.policy is p.policies["s"]
    by_kind = p.plan_of(ask("other", kind="code"))
    assert (by_kind.kind, by_kind.policy is p.policies["code"], by_kind.unconfigured) == ("code", True, False)
    unknown = p.plan_of(ask("elsewhere"))
    assert (unknown.policy_is_default, unknown.unconfigured) == (True, True)
    assert p.plan_of(ask("s", kind="declared")).kind == "declared"  # declared in code wins


@pytest.mark.parametrize(("config", "hint", "bounds"), [
    ({"min_tier": "standard"}, Hint(min_tier="fast"), (1, 2)),
    ({"min_tier": "fast"}, Hint(min_tier="standard"), (1, 2)),
    ({"max_tier": "standard"}, Hint(max_tier="advanced"), (0, 1)),
    ({"max_tier": "advanced"}, Hint(max_tier="standard"), (0, 1)),
    ({"min_tier": "standard", "max_tier": "standard"}, Hint(), (1, 1)),
    ({}, Hint(min_tier="advanced"), (2, 2)),
    ({}, Hint(max_tier="fast"), (0, 0)),
])
def test_config_and_hint_bounds_combine(config, hint, bounds):
    p = planner(steps={"s": {"policy": "rules", "rules": NEVER, "fallback": "standard", **config}})
    plan = p.plan_of(ask(hint=hint))
    assert (plan.low, plan.high) == bounds


def test_bounds_that_cross_are_refused():
    p = planner(steps={"s": {"policy": "rules", "rules": NEVER, "fallback": "standard", "min_tier": "standard"}})
    with pytest.raises(RoutingError) as excinfo:
        p.plan_of(ask(hint=Hint(max_tier="fast")))
    assert str(excinfo.value) == "step 's': min_tier 'standard' is above max_tier 'fast'"


@pytest.mark.parametrize(("hint", "what"), [
    (Hint(min_tier="huge"), "min_tier hint"), (Hint(max_tier="huge"), "max_tier hint"), (Hint(tier="huge"), "tier hint")])
def test_a_hint_naming_no_tier_is_refused_with_the_known_tiers(hint, what):
    with pytest.raises(RoutingError) as excinfo:
        planner().plan_of(ask(hint=hint))
    assert str(excinfo.value) == f"step 's': {what} 'huge' is not a tier (known: fast, standard, advanced)"


def test_a_tier_hint_fixes_the_tier_and_unpins_the_step():
    plan = planner().plan_of(ask(hint=Hint(tier="advanced")))
    assert plan.fixed is not None and (plan.fixed.tier, plan.fixed.reason) == ("advanced", "tier hint 'advanced'")
    assert plan.pinning is None


def test_pin_settings_precedence_hint_then_step_then_router_then_defaults():
    p = planner(pinning={"mode": "upgrade_only", "group": "g-router", "after_turns": 3, "after_seconds": 30.0},
                steps={"s": {"policy": "fixed", "tier": "fast",
                             "pinning": {"mode": "reevaluate", "group": "g-step", "after_turns": 5}},
                       "t": {"policy": "fixed", "tier": "fast", "pinning": {"after_seconds": 9.0}}})
    assert p.plan_of(ask()).pinning == PinSettings("reevaluate", "g-step", 5, 30.0)
    assert p.plan_of(ask(hint=Hint(pin="sticky", pin_group="g-hint"))).pinning == PinSettings("sticky", "g-hint", 5, 30.0)
    assert p.plan_of(ask("t")).pinning == PinSettings("upgrade_only", "g-router", 3, 9.0)
    assert p.plan_of(ask(hint=Hint(pin="off"))).pinning is None
    assert planner(pinning={"mode": "off"}).plan_of(ask()).pinning is None
    own_group = planner(steps={"s": {"policy": "fixed", "tier": "fast", "pinning": {"group": "mine"}}})
    assert own_group.plan_of(ask()).pinning == PinSettings("sticky", "mine", None, None)


def test_reevaluate_without_a_trigger_is_refused():
    with pytest.raises(RoutingError) as excinfo:
        planner().plan_of(ask(hint=Hint(pin="reevaluate")))
    assert str(excinfo.value) == "step 's': pin mode 'reevaluate' needs after_turns or after_seconds in the config"
    assert planner(pinning={"after_seconds": 5.0}).plan_of(ask(hint=Hint(pin="reevaluate"))).pinning == PinSettings(
        "reevaluate", "s", None, 5.0)


def test_a_policy_that_cannot_be_built_is_reported_against_its_path(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        planner(steps={"s": {"policy": "classifier", "artefact": str(tmp_path / "missing.json")}})
    assert "steps.s.artefact" in str(excinfo.value)


# -- deciding ----------------------------------------------------------------------------------------


def test_decide_records_the_policy_its_reason_score_thread_and_agent():
    p = planner(steps={"s": {"policy": "fixed", "tier": "standard"}})
    request = ask(thread="t-1", agent="helper")
    d = p.decide(p.plan_of(request), request)
    assert (d.step, d.kind, d.tier, d.model, d.policy, d.reason, d.score, d.thread, d.agent) == (
        "s", None, "standard", "model-of-standard", "fixed", "fixed tier 'standard'", None, "t-1", "helper")


def test_a_tier_hint_decides_as_the_hint():
    p = planner()
    request = ask(hint=Hint(tier="advanced"))
    d = p.decide(p.plan_of(request), request)
    assert (d.tier, d.policy, d.reason) == ("advanced", "hint", "tier hint 'advanced'")


def test_a_step_policy_without_a_match_asks_the_default():
    p = planner(default="standard", steps={"s": {"policy": "rules", "rules": NEVER}})
    d = p.decide(p.plan_of(ask()), ask())
    assert (d.tier, d.policy, d.reason) == ("standard", "fixed", "step policy had no match; default: fixed tier 'standard'")


def test_no_policy_matching_takes_the_cheapest_allowed_tier():
    p = planner(default={"policy": "rules", "rules": NEVER},
                steps={"s": {"policy": "rules", "rules": NEVER, "min_tier": "standard"}})
    d = p.decide(p.plan_of(ask()), ask())
    assert (d.tier, d.policy, d.reason) == ("standard", "rules", "no policy matched; cheapest allowed tier")
    only_default = p.decide(p.plan_of(ask("other")), ask("other"))
    assert (only_default.tier, only_default.reason) == (
        "fast", "step 'other' matches no steps: entry; default policy: no policy matched; cheapest allowed tier")


def test_a_choice_outside_the_bounds_is_clamped_and_said():
    p = planner(steps={"s": {"policy": "rules", "rules": NEVER, "fallback": "advanced", "max_tier": "standard"},
                       "u": {"policy": "rules", "rules": NEVER, "fallback": "fast", "min_tier": "standard"}})
    down = p.decide(p.plan_of(ask()), ask())
    assert (down.tier, down.reason) == ("standard", "no rule matched; fallback tier; lowered to max_tier 'standard'")
    up = p.decide(p.plan_of(ask("u")), ask("u"))
    assert (up.tier, up.reason) == ("standard", "no rule matched; fallback tier; raised to min_tier 'standard'")
    inside = p.decide(p.plan_of(ask("u", hint=Hint(max_tier="advanced"))), ask("u"))
    assert inside.reason == "no rule matched; fallback tier; raised to min_tier 'standard'"


def test_the_reason_says_where_the_step_came_from():
    p = planner(steps={"s": {"policy": "fixed", "tier": "fast"}})
    for origin in ("agent", "subgraph"):
        request = ask(origin=origin)
        assert p.decide(p.plan_of(request), request).reason == f"step from the {origin} 's': fixed tier 'fast'"
    other = ask(origin="tool")
    assert p.decide(p.plan_of(other), other).reason == "fixed tier 'fast'"
    unconfigured = ask("x", origin="agent")
    assert p.decide(p.plan_of(unconfigured), unconfigured).reason == (
        "step 'x' (agent) matches no steps: entry; default policy: fixed tier 'fast'")
    plain = ask("x")
    assert p.decide(p.plan_of(plain), plain).reason == "step 'x' matches no steps: entry; default policy: fixed tier 'fast'"
    hinted = ask("x", hint=Hint(tier="standard"))
    assert p.decide(p.plan_of(hinted), hinted).reason == "tier hint 'standard'"


def test_speculative_decides_the_cascades_first_tier_without_its_start_policy():
    p = planner(steps={"s": {"policy": "cascade", "tiers": ["standard", "advanced"],
                             "start": {"policy": "fixed", "tier": "advanced"}}})
    plan = p.plan_of(ask())
    assert p.decide(plan, ask(), speculative=True).tier == "standard"
    assert p.decide(plan, ask()).tier == "advanced"


# -- the PII guard ------------------------------------------------------------------------------------


def test_the_pii_guard_forces_its_tier_and_names_the_detectors():
    p = planner(guards={"pii": {"tier": "standard"}})
    request = ask(text="mail ann@example.org", thread="t-1")
    d = p.pii_decision(p.plan_of(request), request)
    assert d is not None
    assert (d.tier, d.model, d.policy, d.guard, d.thread, d.reason) == (
        "standard", "model-of-standard", "guard", "pii:email", "t-1", "pii guard: email detected; tier 'standard'")
    assert p.pii_decision(p.plan_of(ask()), ask()) is None
    assert planner().pii_decision(planner().plan_of(request), request) is None


@pytest.mark.parametrize("hint", [Hint(tier="fast"), Hint(max_tier="fast"), Hint(min_tier="advanced")])
def test_the_pii_guard_refuses_a_step_that_cannot_go_to_its_tier(hint):
    p = planner(guards={"pii": {"tier": "standard"}})
    request = ask(text="mail ann@example.org", hint=hint)
    with pytest.raises(RoutingError) as excinfo:
        p.pii_decision(p.plan_of(request), request)
    assert str(excinfo.value) == ("step 's': the PII guard (email) requires tier 'standard', "
                                  "which the step's hints or bounds do not allow")


def test_the_pii_guard_allows_its_tier_by_hint_or_at_the_bounds():
    p = planner(guards={"pii": {"tier": "standard"}})
    for hint in (Hint(tier="standard"), Hint(min_tier="standard"), Hint(max_tier="standard")):
        request = ask(text="mail ann@example.org", hint=hint)
        assert p.pii_decision(p.plan_of(request), request).tier == "standard"


def test_the_policies_are_built_once_per_path():
    p = planner(steps={"s": {"policy": "fixed", "tier": "standard"}})
    assert isinstance(p.default, FixedPolicy) and set(p.policies) == {"s"}
    assert p.plan_of(ask()) is p.plan_of(ask())  # one plan per (step, kind, hint)


def test_the_pii_guard_names_every_detector_that_fired():
    p = planner(guards={"pii": {"tier": "standard"}}, steps={"s": {"policy": "fixed", "tier": "fast", "kind": "chat"}})
    request = ask(text="mail ann@example.org, card 4111 1111 1111 1111")
    d = p.pii_decision(p.plan_of(request), request)
    assert (d.step, d.kind, d.guard, d.reason) == (
        "s", "chat", "pii:email,card", "pii guard: email, card detected; tier 'standard'")
    hinted = ask(text="mail ann@example.org, card 4111 1111 1111 1111", hint=Hint(tier="fast"))
    with pytest.raises(RoutingError) as excinfo:
        p.pii_decision(p.plan_of(hinted), hinted)
    assert "the PII guard (email, card) requires tier 'standard'" in str(excinfo.value)


def test_decide_keeps_the_policys_score():
    from steproute.policies.base import Choice

    class Scored:
        name = "scored"

        def choose(self, request):
            return Choice("standard", "scored 0.75", 0.75)

    p = planner(steps={"s": {"policy": "fixed", "tier": "fast"}})
    p.policies["s"] = Scored()
    d = p.decide(p.plan_of(ask()), ask())
    assert (d.tier, d.policy, d.score, d.reason) == ("standard", "scored", 0.75, "scored 0.75")


def test_relative_artefacts_are_read_from_the_configuration_files_folder(tmp_path):
    config = RouterConfig.from_dict({"tiers": mock_tiers(), "default": "fast", "steps": {
        "s": {"policy": "classifier", "artefact": "missing.steproute"}}}, source=str(tmp_path / "steproute.yaml"))
    with pytest.raises(ConfigError) as excinfo:
        Planner(config, lambda tier: tier, lambda tier, messages, n: "")
    assert str(tmp_path / "missing.steproute") in str(excinfo.value)
    assert "steps.s.artefact" in str(excinfo.value)


def test_a_policy_without_an_artefact_that_cannot_be_built_is_reported_against_its_policy(tmp_path):
    chain = {"policy": "chain", "policies": [{"policy": "classifier", "artefact": str(tmp_path / "gone.steproute")}]}
    with pytest.raises(ConfigError) as excinfo:
        planner(steps={"s": chain})
    assert "steps.s.policy" in str(excinfo.value) and "steps.s.artefact" not in str(excinfo.value)


def test_the_llm_policy_gets_the_planners_model_call():
    asked: list[str] = []

    def ask_model(tier, messages, n):
        asked.append(tier)
        return "standard"

    config = RouterConfig(tiers=mock_tiers(), default="fast",
                          steps={"s": {"policy": "llm", "router_tier": "fast", "fallback": "fast"}})
    p = Planner(config, lambda tier: tier, ask_model)
    d = p.decide(p.plan_of(ask()), ask())
    assert asked == ["fast"] and d.tier == "standard"


def test_planning_records_which_entries_and_steps_calls_matched():
    p = planner(steps={"s": {"policy": "fixed", "tier": "fast"}, "t": {"policy": "fixed", "tier": "fast"}})
    assert p.coverage.unmatched_entries() == ["s", "t"]
    p.plan_of(ask("s"))
    p.plan_of(ask("elsewhere"))
    assert p.coverage.unmatched_entries() == ["t"] and p.coverage.unconfigured_steps() == ["elsewhere"]


def test_the_plan_carries_the_steps_style():
    p = planner(steps={"s": {"policy": "fixed", "tier": "fast", "style": {"system_prompt": "Be brief.", "max_tokens": 9}}})
    style = p.plan_of(ask()).style
    assert style is not None and (style.system_prompt, style.max_tokens) == ("Be brief.", 9)


def test_a_config_error_from_a_policy_names_the_configuration_file(tmp_path):
    source = str(tmp_path / "steproute.yaml")
    config = RouterConfig.from_dict({"tiers": mock_tiers(), "default": "fast", "steps": {
        "s": {"policy": "classifier", "artefact": "missing.steproute"}}}, source=source)
    with pytest.raises(ConfigError) as excinfo:
        Planner(config, lambda tier: tier, lambda tier, messages, n: "")
    assert excinfo.value.source == source


def test_without_a_file_relative_artefacts_are_read_from_the_working_directory(tmp_path, monkeypatch):
    from steproute.evaluation._train import train_classifier
    from steproute.policies._artefact import save_artefact
    from tests.unit.test_learned_policies import MODELS, synthetic_rows

    save_artefact(train_classifier(synthetic_rows(60), MODELS, folds=2), tmp_path / "answer.steproute")
    monkeypatch.chdir(tmp_path)
    config = RouterConfig(tiers={"fast": mock_tiers()["fast"], "strong": mock_tiers()["advanced"]}, default="fast",
                          steps={"s": {"policy": "classifier", "artefact": "answer.steproute"}})
    p = Planner(config, lambda tier: tier, lambda tier, messages, n: "")
    assert p.policies["s"].name == "classifier"


# -- the async path: what runs off the event loop, what the pin keeper is given ----------------------------


def _arouted(p: Planner, request: StepRequest, followed: list[Any]) -> tuple[int, Any, Any]:
    async def follow(plan, decision, req):
        followed.append(req)
        return decision, "the pin's action"

    async def run():
        return threading.get_ident(), *(await p.arouted(p.plan_of(request), request, follow))
    return asyncio.run(run())


def test_async_routing_asks_a_policy_that_calls_a_model_off_the_event_loop_and_hands_the_request_to_the_pin():
    asked: list[int] = []

    def ask_model(tier, messages, n):
        asked.append(threading.get_ident())
        return "standard"

    config = RouterConfig(tiers=mock_tiers(), default="fast",
                          steps={"s": {"policy": "llm", "router_tier": "fast", "fallback": "fast"}})
    p = Planner(config, lambda tier: tier, ask_model)
    request, followed = ask(thread="t-1"), []
    loop, decision, action = _arouted(p, request, followed)
    assert (decision.tier, decision.policy, action) == ("standard", "llm", "the pin's action")
    assert followed == [request]                        # the turn pin mode reads the call's messages
    assert len(asked) == 1 and asked[0] != loop         # the model call did not block the event loop


def test_async_routing_decides_a_policy_that_calls_no_model_on_the_event_loop(monkeypatch):
    p = planner(steps={"s": {"policy": "fixed", "tier": "standard"}})
    request, followed, chose = ask(), [], []
    policy = p.plan_of(request).policy
    choose = policy.choose
    monkeypatch.setattr(policy, "choose", lambda req: (chose.append(threading.get_ident()), choose(req))[1])
    loop, decision, _ = _arouted(p, request, followed)
    assert decision.tier == "standard" and followed == [request]
    assert chose == [loop]


def test_the_async_pii_scan_runs_off_the_event_loop_only_for_a_long_input(monkeypatch):
    p = planner(guards={"pii": {"tier": "standard"}})
    assert p.pii is not None
    scanned: list[int] = []
    detect = type(p.pii).detect
    monkeypatch.setattr(type(p.pii), "detect", lambda self, req: (scanned.append(threading.get_ident()), detect(self, req))[1])

    def scan(planner_: Planner, text: str) -> tuple[int, Any]:
        request = ask(text=text, thread="t-1")

        async def run():
            return threading.get_ident(), await planner_.apii_decision(planner_.plan_of(request), request)
        return asyncio.run(run())

    mail = "mail ann@example.org "
    at_limit = mail + "x" * (PII_THREAD_CHARS - len(mail))
    for text, off_loop in ((at_limit, False), (at_limit + "x", True)):
        loop, decision = scan(p, text)
        assert (decision.tier, decision.guard, decision.thread, decision.reason) == (
            "standard", "pii:email", "t-1", "pii guard: email detected; tier 'standard'")
        assert (scanned[-1] != loop) is off_loop
    assert scan(p, "hi")[1] is None and scan(planner(), at_limit + "x")[1] is None


def test_decide_says_a_latency_move_once_in_the_log(caplog):
    book = LatencyBook(TIERS, clock=lambda: 0.0)
    book.observe("fast", "m", TOTAL, 2.3, now=0.0)
    book.observe("standard", "m", TOTAL, 0.7, now=0.0)
    p = Planner(RouterConfig(tiers=mock_tiers(), default="fast",
                             steps={"s": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000}}),
                lambda tier: tier, lambda tier, messages, n: "", latency=book)
    note = "latency: 'fast' p95 2300 ms > max_latency_ms 1000, moved to 'standard'"
    with caplog.at_level(logging.WARNING, logger="steproute"):
        decisions = [p.decide(p.plan_of(ask()), ask()) for _ in range(2)]
    for d in decisions:
        assert (d.tier, d.latency_from, d.reason) == ("standard", "fast", f"fixed tier 'fast'; {note}")
    assert [r.getMessage() for r in caplog.records if "latency" in r.getMessage()] == [
        f"steproute: step 's': {note} (logged once)"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_routing_says_when_the_pin_keeps_a_call_on_a_tier_over_the_runs_deadline(caplog, asynchronous):
    book = LatencyBook(TIERS, clock=lambda: 0.0, wall_clock=lambda: 5000.0)
    book.observe("fast", "m", TOTAL, 0.4, now=0.0)
    p = Planner(RouterConfig(tiers=mock_tiers(), default="fast"), lambda tier: tier, lambda tier, messages, n: "",
                latency=book)

    def follow(plan, decision, request):  # the thread's pin holds the call on `fast`
        return replace(decision, tier="fast", policy="pin", pinned=True, latency_from=None,
                       reason="pinned to tier 'fast'"), None

    async def afollow(plan, decision, request):
        return follow(plan, decision, request)

    request = ask(thread="t-1", metadata={DEADLINE_KEY: 5000.3})  # 300 ms left, fast's p95 is 400 ms
    with caplog.at_level(logging.WARNING, logger="steproute"):
        decision, _ = (asyncio.run(p.arouted(p.plan_of(request), request, afollow)) if asynchronous
                       else p.routed(p.plan_of(request), request, follow))
    note = "latency: 'fast' p95 400 ms > the run's deadline (300 ms left), kept by the pin"
    assert (decision.tier, decision.reason) == ("fast", f"pinned to tier 'fast'; {note}")
    assert f"steproute: step 's': {note} (logged once)" in [r.getMessage() for r in caplog.records]


def test_what_an_online_policy_says_after_the_walk_is_logged_once_per_step_and_note(caplog):
    never = [{"when": {"keywords": ["prove"]}, "tier": "strong"}]
    p = Planner(RouterConfig(tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini"}]},
                                    "strong": {"models": [{"model": "openai/gpt-4o"}]}},
                             default={"policy": "bandit", "explore": 0},
                             steps={"s": {"policy": "rules", "rules": never}, "t": {"policy": "rules", "rules": never}}),
                str, lambda tier, messages, n: "")
    note = "bandit: feedback on this call is learnt for tier 'strong', which answered (decided 'fast')"
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for step in ("s", "t", "s", "t"):
            request = ask(step)
            plan = p.plan_of(request)
            decision = p.decide(plan, request)
            answered = p.answered(plan, replace(decision, tier="strong"))
            assert answered.reason == f"{decision.reason}; {note}"
    assert [r.getMessage() for r in caplog.records if "feedback" in r.getMessage()] == [
        f"step 's': {note} (logged once)", f"step 't': {note} (logged once)"]


def test_an_experiment_arms_plan_keeps_the_kind_the_call_declared():
    p = planner(steps={"answer": "standard"},
                experiment={"name": "x", "steps": ["answer"], "arms": {"a": None, "b": "advanced"}, "unit": "thread"})
    for thread in ("t-1", "t-2", "t-3", "t-4"):
        plan = p.plan_of(ask("answer", kind="chat", thread=thread))
        assert plan.arm is not None and plan.arm.assigned and plan.kind == "chat"


def test_a_decision_no_policy_made_is_not_handed_to_the_default_online_policy():
    """A step with its own policy (rules) over a bandit default: a pin's or a guard's decision is
    neither policy's, so the bandit is not told which tier answered it."""
    p = Planner(RouterConfig(tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini"}]},
                                    "strong": {"models": [{"model": "openai/gpt-4o"}]}},
                             default={"policy": "bandit", "explore": 0},
                             steps={"s": {"policy": "rules", "rules": [{"when": {"keywords": ["prove"]}, "tier": "strong"}]}}),
                str, lambda tier, messages, n: "")
    request = ask("s")
    plan = p.plan_of(request)
    decision = p.decide(plan, request)
    assert p.decider(plan, decision) is p.default                     # the rules missed: the bandit decided
    for policy in ("pin", "guard"):
        other = replace(decision, policy=policy, tier="strong", reason="pinned to tier 'strong'")
        assert p.decider(plan, other) is None
        assert p.answered(plan, other).reason == "pinned to tier 'strong'"


def test_an_experiment_arms_policy_without_a_match_asks_the_default():
    p = planner(default="standard", steps={"answer": "fast"},
                experiment={"name": "x", "steps": ["answer"], "unit": "thread", "split": {"c": 0, "a": 1},
                            "arms": {"c": None, "a": {"policy": "rules", "rules": NEVER}}})
    request = ask("answer", thread="t-1")
    plan = p.plan_of(request)
    decision = p.decide(plan, request)
    assert (plan.arm.arm, plan.policy_is_default) == ("a", False)
    assert (decision.tier, decision.policy, decision.reason) == (
        "standard", "fixed", "experiment 'x', arm 'a': step policy had no match; default: fixed tier 'standard'")
