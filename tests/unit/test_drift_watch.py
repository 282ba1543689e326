"""DriftWatch, in process: a bounded window per step, the drift test every K calls off the call
path, ``on_drift`` once per episode, and a callback that raises never reaching the user's call."""

from __future__ import annotations

import importlib.util
import logging
import random
from pathlib import Path

import pytest

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.decision_log import read_log
from steproute.drift import DriftWatch, StepDrift
from steproute.testing import FunctionTransport, TierCall

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("drift_fp_watch", ROOT / "benchmarks" / "drift_false_positives.py")
assert _spec is not None and _spec.loader is not None
fp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fp)

TIERS = {"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}}


def feed(watch: DriftWatch, rng: random.Random, n: int, start: int, **change: float) -> None:
    decisions, feedback = fp.calls(rng, n, start=start, **change)
    for d in decisions:
        watch.write(d)
        if d["id"] in feedback:
            watch.write(feedback[d["id"]])


def test_on_drift_fires_once_per_episode_from_the_background_thread():
    fired: list[tuple[str, StepDrift]] = []
    watch = DriftWatch(lambda step, result: fired.append((step, result)), window=200, every=50)
    rng = random.Random(1)
    feed(watch, rng, 1000, 0)
    feed(watch, rng, 300, 1000, strong=0.5)   # the shift: the episode starts
    assert watch.flush()
    assert [step for step, _ in fired] == ["extract"] and watch.drifting == {"extract"}
    assert "tier_mix" in [f.figure for f in fired[0][1].moved]
    feed(watch, rng, 600, 1300, strong=0.5)   # the new mix fills both windows: steady again, no second call
    assert watch.flush()
    assert len(fired) == 1 and watch.drifting == frozenset()
    feed(watch, rng, 300, 1900, escalate=0.4)  # another shift: a second episode
    assert watch.flush()
    assert len(fired) == 2 and "escalation_rate" in [f.figure for f in fired[1][1].moved]
    watch.close()


def test_a_steady_stream_never_fires():
    fired: list[str] = []
    watch = DriftWatch(lambda step, result: fired.append(step), window=200, every=50, background=False)
    feed(watch, random.Random(2), 6000, 0)
    assert fired == [] and watch.last["extract"].enough and not watch.last["extract"].drifted


def test_a_callback_that_raises_never_reaches_the_call_and_is_logged_once(tmp_path, caplog):
    secret = "sk-live-7f3c9a1b2d4e6f80aa"
    down = {"fast": False}

    def answer(call: TierCall) -> str:
        if call.tier == "fast" and down["fast"]:
            raise TimeoutError("the fast tier is down")
        return "42"

    def on_drift(step: str, result: StepDrift) -> None:
        raise RuntimeError(f"pager down, key {secret}")

    watch = DriftWatch(on_drift, log=tmp_path / "decisions.jsonl", window=60, every=20, background=False)
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=FunctionTransport(answer),
                        decision_log=watch)
    ask = StepRequest("calc", [{"role": "user", "content": "6 * 7?"}])
    with caplog.at_level(logging.WARNING, logger="steproute"):
        results = [router.complete(ask) for _ in range(80)]
        down["fast"] = True
        results += [router.complete(ask) for _ in range(60)]   # every call falls back: the episode starts
        assert watch.drifting == {"calc"}
        results += [router.complete(ask) for _ in range(140)]  # falling back is the new normal: it ends
        assert watch.drifting == frozenset()
        down["fast"] = False
        results += [router.complete(ask) for _ in range(60)]   # the fast tier is back: a second episode
    assert all(r.completion.content == "42" for r in results)
    assert watch.callback_errors == 2
    raised = [r.getMessage() for r in caplog.records if "on_drift raised" in r.getMessage()]
    assert raised == ["drift watch: on_drift raised RuntimeError for step 'calc'; the router goes on (further errors "
                      "of the callback are counted in .callback_errors, not logged)"]
    drifted = [r.getMessage() for r in caplog.records if "drifted" in r.getMessage()]
    assert len(drifted) == 2 and "fallback rate 0.0% → " in drifted[0] and "fallback rate 100.0% → " in drifted[1]
    assert secret not in caplog.text
    watch.close()
    assert len(read_log(tmp_path / "decisions.jsonl").decisions) == 340  # the wrapped log got every entry


def test_windows_are_bounded_and_steps_past_max_steps_are_not_watched(caplog):
    watch = DriftWatch(window=100, reference=50, every=1000, max_steps=3, background=False)
    rng = random.Random(3)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for step in ("a", "b", "c", "d", "e"):
            decisions, _ = fp.calls(rng, 2000, step=step)
            for d in decisions:
                watch.write(d)
    assert watch.held == 3 * 150
    warned = [r.getMessage() for r in caplog.records if "steps" in r.getMessage()]
    assert warned == ["drift watch: more than 3 steps; step 'd' and later new steps are not watched"]


def test_feedback_written_through_the_router_reaches_the_window():
    watch = DriftWatch(window=40, every=10_000, background=False)
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=FunctionTransport(lambda call: "ok"),
                        decision_log=watch)
    ask = StepRequest("calc", [{"role": "user", "content": "hi"}])
    for i in range(80):
        result = router.complete(ask)
        router.feedback(result.decision.id, 1.0 if i < 40 else 0.0)
    check = watch.check("calc")
    assert check is not None and check.drifted and [f.figure for f in check.moved] == ["quality"]
    assert watch.check("no such step") is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="window must be an integer of at least 1"):
        DriftWatch(window=0)
    with pytest.raises(ValueError, match="every must be an integer of at least 1"):
        DriftWatch(every=True)
