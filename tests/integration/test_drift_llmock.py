"""Drift over the real path: a router calling llmock over HTTP through LiteLLM, its decision log
wrapped in a DriftWatch; steady first, then one step is forced onto another tier (its hint
changes). ``steproute drift LOG --recent N --json`` flags that step and no other, exit status 3,
and the watch's callback fires once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steproute import RouterConfig, StepRouter, step
from steproute.drift import DriftWatch, StepDrift

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini", "advanced": "openai/gpt-4o"}


def test_a_step_forced_onto_another_tier_is_flagged_by_the_command_and_the_watch(llmock, tmp_path):
    fired: list[tuple[str, StepDrift]] = []
    log = tmp_path / "decisions.jsonl"
    watch = DriftWatch(lambda s, result: fired.append((s, result)), log=log, window=60, every=20)
    router = StepRouter(RouterConfig(
        tiers={name: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "sk-llmock"}]}
               for name, m in MODELS.items()},
        default="fast", steps={"answer": "advanced"}), decision_log=watch)
    llm = router.chat_model()

    def run(n: int, extract_tier: str | None) -> None:
        for i in range(n):
            for name, hint in (("rewrite", {}), ("extract", {"tier": extract_tier} if extract_tier else {}),
                               ("answer", {})):
                llm.invoke(f"{name} request {i}: what is the weather in Paris?",
                           config={"metadata": step(name, **hint)})

    run(90, None)               # steady: extract on the default (fast) tier
    assert watch.flush() and fired == []
    run(60, "standard")         # extract's hint now names the standard tier
    assert watch.flush()
    watch.close()

    assert [s for s, _ in fired] == ["extract"]
    assert "tier_mix" in [f.figure for f in fired[0][1].moved]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-m", "steproute", "drift", str(log), "--recent", "60", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr
    out = json.loads(done.stdout)
    verdicts = {s["step"]: s["drifted"] for s in out["steps"]}
    assert verdicts == {"rewrite": False, "extract": True, "answer": False}
    extract = next(s for s in out["steps"] if s["step"] == "extract")
    assert extract["figures"]["tier_mix"]["before"] == {"fast": 1.0, "standard": 0.0}
    assert extract["figures"]["tier_mix"]["after"] == {"fast": 0.0, "standard": 1.0}
    assert extract["figures"]["tier_mix"]["moved"] and (extract["calls_before"], extract["calls_recent"]) == (90, 60)
    assert len(llmock.requests) == 450  # every call went over HTTP
