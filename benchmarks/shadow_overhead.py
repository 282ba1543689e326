"""Shadow mode's cost on the hot path: the user's call latency with shadow off and on, same run.

llmock runs as its own process on 127.0.0.1 with a fixed latency per request; the shadow
candidate's tier (``gpt-4o``) is slowed further by an llmock scenario (``--shadow-delay-ms``).
Three routers over the same llmock: one without ``shadow:``, one whose step shadows every call
(``sample: 1.0``, ``judge: normalised``) on the slow tier, one that shadows a tenth (``sample: 0.1``).
Rounds alternate between them; each
round makes ``--calls`` async calls, ``--concurrency`` at a time, and times each call from its
start to its answer. Reported: p50 and p95 of the user's latency per variant, their ratios (on
/ off), and what the shadow runner did (judged, skipped for its bound, dropped at close).

    python benchmarks/shadow_overhead.py                 # writes the figures into docs/shadow.md
    python benchmarks/shadow_overhead.py --rounds 2 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from load import llmock_process

from steproute import RouterConfig, StepRequest, StepRouter

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "shadow.md"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def router(base_url: str, shadow: dict[str, Any] | None) -> StepRouter:
    tiers = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_base": base_url, "api_key": "k"}]},
             "strong": {"models": [{"model": "openai/gpt-4o", "api_base": base_url, "api_key": "k"}]}}
    entry: dict[str, Any] = {"policy": "fixed", "tier": "fast"}
    if shadow is not None:
        entry["shadow"] = shadow
    return StepRouter(RouterConfig(tiers=tiers, default="fast", steps={"answer": entry},
                                   dispatch={"timeout": 60, "num_retries": 0}))


async def one_round(r: StepRouter, calls: int, concurrency: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            await r.acomplete(StepRequest("answer", MESSAGES))
            times.append(time.perf_counter() - started)

    await asyncio.gather(*(one() for _ in range(calls)))
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=80)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--shadow-delay-ms", type=int, default=1000)
    parser.add_argument("--max-concurrency", type=int, default=16, help="the shadow's bound")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    with llmock_process(args.latency_ms) as base:
        root = base.removesuffix("/v1")
        httpx.post(f"{root}/_llmock/scenario", timeout=10, json={"behaviors": [
            {"type": "delay", "seconds": args.shadow_delay_ms / 1000, "times": None, "match": {"model": "gpt-4o"}}]})
        off = router(base, None)
        on = router(base, {"candidate": {"tier": "strong"}, "sample": 1.0, "judge": "normalised",
                           "max_concurrency": args.max_concurrency})
        tenth = router(base, {"candidate": {"tier": "strong"}, "sample": 0.1, "judge": "normalised",
                              "max_concurrency": args.max_concurrency})
        variants = {"off": off, "on": on, "on, sample 0.1": tenth}
        times: dict[str, list[float]] = {name: [] for name in variants}
        hook: list[float] = []
        assert on.shadow is not None
        observe = on.shadow.observe

        def timed_observe(*args: Any) -> Any:  # the hook's own time on the user's call: decide, sample, queue
            started = time.perf_counter()
            try:
                return observe(*args)
            finally:
                hook.append(time.perf_counter() - started)

        on.shadow.observe = timed_observe  # type: ignore[method-assign]

        async def run() -> None:
            for r in variants.values():  # warm-up: imports, connection pools
                await one_round(r, 10, args.concurrency)
            for _ in range(args.rounds):
                for name, r in variants.items():
                    times[name].extend(await one_round(r, args.calls, args.concurrency))
            for r in (on, tenth):
                await r.aclose(timeout=30)

        started = time.perf_counter()
        asyncio.run(run())
        wall = time.perf_counter() - started
    assert on.shadow is not None
    counts = Counter({outcome: n for (_, outcome), n in on.shadow.counts().items()})
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    p95 = {k: pct(v, 0.95) * 1000 for k, v in times.items()}
    judged = counts["win"] + counts["tie"] + counts["loss"]
    lines = [f"Generated by `benchmarks/shadow_overhead.py` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPUs, "
             f"shared): llmock at {args.latency_ms} ms per request, the shadow tier {args.shadow_delay_ms} ms slower; "
             f"{args.rounds} rounds × {args.calls} async calls per variant, {args.concurrency} at a time, the variants "
             f"alternating; shadow `max_concurrency: {args.max_concurrency}`; {wall:.0f} s in all.", "",
             "| user's call | calls | p50 ms | p95 ms |", "|---|---|---|---|"]
    for name in variants:
        lines.append(f"| shadow {name} | {len(times[name])} | {p50[name]:.1f} | {p95[name]:.1f} |")
    for name in ("on", "on, sample 0.1"):
        lines.append(f"| **ratio {name} / off** | | **{p50[name] / p50['off']:.2f}** | **{p95[name] / p95['off']:.2f}** |")
    lines += ["", f"The hook on the user's call (the candidate decides, the sample is drawn, the call is queued): "
                  f"median {statistics.median(hook) * 1e6:.0f} µs, p95 {pct(hook, 0.95) * 1e6:.0f} µs over {len(hook)} calls.",
              "", f"The `sample: 1.0` router's shadow runner: {judged} shadow calls judged, "
                  f"{counts['skipped_concurrency']} skipped at its bound "
                  f"(`max_concurrency`), {counts['error']} errors, {counts['dropped']} dropped at close."]
    for line in lines:
        print(line)
    if not args.no_docs:
        block = "<!-- shadow-overhead:start -->\n" + "\n".join(lines) + "\n<!-- shadow-overhead:end -->"
        text = DOC.read_text(encoding="utf-8")
        DOC.write_text(re.sub(r"<!-- shadow-overhead:start -->.*<!-- shadow-overhead:end -->", lambda _: block, text,
                              flags=re.S), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
