"""Memory at a million conversations: the pin store and the decision log, bounded by config.

1,000,000 distinct threads are routed (``StepRouter.route``: decision + pin, no model call),
once with the default bound (``pinning.max_threads: 100000``) and once with the bound at one
million; then 1,000,000 decision-log entries (as a routed call writes them) go through the
background JSON-lines writer. Each phase reports the process's resident memory (RSS) before and
after, from ``/proc/self/status``.

    python benchmarks/memory.py [--threads 1000000]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.decision_log import JsonlDecisionLog

MOCK = {"mock_response": "ok", "api_key": "sk-bench"}


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pins(threads: int, bound: int) -> dict[str, float]:
    router = StepRouter(RouterConfig(
        tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", **MOCK}]}}, default="fast",
        pinning={"max_threads": bound}))
    messages = [{"role": "user", "content": "hello"}]
    gc.collect()
    before, start = rss_mb(), time.perf_counter()
    for i in range(threads):
        router.route(StepRequest("answer", messages, thread=f"thread-{i}"))
    seconds = time.perf_counter() - start
    gc.collect()
    return {"bound": bound, "held": len(router.pin_store), "before": before, "after": rss_mb(), "seconds": seconds}


def decision_log(entries: int, tmp: Path) -> dict[str, float]:
    log = JsonlDecisionLog(tmp / "decisions.jsonl", max_wait_s=60)  # measure every entry: wait for room
    gc.collect()
    before, start, peak = rss_mb(), time.perf_counter(), 0.0
    for i in range(entries):
        log.write({"type": "decision", "id": f"d-{i}", "step": "answer", "kind": "synthesis", "tier": "fast",
                   "model": "openai/gpt-4o-mini", "policy": "fixed", "reason": "fixed tier 'fast'", "thread": f"thread-{i}",
                   "pinned": False, "input_tokens": 12, "output_tokens": 30, "cost_usd": 1.9e-5,
                   "baseline_cost_usd": 3.3e-4, "latency_ms": 2.7, "ts": time.time()})
        if i % 100_000 == 0:
            peak = max(peak, rss_mb())
    log.close()
    seconds = time.perf_counter() - start
    gc.collect()
    size = (tmp / "decisions.jsonl").stat().st_size / 1e6
    return {"before": before, "peak": max(peak, rss_mb()), "after": rss_mb(), "seconds": seconds, "file_mb": size}


def run(n: int = 1_000_000) -> list[str]:
    """The table rows (markdown) for ``n`` threads and ``n`` log entries."""
    lines = ["| what | held | RSS before | RSS after | growth | time |", "|---|---|---|---|---|---|"]
    for bound in (100_000, n):
        r = pins(n, bound)
        lines.append(f"| {n:,} threads routed, `max_threads: {bound:,}` | {r['held']:,} pins | {r['before']:.0f} MB | "
                     f"{r['after']:.0f} MB | {r['after'] - r['before']:+.0f} MB | {r['seconds']:.0f} s |")
        print(lines[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = decision_log(n, Path(tmp))
    lines.append(f"| {n:,} decision-log entries ({r['file_mb']:.0f} MB written), writer queue bounded at 50,000 | — | "
                 f"{r['before']:.0f} MB | "
                 f"{r['after']:.0f} MB (peak {r['peak']:.0f}) | {r['after'] - r['before']:+.0f} MB | {r['seconds']:.0f} s |")
    print(lines[-1], flush=True)
    return lines


def main() -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1_000_000)
    return run(parser.parse_args().threads)


if __name__ == "__main__":
    main()
    sys.exit(0)
