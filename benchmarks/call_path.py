"""The call path's per-step overhead and throughput, this source tree against a reference revision, in one run.

The working tree (uncommitted changes included) and a reference revision (``--against``, default
``e650c38``: the last commit before the call path became one tier walk; unpacked with ``git archive``
into a temporary directory, removed at the end) each run in their own subprocess (same Python,
``PYTHONPATH`` = the tree), which measures one variant when asked over a pipe. The parent asks the
two in turn, variant by variant, round after round, so a slow moment on the machine hits both alike.
Every call answers with LiteLLM's ``mock_response`` (no network); bare LiteLLM calls timed in each
subprocess give each tree's ratio to LiteLLM, and their new/old the noise of the run.
Writes docs/call-path-overhead.md (``--out``) and stdout; progress on stderr.

    python benchmarks/call_path.py [--against REV] [--quick]   # about 2 minutes on 2 cores; --quick: 20 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "call-path-overhead.md"
DEFAULT_AGAINST = "e650c38"
CONCURRENCY = 64
BATCH = 50


@dataclass(frozen=True)
class Variant:
    name: str
    baseline: str  # the bare LiteLLM variant it is compared with
    items: int = 1  # calls per measured unit (a batch, a burst)
    throughput: bool = False


VARIANTS = [
    Variant("litellm.completion", "litellm.completion"),
    Variant("litellm.acompletion", "litellm.acompletion"),
    Variant("litellm.completion, stream", "litellm.completion, stream"),
    Variant("StepRouter.complete, fixed step", "litellm.completion"),
    Variant("StepRouter.acomplete, fixed step", "litellm.acompletion"),
    Variant("StepRouter.stream, fixed step", "litellm.completion, stream"),
    Variant("cascade, first tier accepted", "litellm.completion"),
    Variant("cascade, first tier rejected, escalates", "litellm.completion"),
    Variant("fallback, first tier fails", "litellm.completion"),
    Variant(f"complete_batch of {BATCH}, per item", "litellm.completion", items=BATCH),
    *(Variant(name, f"litellm.acompletion, {CONCURRENCY} concurrent", items=CONCURRENCY, throughput=True)
      for name in (f"litellm.acompletion, {CONCURRENCY} concurrent", f"StepRouter.acomplete, {CONCURRENCY} concurrent")),
]
Times = dict[str, dict[str, list[float]]]  # variant -> "old"/"new" -> seconds per call, one a round


# -- the worker: one source tree, in its own process -----------------------------------------------


def logging_settled() -> Callable[[], None]:
    """A function that returns once every task handed to LiteLLM's logging thread pool is done
    (success and failure handlers: LiteLLM runs them in the background after a call returns).
    Waiting for them before the clock stops keeps one variant's leftovers out of the next one and
    out of the other tree's process."""
    try:
        from litellm.litellm_core_utils.thread_pool_executor import executor
    except ImportError:  # a LiteLLM without that pool: nothing to wait for
        return lambda: None
    pending: list[Future[Any]] = []
    submit = executor.submit

    def tracked(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = submit(fn, *args, **kwargs)
        pending.append(future)
        return future

    executor.submit = tracked  # type: ignore[method-assign]

    def settled() -> None:
        while pending:
            done = list(pending)
            if wait(done, timeout=30).not_done:
                raise RuntimeError("LiteLLM's logging thread pool still busy after 30 s")
            del pending[:len(done)]
    return settled


def worker_variants() -> dict[str, Callable[[int], float]]:
    """Each variant as ``run(units) -> seconds per unit``; only the public API, so any tree runs it."""
    import litellm
    from _timing import timed

    from steproute import RouterConfig, StepRequest, StepRouter

    litellm.suppress_debug_info = True
    messages = [{"role": "user", "content": "Rewrite this question as a search query: what is the weather in Paris?"}]
    answer = "weather Paris today"
    mock = {"mock_response": answer, "api_key": "sk-bench"}
    models = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini", "advanced": "openai/gpt-4o"}

    def tiers(**fast: str) -> dict[str, Any]:
        return {name: {"models": [{"model": model, **mock, **(fast if name == "fast" else {})}]}
                for name, model in models.items()}

    cascade = {"policy": "cascade", "tiers": ["fast", "standard"], "signals": [{"signal": "hedging"}]}
    steps = {"rewrite": {"policy": "fixed", "tier": "fast"}, "check": cascade}
    router = StepRouter(RouterConfig(tiers=tiers(), default="fast", steps=steps))
    hedging = StepRouter(RouterConfig(tiers=tiers(mock_response="I'm not sure, I cannot say."), default="fast",
                                      steps=steps))
    down = StepRouter(RouterConfig(tiers=tiers(mock_response="litellm.InternalServerError"), default="fast",
                                   steps=steps))
    fixed = StepRequest("rewrite", messages)
    check = StepRequest("check", messages)
    loop = asyncio.new_event_loop()
    # the LiteLLM call steproute makes for the fixed step: a deadline and no hidden retries
    bare = {"model": models["fast"], "messages": messages, **mock, "timeout": 600.0, "num_retries": 0}

    settle = logging_settled()

    def sync(fn: Callable[[], object]) -> Callable[[int], float]:
        def run(units: int) -> float:
            def calls() -> None:
                for _ in range(units):
                    fn()
                settle()
            return timed(calls, 1) / units
        return run

    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as queue
    except ImportError:  # a LiteLLM without that queue
        queue = None

    async def tasks_settled(before: set[asyncio.Task[Any]]) -> None:
        """Wait for the work the calls left behind: LiteLLM's async logging queue (whose own
        worker task, started by the first call below, runs for good) and any task they started."""
        while True:
            if queue is not None and hasattr(queue, "flush"):
                await queue.flush()
            left = asyncio.all_tasks() - before - {asyncio.current_task()}
            if not left:
                return
            _, still = await asyncio.wait(left, timeout=30)
            if still:
                raise RuntimeError(f"{len(still)} background task(s) still running after 30 s")

    def sequential(make: Callable[[], Any]) -> Callable[[int], float]:
        async def many(units: int) -> None:
            before = asyncio.all_tasks()
            for _ in range(units):
                await make()
            await tasks_settled(before)
        def run(units: int) -> float:
            def calls() -> None:
                loop.run_until_complete(many(units))
                settle()
            return timed(calls, 1) / units
        return run

    loop.run_until_complete(litellm.acompletion(**bare))  # starts LiteLLM's logging worker for good

    def burst(make: Callable[[], Any]) -> Callable[[int], float]:
        async def gather() -> None:
            before = asyncio.all_tasks()
            await asyncio.gather(*(make() for _ in range(CONCURRENCY)))
            await tasks_settled(before)
        def calls() -> None:
            loop.run_until_complete(gather())
            settle()
        return lambda units: timed(calls, units)

    def drain(chunks: Any) -> None:
        for _ in chunks:
            pass

    def checked(result: Any, tier: str) -> None:
        if result.decision.tier != tier:
            raise AssertionError(f"answered by {result.decision.tier}, not {tier}")

    return {
        "litellm.completion": sync(lambda: litellm.completion(**bare)),
        "litellm.acompletion": sequential(lambda: litellm.acompletion(**bare)),
        "litellm.completion, stream": sync(lambda: drain(litellm.completion(
            **bare, stream=True, stream_options={"include_usage": True}))),
        "StepRouter.complete, fixed step": sync(lambda: router.complete(fixed)),
        "StepRouter.acomplete, fixed step": sequential(lambda: router.acomplete(fixed)),
        "StepRouter.stream, fixed step": sync(lambda: drain(router.stream(fixed))),
        "cascade, first tier accepted": sync(lambda: checked(router.complete(check), "fast")),
        "cascade, first tier rejected, escalates": sync(lambda: checked(hedging.complete(check), "standard")),
        "fallback, first tier fails": sync(lambda: checked(down.complete(fixed), "standard")),
        f"complete_batch of {BATCH}, per item": sync(lambda: router.complete_batch([fixed] * BATCH)),
        f"litellm.acompletion, {CONCURRENCY} concurrent": burst(lambda: litellm.acompletion(**bare)),
        f"StepRouter.acomplete, {CONCURRENCY} concurrent": burst(lambda: router.acomplete(fixed)),
    }


def worker() -> int:
    """Serve requests from the parent: one JSON line in, one out, on a pipe of its own (fd 1
    goes to stderr, so nothing LiteLLM prints can corrupt the answers)."""
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    from importlib import metadata

    import steproute

    runs = worker_variants()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "hello":
            reply: dict[str, Any] = {"steproute": steproute.__file__, "litellm": metadata.version("litellm"),
                                     "python": platform.python_version()}
        elif request["op"] == "freeze":  # after the warm-up: what is loaded now is never collected again
            gc.collect()
            gc.freeze()
            reply = {}
        else:
            gc.collect()  # the last variant's garbage, off the clock (cheap once the heap is frozen)
            try:
                reply = {"seconds": runs[request["variant"]](request["units"])}
            except Exception as exc:  # reported by the parent with the tree's name
                reply = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        answers.write(json.dumps(reply) + "\n")
    return 0


# -- the parent: two trees, interleaved --------------------------------------------------------------


class Tree:
    """A worker subprocess measuring the steproute package found under ``path``."""

    def __init__(self, label: str, path: Path, log: Path) -> None:
        self.label, self.path, self.log = label, path, log
        env = {**os.environ, "PYTHONPATH": str(path), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONHASHSEED": "0"}
        self._log: IO[str] = open(log, "w", encoding="utf-8")  # closed in close()
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, env=env, cwd=log.parent)

    def send(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return request

    def ask(self, **request: Any) -> dict[str, Any]:
        return self.answer(self.send(**request))

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise SystemExit(f"{self.label}: the worker stopped\n{tail}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"{self.label}: {request.get('variant')} failed: {reply['error']}")
        return reply

    def run(self, variant: str, units: int) -> float:
        return float(self.ask(op="run", variant=variant, units=units)["seconds"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def resolve(rev: str) -> str:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--against {rev!r}: not a revision of {ROOT}") from None


def unpack(sha: str, dest: Path) -> None:
    """The reference revision's ``steproute`` package, unpacked under ``dest`` (``git archive``)."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha, "steproute"],
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rotated(r: int) -> list[tuple[int, Variant]]:
    """Round ``r``'s order: the variants rotated by ``r``, so none always follows the same one."""
    k = r % len(VARIANTS)
    return list(enumerate(VARIANTS))[k:] + list(enumerate(VARIANTS))[:k]


def measure(old: Tree, new: Tree, rounds: int, target_s: float, quick: bool) -> tuple[dict[str, int], Times]:
    """Seconds per unit of every variant in both trees, one figure per round."""
    started, warmup, min_units = time.perf_counter(), (1 if quick else 3), (2 if quick else 5)
    for request in [{"op": "run", "variant": v.name, "units": 1 if v.items > 1 else warmup} for v in VARIANTS] + [
            {"op": "freeze"}]:  # warm both at once: imports, LiteLLM's caches, the routers' first calls
        for tree, sent in [(tree, tree.send(**request)) for tree in (old, new)]:
            tree.answer(sent)
    # the same units for both trees, from the speed of both; a variant and the bare LiteLLM call it is
    # compared with make as many calls (the wait for LiteLLM's logging at the end is spread alike)
    speed = {v.name: (old.run(v.name, 1) + new.run(v.name, 1)) / 2 for v in VARIANTS}
    units = {v.name: max(1, round(target_s / speed[v.name])) for v in VARIANTS if v.items > 1}
    for base in {v.baseline for v in VARIANTS if v.items == 1}:
        group = [v.name for v in VARIANTS if v.baseline == base and v.items == 1]
        units |= dict.fromkeys(group, max(min_units, min(500, round(target_s / max(speed[n] for n in group)))))
    progress(f"warmed up and sized in {time.perf_counter() - started:.1f} s")
    times: Times = {v.name: {"old": [], "new": []} for v in VARIANTS}
    started = time.perf_counter()
    for r in range(rounds):
        for i, v in rotated(r):
            order = [("old", old), ("new", new)] if (r + i) % 2 == 0 else [("new", new), ("old", old)]
            for key, tree in order:
                times[v.name][key].append(tree.run(v.name, units[v.name]) / v.items)
        fixed = times["StepRouter.complete, fixed step"]
        progress(f"round {r + 1}/{rounds}  {time.perf_counter() - started:5.1f} s  "
                 f"complete new/old so far {statistics.median(fixed['new']) / statistics.median(fixed['old']):.3f}")
    return units, times


def duration(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def spread(ratios: list[float]) -> str:
    """The median of the per-round ratios and their quartiles: ``1.012 (0.981–1.040)``."""
    q1, q2, q3 = statistics.quantiles(ratios * 2 if len(ratios) < 2 else ratios, n=4, method="inclusive")
    return f"{q2:.3f} ({q1:.3f}–{q3:.3f})"


def report(times: Times, units: dict[str, int], meta: dict[str, str]) -> str:
    med = {name: {k: statistics.median(v) for k, v in sides.items()} for name, sides in times.items()}
    paired = {name: [n / o for n, o in zip(s["new"], s["old"], strict=True)] for name, s in times.items()}
    old, new = meta["old"], meta["new"]
    lines = [
        "# Call-path overhead: working tree against a reference revision",
        "",
        f"Generated by `{meta['command']}` (`benchmarks/call_path.py`, part of `make bench`) on {meta['date']}, "
        f"in {meta['wall']}.",
        "",
        f"- reference: `{old}` ({meta['old_label']}); working tree: `{new}` ({meta['new_label']}).",
        f"- {meta['rounds']} rounds; each tree in its own subprocess (same Python and hash seed, `PYTHONPATH` = the "
        "tree), asked in "
        "turn variant by variant, which tree goes first alternating, so both see the same machine.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}, load average {meta['load']}; "
        f"Python {meta['python']}, "
        f"litellm {meta['litellm']}. Every call answers with LiteLLM's `mock_response` (no network); "
        "OpenTelemetry's no-op providers, no pins, no decision log.",
        "",
        "## Per call (time: a ratio above 1 is slower)",
        "",
        "Median time per call over the rounds; new/old: working tree ÷ reference, as the ratio of the medians and "
        "as the median (quartiles) of the rounds' ratios, each round's two figures taken back to back; "
        "÷ LiteLLM: the tree's median ÷ the bare LiteLLM call it wraps, timed in the same subprocess; the last "
        "column divides the two, so a subprocess that runs faster or slower as a whole cancels out.",
        "",
        f"| variant | unit | reference `{old}` | working tree `{new}` | new/old | rounds' new/old: median (q1–q3) | "
        "reference ÷ LiteLLM | working tree ÷ LiteLLM | new/old of ÷ LiteLLM |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in VARIANTS:
        if v.throughput:
            continue
        m, base = med[v.name], med[v.baseline]
        what = "per item" if v.items > 1 else "per call"
        lines.append(f"| {v.name} | {what}, {units[v.name]} a round | {duration(m['old'])} | {duration(m['new'])} | "
                     f"{m['new'] / m['old']:.3f}x | {spread(paired[v.name])} | {m['old'] / base['old']:.3f}x | "
                     f"{m['new'] / base['new']:.3f}x | {m['new'] / base['new'] / (m['old'] / base['old']):.3f}x |")
    lines += [
        "",
        f"## Throughput ({CONCURRENCY} concurrent `acomplete` calls, `asyncio.gather`; a ratio below 1 is slower)",
        "",
        "Calls per second: the number of calls ÷ the median burst time; new/old and ÷ LiteLLM as ratios of calls/s.",
        "",
        "| variant | reference calls/s | working tree calls/s | new/old | rounds' new/old: median (q1–q3) | "
        "reference ÷ LiteLLM | working tree ÷ LiteLLM | new/old of ÷ LiteLLM |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in VARIANTS:
        if not v.throughput:
            continue
        m, base = med[v.name], med[v.baseline]
        lines.append(f"| {v.name} | {1 / m['old']:,.0f} calls/s | {1 / m['new']:,.0f} calls/s | "
                     f"{m['old'] / m['new']:.3f}x | {spread([1 / r for r in paired[v.name]])} | "
                     f"{base['old'] / m['old']:.3f}x | {base['new'] / m['new']:.3f}x | "
                     f"{base['new'] / m['new'] / (base['old'] / m['old']):.3f}x |")
    bare = [v for v in VARIANTS if v.name.startswith("litellm.")]
    of_medians = [med[v.name]["new"] / med[v.name]["old"] for v in bare]
    of_rounds = [statistics.median(paired[v.name]) for v in bare]
    lines += [
        "",
        "## Reading",
        "",
        "- The `litellm.*` rows run the same code in both subprocesses (only `PYTHONPATH` differs), so their new/old "
        f"is the noise of this run: here {min(of_medians):.3f}–{max(of_medians):.3f} as ratios of medians, "
        f"{min(of_rounds):.3f}–{max(of_rounds):.3f} as medians of the rounds' ratios (throughput rows as time per "
        "call). Between two identical trees a steproute row's new/old wanders about as far (on a shared machine, "
        "more: compare with the load average above); only a change beyond that band is a change. "
        "A quiet machine narrows the band.",
        "- The bare LiteLLM calls make the request steproute makes for the fixed step: `timeout=600` (steproute's "
        "default deadline), `num_retries=0`, and for the stream `stream_options={\"include_usage\": True}`.",
        "- Variants: a `fixed` step; a `cascade` over fast → standard judged by the `hedging` signal, the fast answer "
        "accepted (one call) or hedging and rejected (two calls, so about 2x LiteLLM); a fixed step whose tier's only "
        "deployment raises `InternalServerError` (LiteLLM's mock) and falls back to the next tier (a failed call "
        f"and a good one); `complete_batch` of {BATCH} requests of the fixed step (steproute's thread pool, 8 at once, "
        "per item, against one sequential `litellm.completion`).",
        "- Each round starts one variant further down the list; each subprocess collects the previous variant's "
        "garbage before the clock starts. Each variant is timed in units sized to about "
        f"{meta['target']} per tree per round (the `unit` column: units of a round; at least 5 calls), the same "
        "count for both trees and for a variant and the bare LiteLLM call in its ÷ LiteLLM column. "
        "After a warm-up, each subprocess freezes its heap (`gc.freeze()`): LiteLLM's modules make a full garbage "
        "collection take about half a second, which would otherwise land in a random round. The clock stops once "
        "the background logging LiteLLM starts after each call is done (its logging thread pool and async queue), "
        "so a figure includes that work and none of it spills into the next variant or the other tree's process.",
        "- Another pair: `python benchmarks/call_path.py --against REV` (or `make bench AGAINST=REV`); "
        "`--quick` for a ~20 s smoke run.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--against", default=DEFAULT_AGAINST, help=f"reference revision (default {DEFAULT_AGAINST})")
    parser.add_argument("--rounds", type=int, help="rounds (default 60; --quick: 6)")
    parser.add_argument("--quick", action="store_true", help="a short run (about 20 s), for a smoke test")
    parser.add_argument("--out", type=Path, default=DOC, help="the page to write (default docs/call-path-overhead.md)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker()
    started, load = time.perf_counter(), os.getloadavg()[0]
    rounds = args.rounds or (6 if args.quick else 60)
    target_s = 0.015 if args.quick else 0.04
    sha = resolve(args.against)
    short = sha[:7]
    head = git("rev-parse", "--short=7", "HEAD")
    dirty, same = bool(git("status", "--porcelain", "--", "steproute")), not git("diff", "--stat", sha, "--", "steproute")
    with tempfile.TemporaryDirectory(prefix="steproute-call-path-") as tmp:
        reference = Path(tmp) / "reference"
        reference.mkdir()
        unpack(sha, reference)
        old = Tree("reference", reference, Path(tmp) / "reference.log")
        new = Tree("working tree", ROOT, Path(tmp) / "working.log")
        try:
            hello = {}
            for tree in (old, new):
                hello[tree.label] = tree.ask(op="hello")  # both started above: they import side by side
                where = Path(hello[tree.label]["steproute"]).resolve()
                progress(f"{tree.label}: steproute from {where}")
                if not where.is_relative_to(tree.path.resolve()):
                    raise SystemExit(f"{tree.label}: steproute was imported from {where}, not from {tree.path}")
            progress(f"both trees imported in {time.perf_counter() - started:.1f} s")
            units, times = measure(old, new, rounds, target_s, args.quick)
        finally:
            old.close()
            new.close()
    argv_shown = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    meta = {
        "command": f"python benchmarks/call_path.py {argv_shown}".strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall": f"{time.perf_counter() - started:.0f} s",
        "old": short, "old_label": f"`--against {args.against}`, unpacked with `git archive`",
        "new": head + ("+" if dirty else ""),
        "new_label": ("HEAD with uncommitted changes to steproute/" if dirty else "HEAD, no uncommitted changes")
        + ("; its steproute/ is the reference's, so every new/old below is noise" if same else ""),
        "rounds": str(rounds), "python": hello["reference"]["python"], "litellm": hello["reference"]["litellm"],
        "target": f"{target_s * 1e3:.0f} ms", "load": f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
    }
    text = report(times, units, meta)
    kept = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    if "<!-- latency-check:start -->" in kept:  # benchmarks/latency_check.py's section stays
        text += "\n" + kept[kept.index("<!-- latency-check:start -->"):]
    args.out.write_text(text, encoding="utf-8")
    print(text)
    progress(f"wrote {args.out} in {meta['wall']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
