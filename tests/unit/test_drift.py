"""Drift detection on synthetic decision logs: a shift is flagged (tier mix, escalation rate, cost
per call, quality), a steady stream is not, and over 500 seeded steady runs the share flagged
stays below alpha. The statistics are scipy's; these tests check what steproute does with them."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
from scipy.stats import binomtest

from steproute._drift_stats import CallFacts, compare, holm, judge
from steproute.decision_log import LogContents
from steproute.drift import DriftThresholds, detect_drift, in_time_order
from steproute.drift import StepDrift as PublicStepDrift

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("drift_false_positives", ROOT / "benchmarks" / "drift_false_positives.py")
assert _spec is not None and _spec.loader is not None
fp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fp)


def shifted(seed: int, before: int = 1500, after: int = 500, **change: float) -> LogContents:
    """One step steady for ``before`` calls, then ``after`` calls with ``change`` applied; and a
    steady second step beside it."""
    rng = random.Random(seed)
    contents = LogContents()
    for decisions, feedback in (fp.calls(rng, before), fp.calls(rng, after, start=before, **change),
                                fp.calls(rng, before + after, step="answer")):
        contents.decisions.extend(decisions)
        contents.feedback.update(feedback)
    return contents


def figure(report, step: str, name: str):
    (result,) = [s for s in report.steps if s.step == step]
    (found,) = [f for f in result.figures if f.figure == name]
    return found


def moved(report, step: str) -> list[str]:
    (result,) = [s for s in report.steps if s.step == step]
    return [f.figure for f in result.moved]


def test_a_tier_mix_moving_from_90_10_to_50_50_is_flagged_with_before_and_after():
    report = detect_drift(shifted(1, strong=0.5), recent=500)
    assert report.drifted == ["extract"]
    mix = figure(report, "extract", "tier_mix")
    assert mix.moved and mix.test == "chi-square test of homogeneity"
    assert mix.before["strong"] == pytest.approx(0.10, abs=0.03) and mix.after["strong"] == pytest.approx(0.5, abs=0.05)
    assert mix.effect == pytest.approx(0.4, abs=0.05) and mix.p_adjusted < 1e-20
    assert moved(report, "extract") == ["tier_mix", "cost_per_call"]  # strong calls cost 10×


def test_an_escalation_rate_moving_from_5_to_25_percent_is_flagged():
    report = detect_drift(shifted(2, escalate=0.25), recent=500)
    assert report.drifted == ["extract"]
    rate = figure(report, "extract", "escalation_rate")
    assert rate.moved and rate.test == "two-proportion z-test" and rate.effect_name == "Cohen's h"
    assert rate.before == pytest.approx(0.05, abs=0.015) and rate.after == pytest.approx(0.25, abs=0.04)
    assert moved(report, "extract") == ["escalation_rate"]


def test_a_cost_per_call_doubling_is_flagged_and_nothing_else():
    report = detect_drift(shifted(3, cost=2.0), recent=500)
    assert report.drifted == ["extract"]
    cost = figure(report, "extract", "cost_per_call")
    assert cost.moved and cost.test == "Mann-Whitney U"
    assert cost.after / cost.before == pytest.approx(2.0, rel=0.15)
    assert moved(report, "extract") == ["cost_per_call"]


def test_a_fallback_rate_and_a_quality_drop_are_flagged():
    report = detect_drift(shifted(4, fallback=0.3, quality=0.4, rated=0.6), recent=500)
    assert moved(report, "extract") == ["fallback_rate", "quality"]
    quality = figure(report, "extract", "quality")
    assert quality.before == pytest.approx(0.8, abs=0.05) and quality.after == pytest.approx(0.4, abs=0.07)


def test_a_steady_stream_is_not_flagged():
    report = detect_drift(shifted(5), recent=500)
    assert report.drifted == [] and report.tests == 10
    assert all(s.enough and not s.drifted for s in report.steps)


def test_a_trivial_shift_in_a_huge_log_is_significant_but_not_flagged():
    # 5 % → 6 % escalations over 200,000 calls: the test finds it; the effect (Cohen's h 0.04) is too small
    report = detect_drift(shifted(6, before=150_000, after=50_000, escalate=0.06), recent=50_000)
    rate = figure(report, "extract", "escalation_rate")
    assert rate.p_adjusted < 1e-6 and not rate.large_enough and not rate.moved
    assert report.drifted == []


def test_false_alarms_over_500_seeded_steady_runs_stay_below_alpha():
    alpha = 0.01
    flagged = significant = 0
    for seed in range(500):
        report = detect_drift(fp.steady_log(seed, per_step=400), recent=200, thresholds=DriftThresholds(alpha=alpha))
        flagged += bool(report.drifted)
        significant += any(f.p_adjusted is not None and f.p_adjusted <= alpha for s in report.steps for f in s.figures)
    assert flagged / 500 < alpha
    # the tests alone (no effect-size gate) hold Holm's family-wise rate: no evidence it exceeds alpha
    assert binomtest(significant, 500, alpha, alternative="greater").pvalue > 0.05, significant


def test_a_step_with_too_few_calls_in_either_window_gets_no_verdict():
    rng = random.Random(7)
    decisions, _ = fp.calls(rng, 520)
    report = detect_drift(LogContents(decisions=decisions), recent=500)
    (step,) = report.steps
    assert (step.enough, step.drifted, step.calls_before, step.calls_recent, step.figures) == (False, False, 20, 500, ())
    assert report.tests == 0


def test_decisions_are_compared_in_order_of_their_timestamps():
    rng = random.Random(8)
    decisions, _ = fp.calls(rng, 400)
    late, _ = fp.calls(rng, 200, start=400, strong=0.9)
    log = LogContents(decisions=late + decisions)  # the file holds the late calls first
    assert detect_drift(log, recent=200).drifted == ["extract"]
    assert [d["id"] for d in in_time_order(log.decisions)][:2] == ["extract-0", "extract-1"]


def test_holm_adjusts_as_the_step_down_method_and_judge_needs_both_significance_and_effect():
    assert holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    assert holm([]) == []
    calm = [CallFacts("fast", False, False, 0.001)] * 50
    moved = [CallFacts("strong" if i % 2 else "fast", False, False, 0.001) for i in range(50)]
    (step,) = judge([compare("s", calm, moved)], 0.01)
    assert isinstance(step, PublicStepDrift) and step.drifted and step.moved[0].figure == "tier_mix"
    assert compare("s", calm, calm).figures[0].note == "not tested: the same in both windows"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="recent must be an integer of at least 1"):
        detect_drift(LogContents(), recent=0)
    with pytest.raises(ValueError, match="alpha"):
        DriftThresholds(alpha=1.5)
