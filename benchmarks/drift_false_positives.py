"""False alarms of ``steproute drift``: how often a steady log is flagged, over many seeded runs.

Each run is a synthetic decision log of three steps (2,000 calls each, interleaved in time) whose
calls are drawn from one fixed distribution throughout: 90 % fast / 10 % strong, 5 % escalated,
2 % fell back, log-normal costs (strong 10× fast), 30 % rated with quality Bernoulli(0.8).
:func:`steproute.drift.detect_drift` compares each step's last 500 calls with the 1,500 before
(15 tests per run, Holm's correction). Reported: the share of runs flagged (any step drifted,
the effect-size gates on) and the share with any Holm-adjusted p-value at most alpha (the tests
alone), with Clopper-Pearson 95 % intervals; then the same for :class:`~steproute.drift.DriftWatch`
over long steady streams (false episodes per 10,000 calls).

    python benchmarks/drift_false_positives.py [--runs 500] [--alpha 0.01] [--watch-calls 20000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steproute.decision_log import LogContents
from steproute.drift import DriftThresholds, DriftWatch, detect_drift

STEPS = ("rewrite", "extract", "answer")
PRICE = {"fast": 0.0001, "strong": 0.001}


def calls(rng: random.Random, n: int, *, step: str = "extract", start: int = 0, strong: float = 0.10,
          escalate: float = 0.05, fallback: float = 0.02, cost: float = 1.0, rated: float = 0.3,
          quality: float = 0.8) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """``n`` decision-log entries of one step drawn from one distribution, and their feedback by id."""
    decisions: list[dict[str, Any]] = []
    feedback: dict[str, dict[str, Any]] = {}
    for i in range(start, start + n):
        tier = "strong" if rng.random() < strong else "fast"
        escalated = rng.random() < escalate
        fell_back = rng.random() < fallback
        price = PRICE[tier] * rng.lognormvariate(0, 0.3) * cost
        ident = f"{step}-{i}"
        decisions.append({"type": "decision", "id": ident, "ts": 1_700_000_000 + i + rng.random(), "step": step,
                          "tier": tier, "escalated_from": "fast" if escalated else None,
                          "fallback_from": "fast" if fell_back else None, "cost_usd": price})
        if rng.random() < rated:
            feedback[ident] = {"type": "feedback", "id": ident, "quality": float(rng.random() < quality)}
    return decisions, feedback


def steady_log(seed: int, per_step: int = 2000) -> LogContents:
    """One steady run: every step's calls from one distribution, interleaved in time."""
    rng = random.Random(seed)
    contents = LogContents()
    for step in STEPS:
        decisions, feedback = calls(rng, per_step, step=step)
        contents.decisions.extend(decisions)
        contents.feedback.update(feedback)
    return contents


def false_positives(runs: int, alpha: float, *, recent: int = 500, progress: bool = False) -> dict[str, Any]:
    """Runs flagged (gates on) and runs with any adjusted p ≤ alpha (tests alone), over ``runs`` seeds."""
    thresholds = DriftThresholds(alpha=alpha)
    flagged = significant = tests = 0
    started = time.perf_counter()
    for seed in range(runs):
        report = detect_drift(steady_log(seed), recent=recent, thresholds=thresholds)
        flagged += bool(report.drifted)
        significant += any(f.p_adjusted is not None and f.p_adjusted <= alpha for s in report.steps for f in s.figures)
        tests += report.tests
        if progress and (seed + 1) % max(1, runs // 20) == 0:
            print(f"  {seed + 1}/{runs} runs, {flagged} flagged, {significant} with a significant test "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return {"runs": runs, "alpha": alpha, "flagged": flagged, "significant": significant,
            "tests_per_run": tests / runs if runs else 0.0}


def watch_false_episodes(calls_per_stream: int, streams: int, *, progress: bool = False) -> dict[str, Any]:
    """False drift episodes of a :class:`DriftWatch` (defaults: window 500, every 100, alpha 0.001)
    over steady streams of one step."""
    episodes = checks = 0
    for seed in range(streams):
        fired: list[str] = []
        watch = DriftWatch(lambda step, result, fired=fired: fired.append(step), background=False)
        decisions, feedback = calls(random.Random(10_000 + seed), calls_per_stream)
        for d in decisions:
            watch.write(d)
            if d["id"] in feedback:
                watch.write(feedback[d["id"]])
        episodes += len(fired)
        checks += max(0, (calls_per_stream - (watch.window + watch.thresholds.min_calls)) // watch.every + 1)
        if progress:
            print(f"  stream {seed + 1}/{streams}: {len(fired)} false episode(s)", file=sys.stderr, flush=True)
    return {"streams": streams, "calls": calls_per_stream * streams, "episodes": episodes, "checks": checks}


def write_cost(n: int = 50_000, every: int = 250) -> tuple[float, float]:
    """Microseconds per ``DriftWatch.write`` on the caller's thread with no check due (the O(1)
    append), and milliseconds per check (one step, window 500 against 500, on this thread)."""
    decisions, _ = calls(random.Random(1), n)
    watch = DriftWatch(window=500, every=10**9, background=False)
    started = time.perf_counter()
    for d in decisions:
        watch.write(d)
    per_write = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(50):
        watch.check("extract")
    return per_write, (time.perf_counter() - started) / 50 * 1e3


def _interval(k: int, n: int) -> str:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95)
    return f"{k}/{n} = {k / n:.2%} (95 % CI {ci.low:.2%}–{ci.high:.2%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--watch-calls", type=int, default=20_000, help="calls per DriftWatch stream")
    parser.add_argument("--watch-streams", type=int, default=10)
    args = parser.parse_args()
    print(f"steady runs: {args.runs} seeded logs of {len(STEPS)} steps × 2,000 calls, recent 500, alpha {args.alpha}",
          file=sys.stderr)
    result = false_positives(args.runs, args.alpha, progress=True)
    print(f"drift command, runs flagged (effect-size gates on): {_interval(result['flagged'], args.runs)}")
    print(f"drift command, runs with any Holm-adjusted p ≤ {args.alpha} (tests alone): "
          f"{_interval(result['significant'], args.runs)}")
    print(f"tests per run (Holm's family): {result['tests_per_run']:.1f}")
    print(f"DriftWatch: {args.watch_streams} steady streams of {args.watch_calls:,} calls", file=sys.stderr)
    watch = watch_false_episodes(args.watch_calls, args.watch_streams, progress=True)
    print(f"DriftWatch (window 500, every 250, alpha 0.001): {watch['episodes']} false episode(s) in "
          f"{watch['calls']:,} calls ({watch['checks']:,} checks): "
          f"{watch['episodes'] / watch['calls'] * 10_000:.2f} per 10,000 calls")
    per_write, per_check = write_cost()
    print(f"DriftWatch.write on the caller's thread: {per_write:.1f} µs per call (mean over 50,000); one check "
          f"(window 500 against 500): {per_check:.1f} ms on the background thread, every 250 calls of a step: "
          f"{per_check * 1e3 / 250:.0f} µs of CPU per call amortised")


if __name__ == "__main__":
    main()
