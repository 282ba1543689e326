"""A/B experiments (issue 19, part 4): the configuration, the stable assignment of a thread (or a
tenant) to an arm, the arm's policy deciding, and the arm on the decision, the span and the log."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import ConfigError, RouterConfig, StepRequest, StepRouter
from steproute.decision_log import LogContents, read_log
from steproute.experiments import Experiment, unit_point
from tests.conftest import mock_tiers

ROOT = Path(__file__).resolve().parents[2]
MSG = [{"role": "user", "content": "hi"}]
EXPERIMENT: dict[str, Any] = {
    "name": "cheap-answer",
    "steps": ["answer"],
    "arms": {"control": None, "cheap": "fast", "strong": {"policy": "fixed", "tier": "advanced"}},
    "split": {"control": 0.2, "cheap": 0.3, "strong": 0.5},
}


def _config(experiment: dict[str, Any] | None = None, **more: Any) -> RouterConfig:
    return RouterConfig(tiers=mock_tiers(), default="fast", steps={"answer": "standard", "plan": "advanced"},
                        experiment=EXPERIMENT if experiment is None else experiment, **more)


def _problems(experiment: dict[str, Any], **more: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _config(experiment, **more)
    return [str(p) for p in caught.value.problems]


# -- assignment -----------------------------------------------------------------------------


def test_unit_point_is_sha256_of_name_and_unit_in_0_1():
    digest = hashlib.sha256(b"cheap-answer\x00thread-7").digest()
    assert unit_point("cheap-answer", "thread-7") == int.from_bytes(digest[:8], "big") / 2**64
    points = [unit_point("e", f"t{i}") for i in range(1000)]
    assert all(0.0 <= p < 1.0 for p in points)


def test_assignment_is_deterministic_and_follows_the_cumulative_split():
    experiment = Experiment.from_config(_config().experiment)
    assert [a.name for a in experiment.arms] == ["control", "cheap", "strong"]
    assert experiment.control.name == "control"
    for i in range(200):
        unit = f"thread-{i}"
        first, again = experiment.assign(unit), Experiment.from_config(_config().experiment).assign(unit)
        assert first == again and first.assigned
        point = unit_point("cheap-answer", unit)
        expected = "control" if point < 0.2 else "cheap" if point < 0.5 else "strong"
        assert first.arm == expected


def test_split_proportions_within_tolerance_over_10000_ids():
    experiment = Experiment.from_config(_config().experiment)
    counts = Counter(experiment.assign(f"user-{i}").arm for i in range(10_000))
    # 4 standard deviations of a binomial share at n = 10,000 is at most 0.02
    for arm, share in {"control": 0.2, "cheap": 0.3, "strong": 0.5}.items():
        assert abs(counts[arm] / 10_000 - share) < 0.02, counts


def test_another_experiment_name_reshuffles_the_units():
    one = Experiment.from_config(_config().experiment)
    other = Experiment.from_config(_config({**EXPERIMENT, "name": "another"}).experiment)
    same = sum(one.assign(f"t{i}").arm == other.assign(f"t{i}").arm for i in range(2000))
    assert same < 0.5 * 2000  # independent draws agree 0.2²+0.3²+0.5² = 38% of the time


def test_equal_split_when_none_is_given():
    experiment = Experiment.from_config(_config({"name": "e", "steps": ["answer"],
                                                 "arms": {"a": None, "b": "fast"}}).experiment)
    assert [a.weight for a in experiment.arms] == [0.5, 0.5]


_CHILD = """
import json, sys
from steproute.config import RouterConfig
from steproute.experiments import Experiment
cfg = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}},
                   default="fast", steps={"answer": "fast"},
                   experiment={"name": "x", "steps": ["answer"], "arms": {"a": None, "b": "strong", "c": "fast"},
                               "split": {"a": 0.34, "b": 0.33, "c": 0.33}})
