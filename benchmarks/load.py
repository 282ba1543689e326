"""Load: many concurrent graph runs of 5 routed steps over real HTTP, and a soak.

llmock runs as its own process on 127.0.0.1 with a fixed latency per request. A 5-node graph
(async nodes, one routed call each: rules, pins on a pool of 1,000 conversations, OpenTelemetry
SDK on) runs ``--runs`` times at once (``asyncio.gather`` of ``ainvoke``), round after round,
for ``--rounds`` rounds or ``--soak-seconds``. After each round it records:

- whether every run completed;
- the asyncio tasks left;
- the threads;
- the open sockets;
- the process's resident memory;
- the decision log: entries written against calls made, and entries dropped.

Nothing may be left over, nothing may be lost (one decision-log entry per routed call, none
dropped), and memory must stay flat once warm.

    python benchmarks/load.py                      # 1,000 runs at once, then a 10-minute soak
    python benchmarks/load.py --runs 100 --rounds 3 --no-docs

Writes the ``load`` block of docs/reliability.md. ``tests/integration/test_load.py`` runs a
short version (100 runs, 3 rounds) in CI and asserts the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.trace import TracerProvider

from steproute import RouterConfig, StepRouter, step
from steproute.decision_log import JsonlDecisionLog

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
STEPS = {"rewrite": "Rewrite the question.", "extract": "Extract the city.", "plan": "Plan the answer.",
         "search": "Search for the weather.", "answer": "Write the final answer."}
CONVERSATIONS = 1000


@contextlib.contextmanager
def llmock_process(latency_ms: int) -> Iterator[str]:
    """``llmock serve`` on a free loopback port; yields its OpenAI base URL; always stopped."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "llmock")
    proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--latency-ms", str(latency_ms),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("llmock did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class State(TypedDict, total=False):
    done: int


def build(base_url: str, log: JsonlDecisionLog | None = None) -> Any:
    router = StepRouter(RouterConfig(
        tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_base": base_url, "api_key": "k"}]},
               "strong": {"models": [{"model": "openai/gpt-4o", "api_base": base_url, "api_key": "k"}]}},
        default={"policy": "rules", "rules": [{"tier": "strong", "when": {"keywords": ["plan", "final"]}}],
                 "fallback": "fast"},
        pinning={"mode": "sticky"}, dispatch={"timeout": 60, "num_retries": 2}), tracer_provider=TracerProvider(),
        decision_log=log)
    model = router.chat_model()
    g = StateGraph(State)
    for name, prompt in STEPS.items():
        async def node(state: State, prompt: str = prompt) -> State:
            await model.ainvoke([HumanMessage(prompt)])
            return {"done": state.get("done", 0) + 1}

        g.add_node(name, node, metadata=step(name))
    for a, b in itertools.pairwise((START, *STEPS, END)):
        g.add_edge(a, b)
    return g.compile()


def sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
    return count


def rss_mb() -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


@dataclass(frozen=True)
class Round:
    runs: int
    completed: int
    seconds: float
    tasks_left: int
    threads: int
    sockets: int
    rss_mb: float
    logged: int = 0
    """Decision-log entries written in the round (one per routed call: ``runs`` × 5)."""
    dropped: int = 0
    """Decision-log entries dropped in the round."""


class LogCount:
    """The decision log's lines and drops so far; :meth:`since` gives a round's share."""

    def __init__(self, log: JsonlDecisionLog) -> None:
        self.log, self.lines, self.dropped = log, 0, 0

    def since(self) -> tuple[int, int]:
        self.log.flush(timeout=60)
        with open(self.log.path, "rb") as f:
            lines = sum(1 for _ in f)
        new = (lines - self.lines, self.log.dropped - self.dropped)
        self.lines, self.dropped = lines, self.log.dropped
        return new


async def one_round(graph: Any, runs: int, counter: Iterator[int], logged: LogCount | None = None) -> Round:
    started = time.perf_counter()
    results = await asyncio.gather(*(graph.ainvoke({}, config={"configurable": {
        "thread_id": f"c{next(counter) % CONVERSATIONS}"}}) for _ in range(runs)), return_exceptions=True)
    seconds = time.perf_counter() - started
    completed = sum(1 for r in results if isinstance(r, dict) and r.get("done") == len(STEPS))
    # LiteLLM schedules its success logging as background tasks; give them up to 10 s to finish:
    # a task still there after that is a leak
    deadline = time.monotonic() + 10
    while (tasks_left := len(_left_over())) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    written, dropped = await asyncio.to_thread(logged.since) if logged is not None else (0, 0)
    return Round(runs, completed, seconds, tasks_left, threading.active_count(), sockets(), rss_mb(), written, dropped)


