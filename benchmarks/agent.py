"""Per-step routing against per-request routing, on real agent workloads and real local models.

Three tiers under llama.cpp on 127.0.0.1 (``tiny`` SmolLM2-135M, ``small`` Qwen2.5-Coder-0.5B,
``medium`` Qwen2.5-Coder-1.5B), priced per token in proportion to their parameter count ($1 per
million tokens per billion parameters). In one run, on the same tasks: each tier alone;
per-request routing (steproute's classifier over the whole request, LiteLLM's complexity
router); per-step static tiers; per-step learned routing (trained on per-step outcomes,
cross-fitted); per-step cascade. Model answers are cached between configurations whose calls are
identical (temperature 0), keeping the latency measured when each was computed.

    python benchmarks/agent.py --workload gsm8k --tasks 10 --json   # one JSON object on stdout
    python benchmarks/agent.py --workload gsm8k --tasks 30 --write-docs  # + docs/agent-benchmark.md and the data set
    make bench-agent                                                  # the full run

Workloads: ``gsm8k`` (rewrite → extract → plan → calculate with a tool → answer, a LangGraph
graph) and ``bfcl`` (Berkeley Function Calling Leaderboard tasks through LangChain's
``create_agent`` tool loop, from ``benchmarks/_agent_bfcl.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agent_cache import CachingProxy
from _agent_configs import (
    CLASSIFIER_THRESHOLD,
    MODELS,
    PRICE_PER_TOKEN,
    STRONGEST,
    TIERS,
    Configuration,
    cascade_steps,
    configurations,
    litellm_complexity_available,
    router_config,
    tier_of_complexity,
)
from _agent_learned import call_rows, fold_of, outside_fold, request_rows, step_row, step_tiers, train_fold_artefacts
from _agent_results import ConfigResult, TaskRun, summary_json
from _agent_run import Runner
from _agent_workloads import Workload, WorkloadError, load_workload

ROOT = Path(__file__).resolve().parents[1]
FOLDS = 5


def _say(message: str) -> None:
    print(f"[agent {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def per_step_rows(runner: Runner, workload: Workload, references: dict[str, Any], fixed: dict[str, dict[str, Any]]) -> list:
    """The per-step data set (see :mod:`_agent_learned`)."""
    from steproute.evaluation import Outcome

    rows = []
    if workload.step_inputs is None or workload.grade is None or workload.step_params is None:
        for tier in TIERS:
            for tid, (run, _, entries) in fixed[tier].items():
                rows += call_rows(workload.name, tid, tier, entries, run.success)
        return rows
    kinds = workload.kinds or {}
    for task in workload.tasks:
        tid = workload.task_id(task)
        state = references.get(tid)
        if not state:
            continue
        for step, messages in workload.step_inputs(state).items():
            outcomes = {}
            for tier in TIERS:
                try:
                    completion, cost = runner.ask(router_config(runner.urls, default=tier), step, kinds.get(step), messages,
                                                  workload.step_params(step))
                    outcomes[tier] = Outcome(workload.grade(step, task, completion), cost, str(completion.content or "")
                                             or json.dumps([c.arguments for c in completion.tool_calls]))
                except Exception as exc:  # a call that fails is a wrong answer, and says so
                    outcomes[tier] = Outcome(0.0, 0.0, f"error: {type(exc).__name__}: {str(exc)[:120]}")
            rows.append(step_row(workload.name, tid, step, kinds.get(step), messages, outcomes,
                                 {"reference": f"the {STRONGEST} tier's run", "check": (workload.checks or {}).get(step, "")}))
    return rows


def measure(workload: Workload, proxy: CachingProxy, *, folds: int = FOLDS, work_dir: Path,
            say: Callable[[str], None] = _say) -> tuple[list[ConfigResult], list, dict[str, Any]]:
    """Every configuration on every task of ``workload``; the results, the per-step rows, notes."""
    runner = Runner(proxy, workload, TIERS, say)
    complexity = litellm_complexity_available()
    configs = configurations(workload.static_steps, complexity=complexity)
    notes: dict[str, Any] = {"litellm_complexity_router": "available" if complexity else
                             "not in the installed litellm: left out"}
    results = {c.name: ConfigResult(c.name, c.description, c.family) for c in configs}
    ids = [workload.task_id(t) for t in workload.tasks]
    fixed: dict[str, dict[str, Any]] = {t: {} for t in TIERS}
    for tier in TIERS:
        started = time.time()
        runner.label = f"always-{tier}"
        for task in workload.tasks:
            run, record, entries = runner.run_task(task, router_config(runner.urls, default=tier))
            fixed[tier][run.task_id] = (run, record, entries)
            results[f"always-{tier}"].runs.append(run)
        say(f"always-{tier}: {results[f'always-{tier}'].successes}/{len(ids)} in {time.time() - started:.0f} s")
    references = {tid: fixed[STRONGEST][tid][1].state for tid in ids}
    started = time.time()
    rows = per_step_rows(runner, workload, references, fixed)
    say(f"per-step rows: {len(rows)} in {time.time() - started:.0f} s")
    fold = fold_of(ids, folds)
    step_names = list(workload.steps) or sorted({r.step for r in rows})
    for config in configs[len(TIERS):]:
        started = time.time()
        runner.label = config.name
        results[config.name].runs = _run_config(config, runner, workload, fixed, rows, fold, step_names, work_dir, say)
        say(f"{config.name}: {results[config.name].successes}/{len(ids)} in {time.time() - started:.0f} s")
    notes.update(cache_hits=proxy.hits, model_calls=len(proxy.events), folds=len(set(fold.values())))
    return list(results.values()), rows, notes


def _run_config(config: Configuration, runner: Runner, workload: Workload, fixed: dict[str, dict[str, Any]], rows: list,
                fold: dict[str, int], step_names: Sequence[str], work_dir: Path, say: Callable[[str], None]) -> list[TaskRun]:
    from steproute import StepRequest
    from steproute.policies.classifier import ClassifierPolicy

    urls = runner.urls
    runs: list[TaskRun] = []
    if config.kind == "per-request":
        artefacts = {}
        if config.router == "classifier":
            texts = {workload.task_id(t): workload.request_text(t) for t in workload.tasks}
            outcomes = {tier: {tid: (r[0].success, r[0].cost_usd) for tid, r in fixed[tier].items()} for tier in TIERS}
            artefacts = train_fold_artefacts(request_rows(workload.name, texts, outcomes), fold, TIERS, work_dir,
                                             "request", CLASSIFIER_THRESHOLD, say)
        for task in workload.tasks:
            tid, text = workload.task_id(task), workload.request_text(task)
            if config.router == "classifier":
                path, threshold = artefacts[fold[tid]]
                tier = STRONGEST if path is None else ClassifierPolicy.load(path, threshold=threshold).choose(
                    StepRequest("request", [{"role": "user", "content": text}])).tier
            else:
                tier, _ = tier_of_complexity(text)
            run, _, _ = runner.run_task(task, router_config(urls, default=tier))
            runs.append(run)
        return runs
    if config.kind == "measured":
        tables: dict[int, dict[str, str]] = {}
        for task in workload.tasks:
            k = fold[workload.task_id(task)]
            if k not in tables:
                train = outside_fold(rows, fold, k) or rows
                tables[k] = step_tiers(train, TIERS)
                say(f"  per-step-measured fold {k}: " + ", ".join(f"{s}→{t}" for s, t in sorted(tables[k].items())))
            tiers = tables[k]
            steps = {s: {"policy": "fixed", "tier": tiers.get(s, STRONGEST)} for s in step_names}
            runs.append(runner.run_task(task, router_config(urls, default=STRONGEST, steps=steps))[0])
        return runs
    if config.kind == "learned":
        artefacts = train_fold_artefacts(rows, fold, TIERS, work_dir, "steps", CLASSIFIER_THRESHOLD, say)
        for task in workload.tasks:
            path, threshold = artefacts[fold[workload.task_id(task)]]
            steps = {s: {"policy": "fixed", "tier": STRONGEST} if path is None else
                     {"policy": "classifier", "artefact": str(path), "threshold": threshold} for s in step_names}
            runs.append(runner.run_task(task, router_config(urls, default=STRONGEST, steps=steps))[0])
        return runs
    if config.kind == "static":
        cfg = router_config(urls, default=STRONGEST, steps={s: {"policy": "fixed", "tier": t} for s, t in config.steps.items()})
    else:
        cfg = router_config(urls, default=TIERS[0], steps=cascade_steps(step_names, workload.cascade_signals))
    return [runner.run_task(task, cfg)[0] for task in workload.tasks]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workload", choices=("gsm8k", "bfcl"), default="gsm8k")
    parser.add_argument("--tasks", type=int, default=20, help="tasks to run (default 20, the full run's)")
    parser.add_argument("--seed", type=int, default=0, help="which tasks (the data's order shuffled with it)")
    parser.add_argument("--folds", type=int, default=FOLDS, help="cross-fitting folds of the learned routers")
    parser.add_argument("--threads", type=int, default=2,
                        help="llama.cpp threads per server (default 2; 1 on a machine other work shares)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--write-docs", action="store_true", help="write docs/agent-benchmark.md and the per-step data set")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE")
    parser.add_argument("--cache", metavar="FILE",
                        help="keep model answers in FILE (JSON lines) and reuse those of earlier runs with the same "
                             "models and threads: a stopped run, or one with a new configuration, computes only new calls")
    parser.add_argument("--data", metavar="FILE", help="also write the per-step data set (evaluation format) to FILE")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")
    try:
        workload = load_workload(args.workload, args.tasks, args.seed)
    except WorkloadError as exc:
        print(f"agent.py: {exc}", file=sys.stderr)
        return 2
    from steproute.local import LocalServers

    started = time.time()
    _say(f"{args.workload}: {len(workload.tasks)} tasks; starting {', '.join(f'{t}={m}' for t, m in MODELS.items())}")
    namespace = json.dumps({"models": MODELS, "threads": args.threads}, sort_keys=True)
    with LocalServers(MODELS, threads=args.threads) as local, tempfile.TemporaryDirectory() as tmp, \
            CachingProxy({t: local[t].base_url for t in TIERS}, store=args.cache, namespace=namespace) as proxy:
        if args.cache:
            _say(f"cache {args.cache}: {proxy.loaded} answers of earlier runs"
                 + (f", {proxy.unreadable} unreadable lines skipped" if proxy.unreadable else ""))
        results, rows, notes = measure(workload, proxy, folds=args.folds, work_dir=Path(tmp))
        if args.cache:
            notes["answers_from_earlier_runs"] = proxy.from_earlier_runs
    summary = summary_json(args.workload, results, f"always-{STRONGEST}", tasks=len(workload.tasks), seed=args.seed,
                           threads=args.threads,
                           models=MODELS, price_per_million_tokens={t: round(p * 1e6, 4) for t, p in PRICE_PER_TOKEN.items()},
                           seconds=round(time.time() - started, 1), **notes)
    text = json.dumps(summary, indent=None if args.json else 2)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.data:
        from steproute.evaluation import write_rows

        _say(f"wrote {write_rows(rows, args.data)} per-step rows to {args.data}")
    if args.write_docs:
        from _agent_docs import write_docs

        for path in write_docs(summary, rows, ROOT):
            _say(f"wrote {path}")
    if args.json:
        print(text)
    else:
        from _agent_docs import table

        print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