experiment = Experiment.from_config(cfg.experiment)
print(json.dumps([experiment.assign(f"thread-{i}").arm for i in range(200)] + [hash("thread-0")]))
"""


def test_assignment_is_stable_across_processes_with_different_hash_seeds():
    runs = []
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, check=True,
                             cwd=ROOT, timeout=120)
        runs.append(json.loads(out.stdout))
    arms = [r[:-1] for r in runs]
    assert len({r[-1] for r in runs}) == 3  # Python's own hash() did change with the seed ...
    assert arms[0] == arms[1] == arms[2]  # ... the arms did not
    assert set(arms[0]) == {"a", "b", "c"}


# -- configuration errors name the path ------------------------------------------------------


def test_split_not_summing_to_one_names_the_split():
    problems = _problems({**EXPERIMENT, "split": {"control": 0.2, "cheap": 0.3, "strong": 0.4}})
    assert problems == ["experiment.split: the weights sum to 0.9; they must sum to 1"]


def test_split_naming_an_unknown_arm_and_missing_one():
    problems = _problems({**EXPERIMENT, "split": {"control": 0.5, "chaep": 0.5}})
    assert "experiment.split.chaep: unknown arm 'chaep' (arms: control, cheap, strong) — did you mean 'cheap'?" \
        in problems
    assert "experiment.split: arm 'cheap' has no weight (give every arm one)" in problems
    assert "experiment.split: arm 'strong' has no weight (give every arm one)" in problems


def test_negative_weight_names_its_arm():
    problems = _problems({**EXPERIMENT, "split": {"control": -0.5, "cheap": 1.0, "strong": 0.5}})
    assert problems[0].startswith("experiment.split.control: ")


def test_unknown_step_names_its_place_with_a_suggestion():
    problems = _problems({**EXPERIMENT, "steps": ["answer", "answr"]})
    assert problems == ["experiment.steps[1]: unknown step 'answr': not a steps: entry nor 'default' "
                        "(entries: answer, plan) — did you mean 'answer'?"]


def test_arm_naming_an_unknown_tier_names_the_arm():
    problems = _problems({**EXPERIMENT, "arms": {"control": None, "cheap": "fsat", "strong": "advanced"}})
    assert problems[0].startswith("experiment.arms.cheap.tier: unknown tier 'fsat'")
    assert "did you mean 'fast'?" in problems[0]


def test_arm_with_a_bad_policy_key_names_the_arm_without_the_union_tag():
    problems = _problems({**EXPERIMENT, "arms": {"control": None, "cheap": {"policy": "rules", "rulez": []},
                                                 "strong": "advanced"}})
    assert any(p.startswith("experiment.arms.cheap.rulez: unknown key") for p in problems), problems
    assert any(p.startswith("experiment.arms.cheap.rules: required key is missing") for p in problems), problems


def test_one_arm_is_not_an_experiment():
    problems = _problems({"name": "e", "steps": ["answer"], "arms": {"only": None}})
    assert problems == ["experiment.arms: an experiment needs at least two arms (the first is the control)"]


def test_unknown_experiment_key_and_unit():
    problems = _problems({**EXPERIMENT, "unit": "user", "splitt": {}})
    assert any(p.startswith("experiment.unit: ") for p in problems), problems
    assert any(p.startswith("experiment.splitt: unknown key") for p in problems), problems


# -- deciding ---------------------------------------------------------------------------------


def _router(tmp_path: Path | None = None, experiment: dict[str, Any] | None = None, **kwargs: Any) -> StepRouter:
    return StepRouter(_config(experiment), decision_log=tmp_path / "d.jsonl" if tmp_path else None, **kwargs)


def test_the_arm_decides_each_threads_calls_and_the_reason_says_so():
    router = _router()
    experiment = Experiment.from_config(router.config.experiment)
    want = {"control": "standard", "cheap": "fast", "strong": "advanced"}
    seen = Counter()
    for i in range(60):
        thread = f"t{i}"
        arm = experiment.assign(thread).arm
        decision = router.decide(StepRequest("answer", MSG, thread=thread))
        assert (decision.tier, decision.arm, decision.experiment.name) == (want[arm], arm, "cheap-answer")
        assert decision.reason.startswith(f"experiment 'cheap-answer', arm {arm!r}: fixed tier ")
        seen[arm] += 1
    assert set(seen) == set(want)
    other = router.decide(StepRequest("plan", MSG, thread="t1"))  # a step the experiment does not cover
    assert (other.tier, other.experiment, other.arm) == ("advanced", None, None)
    assert "experiment" not in other.reason


def test_a_call_with_no_thread_goes_to_the_control_said_once(caplog):
    router = _router()
    with caplog.at_level(logging.WARNING, logger="steproute"):
        decisions = [router.route(StepRequest("answer", MSG))[0] for _ in range(3)]
    for d in decisions:
        assert (d.tier, d.arm, d.experiment.assigned) == ("standard", "control", False)
        assert d.reason.startswith("experiment 'cheap-answer': no thread id, so the control arm 'control': ")
    said = [r.getMessage() for r in caplog.records if "cheap-answer" in r.getMessage()]
    assert said == ["experiment 'cheap-answer': calls with no thread id go to the control arm 'control' and are "
                    "left out of the arms' comparison (logged once)"]


def test_tenant_unit_assigns_by_tenant_and_a_call_with_no_tenant_goes_to_control():
    router = _router(experiment={**EXPERIMENT, "unit": "tenant"})
    experiment = Experiment.from_config(router.config.experiment)
    want = {"control": "standard", "cheap": "fast", "strong": "advanced"}
    for i in range(30):
        tenant = f"acme-{i}"
        arms = {router.decide(StepRequest("answer", MSG, thread=f"{tenant}-{j}", tenant=tenant)).arm for j in range(4)}
        assert arms == {experiment.assign(tenant).arm}  # every thread of a tenant: the tenant's arm
        assert router.decide(StepRequest("answer", MSG, tenant=tenant)).tier == want[arms.pop()]
    alone = router.decide(StepRequest("answer", MSG, thread="t"))
    assert alone.arm == "control" and "no tenant id" in alone.reason


def test_control_arm_null_keeps_the_steps_whole_configuration_and_other_arms_replace_it():
    rules = {"policy": "rules", "rules": [{"name": "long", "when": {"min_input_tokens": 50}, "tier": "advanced"}],
             "fallback": "fast", "max_tier": "standard"}
    router = _router(experiment={"name": "rules-v2", "steps": ["answer"], "arms": {"control": None, "rules": rules},
                                 "split": {"control": 0.0, "rules": 1.0}})
    long_text = [{"role": "user", "content": "word " * 400}]
    d = router.decide(StepRequest("answer", long_text, thread="t1"))
    assert (d.tier, d.arm, d.policy) == ("standard", "rules", "rules")  # the arm's max_tier bound holds
    assert d.reason == ("experiment 'rules-v2', arm 'rules': rule 'long' matched (input_tokens>=50); "
                        "lowered to max_tier 'standard'")
    short = router.decide(StepRequest("answer", MSG, thread="t1"))
    assert (short.tier, short.reason) == ("fast", "experiment 'rules-v2', arm 'rules': no rule matched; fallback tier")
    control = _router(experiment={"name": "rules-v2", "steps": ["answer"], "arms": {"control": None, "rules": rules},
                                  "split": {"control": 1.0, "rules": 0.0}})
    kept = control.decide(StepRequest("answer", long_text, thread="t1"))
    assert (kept.tier, kept.arm, kept.policy) == ("standard", "control", "fixed")  # the step's own entry


def test_a_pinned_call_keeps_its_arm_on_the_reason():
    router = _router()
    first, _ = router.route(StepRequest("answer", MSG, thread="t3"))
    again, _ = router.route(StepRequest("answer", MSG, thread="t3"))
    assert again.pinned and again.arm == first.arm
    assert again.reason.startswith(f"experiment 'cheap-answer', arm {first.arm!r}: pinned to tier ")


def test_arm_on_the_route_span_and_in_the_log_entry(tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = _router(tmp_path, tracer_provider=provider)
    results = [router.complete(StepRequest("answer", MSG, thread=f"t{i}")) for i in range(6)]
    results.append(router.complete(StepRequest("answer", MSG)))
    results.append(router.complete(StepRequest("plan", MSG, thread="t0")))
    router.decision_log.close()
    routes = {s.attributes["steproute.decision.id"]: s for s in exporter.get_finished_spans()
              if s.name.startswith("route ")}
    entries = {d["id"]: d for d in read_log(tmp_path / "d.jsonl").decisions}
    for r in results[:7]:
        d = r.decision
        span, entry = routes[d.id].attributes, entries[d.id]
        assert (span["steproute.experiment"], span["steproute.experiment.arm"]) == ("cheap-answer", d.arm)
        assert span["steproute.experiment.assigned"] is d.experiment.assigned
        assert (entry["experiment"], entry["arm"], entry["control_arm"], entry["assigned"], entry["unit"]) == (
            "cheap-answer", d.arm, "control", d.experiment.assigned, "thread")
        assert r.completion.content == f"answer from {d.tier}"
    plan = results[-1].decision
    assert "steproute.experiment" not in routes[plan.id].attributes
    assert "experiment" not in entries[plan.id] and "arm" not in entries[plan.id]


def test_experiment_on_the_default_entry_covers_unconfigured_steps():
    router = _router(experiment={"name": "d", "steps": ["default"], "arms": {"a": None, "b": "advanced"},
                                 "split": {"a": 0.0, "b": 1.0}})
    assert router.decide(StepRequest("rewrite", MSG, thread="t")).tier == "advanced"
    assert router.decide(StepRequest("answer", MSG, thread="t")).arm is None


# -- the report by arm ------------------------------------------------------------------------


def _decision(i: int, arm: str, tier: str, cost: float, **more: Any) -> dict[str, Any]:
    return {"type": "decision", "id": f"d{i}", "step": "answer", "tier": tier, "cost_usd": cost, "ts": 1000.0 + i,
            "thread": f"t{i}", "experiment": "e", "arm": arm, "control_arm": "control", "assigned": True, "unit": "thread",
            **more}


def test_report_by_arm_figures_with_intervals_and_difference_to_control():
    from steproute.report import arm_report, arm_report_json, format_arm_report

    decisions, feedback = [], {}
    for i in range(200):
        control = i % 2 == 0
        d = _decision(i, "control" if control else "cheap", "standard" if control else "fast",
                      0.002 if control else 0.0005, escalated_from="fast" if (not control and i % 10 == 1) else None)
        decisions.append(d)
        feedback[d["id"]] = {"quality": 1.0 if control or i % 4 == 1 else 0.0}
    decisions.append({**_decision(999, "control", "standard", 0.002), "thread": None, "assigned": False})
    decisions.append({"type": "decision", "id": "x", "step": "plan", "tier": "fast", "cost_usd": 0.1, "ts": 1})
    report = arm_report(LogContents(decisions=decisions, feedback=feedback))
    data = arm_report_json(report)
    (exp,) = data["experiments"]
    assert (exp["experiment"], exp["control"], exp["unassigned"]) == ("e", "control", 1)
    rows = {(r["arm"], r["step"]): r for r in exp["rows"]}
    control, cheap = rows[("control", "answer")], rows[("cheap", "answer")]
    assert (control["calls"], cheap["calls"]) == (100, 100)
    assert control["cost_per_call_usd"] == pytest.approx(0.002) and cheap["cost_per_call_usd"] == pytest.approx(0.0005)
    assert cheap["tiers"] == {"fast": 1.0} and cheap["escalation_rate"] == pytest.approx(0.2)
    assert control["quality"] == 1.0 and cheap["quality"] == pytest.approx(0.5)
    low, high = cheap["quality_ci"]
    assert low < 0.5 < high and high - low < 0.3
    assert cheap["vs_control"]["quality"] == pytest.approx(-0.5)
    q_low, q_high = cheap["vs_control"]["quality_ci"]
    assert q_low < -0.5 < q_high < 0  # the drop is significant
    assert cheap["vs_control"]["cost_per_call_usd"] == pytest.approx(-0.0015)
    assert control["vs_control"] is None
    text = format_arm_report(report)
    assert "experiment 'e' (unit: thread; control: 'control'; 1 call without a unit id left out)" in text
    lines = [line for line in text.splitlines() if line.startswith(("control", "cheap"))]
    assert [line.split()[:3] for line in lines] == [["control", "answer", "100"], ["cheap", "answer", "100"]]


def test_report_by_arm_on_a_log_with_no_experiment():
    from steproute.report import arm_report, format_arm_report

    report = arm_report(LogContents(decisions=[{"id": "a", "step": "plan", "tier": "fast", "cost_usd": 0.1}]))
    assert report.experiments == ()
    assert format_arm_report(report) == "no decision in the log carries an experiment arm"


def test_async_calls_and_batches_follow_the_same_arm():
    import asyncio

    router = _router()
    experiment = Experiment.from_config(router.config.experiment)
    want = {"control": "standard", "cheap": "fast", "strong": "advanced"}
    requests = [StepRequest("answer", MSG, thread=f"a{i}") for i in range(12)]
    done = asyncio.run(router.acomplete(requests[0]))
    assert (done.decision.arm, done.decision.tier) == (experiment.assign("a0").arm, want[experiment.assign("a0").arm])
    for request, result in zip(requests, router.complete_batch(requests), strict=True):
        arm = experiment.assign(request.thread).arm
        assert (result.decision.arm, result.decision.tier, result.completion.content) == (
            arm, want[arm], f"answer from {want[arm]}")


def test_a_tier_hint_still_wins_inside_an_arm_and_the_reason_says_both():
    from steproute import Hint

    router = _router()
    d = router.decide(StepRequest("answer", MSG, thread="t5", hint=Hint(tier="fast")))
    assert (d.tier, d.policy) == ("fast", "hint")
    assert d.reason == f"experiment 'cheap-answer', arm {d.arm!r}: tier hint 'fast'"


def test_unit_ids_are_never_echoed_in_reasons_warnings_or_the_report(tmp_path, caplog):
    from steproute.report import arm_report, arm_report_json, format_arm_report

    secret_thread, secret_tenant = "sk-live-7f3c9a1b2d4e6f80", "tenant-key-9a8b7c6d5e4f"
    router = _router(tmp_path, experiment={**EXPERIMENT, "unit": "tenant"})
    with caplog.at_level(logging.DEBUG, logger="steproute"):
        with_tenant = router.complete(StepRequest("answer", MSG, thread=secret_thread, tenant=secret_tenant))
        without = router.complete(StepRequest("answer", MSG, thread=secret_thread))
    router.decision_log.close()
    report = arm_report(read_log(tmp_path / "d.jsonl"))
    said = [with_tenant.decision.reason, without.decision.reason, format_arm_report(report),
            json.dumps(arm_report_json(report)), *(r.getMessage() for r in caplog.records)]
    for text in said:
        assert secret_thread not in text and secret_tenant not in text