def _left_over() -> list[asyncio.Task[Any]]:
    """Tasks other than this one and LiteLLM's logging worker (one per event loop, for good)."""
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
            and getattr(t.get_coro(), "__qualname__", "") != "LoggingWorker._worker_loop"]


def run(base_url: str, runs: int, rounds: int | None = None, soak_seconds: float | None = None,
        progress: bool = True, log_path: str | os.PathLike[str] | None = None) -> list[Round]:
    """Rounds of ``runs`` concurrent graph runs until ``rounds`` or ``soak_seconds``, all on one
    event loop (LiteLLM's HTTP clients belong to a loop: a new loop would open new ones). With
    ``log_path``, every call is written to a decision log there (its default bounds), and each
    round counts the entries written and dropped."""
    log = JsonlDecisionLog(log_path) if log_path is not None else None
    graph = build(base_url, log)
    logged = LogCount(log) if log is not None else None
    counter = itertools.count()
    out: list[Round] = []

    async def main() -> None:
        await one_round(graph, min(runs, 20), counter, logged)  # warm-up: imports, connection pool
        deadline = time.monotonic() + soak_seconds if soak_seconds else None
        while (rounds is not None and len(out) < rounds) or (deadline is not None and time.monotonic() < deadline):
            r = await one_round(graph, runs, counter, logged)
            out.append(r)
            if progress:
                print(f"round {len(out)}: {r.completed}/{r.runs} in {r.seconds:.1f} s, tasks left {r.tasks_left}, "
                      f"threads {r.threads}, sockets {r.sockets}, RSS {r.rss_mb:.0f} MB, "
                      f"logged {r.logged}, dropped {r.dropped}", file=sys.stderr, flush=True)

    try:
        asyncio.run(main())
    finally:
        if log is not None:
            log.close()
    return out


def summary(rounds: list[Round]) -> dict[str, Any]:
    warm = rounds[1:] or rounds
    third = max(1, len(warm) // 3)
    return {
        "rounds": len(rounds), "runs": sum(r.runs for r in rounds), "completed": sum(r.completed for r in rounds),
        "graph_runs_per_s": statistics.median(r.runs / r.seconds for r in rounds),
        "tasks_left": max(r.tasks_left for r in rounds), "threads": (min(r.threads for r in warm), max(r.threads for r in warm)),
        "sockets": (min(r.sockets for r in warm), max(r.sockets for r in warm)),
        "rss_first": statistics.mean(r.rss_mb for r in warm[:third]),
        "rss_last": statistics.mean(r.rss_mb for r in warm[-third:]),
        "calls": sum(r.runs for r in rounds) * len(STEPS), "logged": sum(r.logged for r in rounds),
        "dropped": sum(r.dropped for r in rounds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    with llmock_process(args.latency_ms) as base, tempfile.TemporaryDirectory() as tmp:
        rounds = run(base, args.runs, rounds=args.rounds, soak_seconds=None if args.rounds else args.soak_seconds,
                     log_path=Path(tmp) / "decisions.jsonl")
    b, s = summary(rounds[:1]), summary(rounds)
    lines = [f"Generated by `benchmarks/load.py` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPUs): llmock "
             f"with {args.latency_ms} ms latency per request, a 5-step graph (async nodes, rules policy, pins, 2 retries, "
             f"OpenTelemetry SDK, a decision log), {args.runs} runs at once per round.", "",
             "| | rounds | graph runs | completed | graph runs/s | asyncio tasks left over | threads | open sockets "
             "| RSS, first third → last third | routed calls | decision-log entries | dropped |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, x in (("first round", b), ("whole soak", s)):
        lines.append(f"| {name} | {x['rounds']} | {x['runs']:,} | {x['completed']:,} | {x['graph_runs_per_s']:.1f} | "
                     f"{x['tasks_left']} | {x['threads'][0]}–{x['threads'][1]} | {x['sockets'][0]}–{x['sockets'][1]} | "
                     f"{x['rss_first']:.0f} → {x['rss_last']:.0f} MB | {x['calls']:,} | {x['logged']:,} | "
                     f"{x['dropped']} |")
    for line in lines:
        print(line)
    if not args.no_docs:
        block = "<!-- load:start -->\n" + "\n".join(lines) + "\n<!-- load:end -->"
        text = DOC.read_text(encoding="utf-8")
        DOC.write_text(re.sub(r"<!-- load:start -->.*<!-- load:end -->", lambda _: block, text, flags=re.S),
                       encoding="utf-8")
    ok = (b["completed"] == b["runs"] and s["completed"] == s["runs"] and b["tasks_left"] == s["tasks_left"] == 0
          and s["logged"] == s["calls"] and s["dropped"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
