"""benchmarks/agent.py end to end on the three real local models (llama.cpp on 127.0.0.1): two GSM8K
tasks through every configuration, one JSON object out, and a per-step data set that
`steproute train` learns from. (The first run on a machine fetches the 1.5B model's weights.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from steproute.evaluation import read_rows

ROOT = Path(__file__).resolve().parents[2]
STEPS = {"rewrite", "extract", "plan", "calculate", "answer"}


def test_the_agent_benchmark_measures_every_configuration_on_real_models(tmp_path: Path):
    data = tmp_path / "steps.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "benchmarks" / "agent.py"), "--workload", "gsm8k", "--tasks", "2",
               "--folds", "2", "--threads", "1", "--json", "--data", str(data), "--cache", "answers.jsonl"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    check_run(summary, data)
    assert summary["answers_from_earlier_runs"] == 0
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == summary["model_calls"] - summary["cache_hits"]
    # the same run again computes nothing: every answer is the first run's, and so is every figure
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout)
    assert second["model_calls"] == second["cache_hits"] == second["answers_from_earlier_runs"] == summary["model_calls"]
    def figures(run: dict) -> list:  # what a configuration measured (its calls are all cached the second time)
        return [(c["name"], c["success"], c["success_ci95"], c["cost_usd"], c["latency_s"],
                 [t["success"] for t in c["tasks_detail"]]) for c in run["configs"]]

    assert figures(second) == figures(summary)
    # the per-step data set is what `steproute train` learns from
    artefact = tmp_path / "steps.steproute"
    trained = subprocess.run([sys.executable, "-m", "steproute", "train", "--data", str(data), "--out", str(artefact),
                              "--folds", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0 and artefact.exists(), trained.stderr[-2000:]


def check_run(summary: dict, data: Path) -> None:
    """What a two-task run must show."""
    configs = {c["name"]: c for c in summary["configs"]}
    assert set(configs) == {"always-tiny", "always-small", "always-medium", "per-request-classifier",
                            "per-request-litellm-complexity", "per-step-static", "per-step-measured", "per-step-learned",
                            "per-step-cascade"}
    for c in configs.values():
        assert c["tasks"] == 2 and 0.0 <= c["success_ci95"][0] <= c["success"] <= c["success_ci95"][1] <= 1.0
        assert c["cost_usd"] > 0 and c["latency_s"] > 0, c["name"]
    # prices follow parameter count: the same pipeline costs more on the larger model
    assert configs["always-tiny"]["cost_usd"] < configs["always-small"]["cost_usd"] < configs["always-medium"]["cost_usd"]
    # every step routed, on the tier each fixed configuration names
    for tier in ("tiny", "small", "medium"):
        steps = configs[f"always-{tier}"]["steps"]
        assert set(steps) == STEPS and all(s["tiers"] == {tier: 2} for s in steps.values())
    # per-request routing runs one fixed tier per task: the same calls as that tier's run, all from the cache
    request = configs["per-request-classifier"]
    assert request["cached_calls"] == request["calls"] == 10
    assert all(len(set(t["tiers"])) == 1 for t in request["tasks_detail"])
    assert configs["per-step-static"]["steps"]["plan"]["tiers"] == {"medium": 2}
    assert set(configs["per-step-measured"]["steps"]) == STEPS
    cascade = configs["per-step-cascade"]["steps"]
    assert set(cascade) == STEPS and sum(s["escalated"] for s in cascade.values()) >= 1  # SmolLM2 is not sure of it all
    assert summary["cache_hits"] > 0 and summary["price_per_million_tokens"] == {"tiny": 0.135, "small": 0.5, "medium": 1.5}

    rows, problems = read_rows(data)
    assert not problems and len(rows) == 10 and {r.step for r in rows} == STEPS
    assert all(set(r.outcomes) == {"tiny", "small", "medium"} and r.kind for r in rows)
    # the medium tier's answers to its own run's inputs are that run's answers (from the cache)
    medium_answers = [r for r in rows if r.step == "answer"]
    by_task = {t["id"]: t["success"] for t in configs["always-medium"]["tasks_detail"]}
    assert all(r.outcomes["medium"].quality == float(by_task[r.meta["task"]]) for r in medium_answers)
