"""The decision-time cost of the latency check (``max_latency_ms``, a run deadline), against the same
decision without it, in one run; and the cost of timing each tier call (the feed), against the
untimed client.

Every variant is timed in the same rounds, in turn (``_timing.interleaved``), in one process: a
slow moment on the machine hits them all alike. No network: LiteLLM's ``mock_response``.
Writes its section of docs/call-path-overhead.md (between the ``latency-check`` markers; the
rest of the page is ``benchmarks/call_path.py``'s) and stdout.

    python benchmarks/latency_check.py [--quick]     # about 30 s on 2 cores; --quick: 5 s
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import interleaved

DOC = Path(__file__).resolve().parents[1] / "docs" / "call-path-overhead.md"
START, END = "<!-- latency-check:start -->", "<!-- latency-check:end -->"


def variants() -> tuple[dict[str, object], list[tuple[str, str]]]:
    """Each variant as a no-argument callable, and the (with, without) pairs the table compares."""
    import litellm

    from steproute import RouterConfig, StepRequest, StepRouter
    from steproute.latency import DEADLINE_KEY, TOTAL

    litellm.suppress_debug_info = True
    mock = {"mock_response": "ok", "api_key": "sk-bench"}
    tiers = {name: {"models": [{"model": model, **mock}]} for name, model in
             (("fast", "openai/gpt-4o-mini"), ("standard", "openai/gpt-4.1-mini"), ("advanced", "openai/gpt-4o"))}
    steps = {"plain": {"policy": "fixed", "tier": "fast"},
             "budget": {"policy": "fixed", "tier": "fast", "max_latency_ms": 1000},
             "tight": {"policy": "fixed", "tier": "fast", "max_latency_ms": 100},
             "cascade": {"policy": "cascade", "tiers": ["fast", "advanced"], "max_latency_ms": 800}}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast", steps=steps))
    book = router._dispatcher.latency
    now = time.monotonic()
    for tier, ms in (("fast", 400), ("standard", 300), ("advanced", 500)):
        for _ in range(64):
            book.observe(tier, "m", TOTAL, ms / 1000, now)
    messages = [{"role": "user", "content": "Rewrite this question as a search query: what is the weather in Paris?"}]
    far = time.time() + 3600
    requests = {name: StepRequest(name, messages) for name in steps}
    deadline = StepRequest("plain", messages, metadata={DEADLINE_KEY: far})
    plain_cascade = StepRouter(RouterConfig(tiers=tiers, default="fast", steps={
        "cascade": {"policy": "cascade", "tiers": ["fast", "advanced"]}}))
    from steproute._latency_feed import TimedTier
    from steproute.completions import Completion, CompletionChunk
    from steproute.types import Usage

    answer = Completion("ok", "openai/gpt-4o-mini", "openai", Usage(10, 2), 0.0)
    pieces = [CompletionChunk(content="word ", model="openai/gpt-4o-mini") for _ in range(20)]

    class Instant:  # a tier client that answers at once: what remains is the timing itself
        def complete(self, *args: object) -> Completion:
            return answer

        def stream(self, *args: object) -> object:
            yield from pieces

    bare, timed = Instant(), TimedTier(Instant(), "fast", book)  # type: ignore[arg-type]
    todo = {
        "decide, no budget": lambda: router.decide(requests["plain"]),
        "decide, max_latency_ms, the tier fits": lambda: router.decide(requests["budget"]),
        "decide, max_latency_ms, moved up": lambda: router.decide(requests["tight"]),
        "decide, run deadline, the tier fits": lambda: router.decide(deadline),
        "decide, cascade, no budget": lambda: plain_cascade.decide(requests["cascade"]),
        "decide, cascade, max_latency_ms, cheap attempt skipped": lambda: router.decide(requests["cascade"]),
        "tier call, untimed client": lambda: bare.complete("plain", messages, {}),
        "tier call, timed (the feed)": lambda: timed.complete("plain", messages, {}),
        "stream of 20 chunks, untimed client": lambda: sum(1 for _ in bare.stream("plain", messages, {})),
        "stream of 20 chunks, timed (the feed)": lambda: sum(1 for _ in timed.stream("plain", messages, {})),
    }
    pairs = [("decide, max_latency_ms, the tier fits", "decide, no budget"),
             ("decide, max_latency_ms, moved up", "decide, no budget"),
             ("decide, run deadline, the tier fits", "decide, no budget"),
             ("decide, cascade, max_latency_ms, cheap attempt skipped", "decide, cascade, no budget"),
             ("tier call, timed (the feed)", "tier call, untimed client"),
             ("stream of 20 chunks, timed (the feed)", "stream of 20 chunks, untimed client")]
    assert router.decide(requests["tight"]).latency_from == "fast"
    assert router.decide(requests["cascade"]).tier == "advanced"
    assert router.decide(requests["budget"]).latency_from is None
    return todo, pairs


def report(times: dict[str, list[float]], pairs: list[tuple[str, str]], meta: dict[str, str]) -> str:
    med = {name: statistics.median(values) for name, values in times.items()}
    lines = [START, "", "## The latency check's decision-time cost", "",
             f"Generated by `python benchmarks/latency_check.py` on {meta['date']}, in {meta['wall']}: {meta['rounds']} "
             f"rounds of {meta['calls']} calls per variant, every variant in every round, in one process "
             f"(x86_64, {os.cpu_count()} cores, load average {meta['load']}; Python {platform.python_version()}). "
             "Decisions through `StepRouter.decide` (the planner, the latency check, no pin), each tier's "
             "latency window full (64 observations: fast 400 ms, standard 300 ms, advanced 500 ms). "
             "The feed: a tier client that answers at once, with and without the timing around it.", "",
             "| variant | median per call | against | its median | ratio | added per call |",
             "|---|---:|---|---:|---:|---:|"]
    for name, base in pairs:
        ratios = [a / b for a, b in zip(times[name], times[base], strict=True)]
        lines.append(f"| {name} | {med[name] * 1e6:.2f} µs | {base} | {med[base] * 1e6:.2f} µs | "
                     f"{statistics.median(ratios):.2f}x | {(med[name] - med[base]) * 1e6:+.2f} µs |")
    lines += ["", "Ratio: the median of the rounds' ratios (each round's two figures taken back to back). "
              "`max_latency_ms` 1000 fits `fast` (400 ms); 100 moves the call to the fastest tier (no tier "
              "fits); the cascade over fast → advanced with `max_latency_ms` 800 skips `fast` "
              "(400 + 500 ms > 800). A step with no budget pays one metadata lookup. The feed times every "
              "tier call (three clock reads, one window insert per deployment and per tier, two for a "
              "stream: its first chunk and its end); against a client that does nothing its ratio is large, "
              "against a real call (a LiteLLM `mock_response` call takes about 4 ms here, see the table "
              "above) it is the added µs that count.", "", END, ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, to check the script")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()[0]
    todo, pairs = variants()
    rounds, calls = (5, 200) if args.quick else (40, 2000)
    times = interleaved(todo, rounds, calls)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall": f"{time.perf_counter() - started:.0f} s",
            "rounds": str(rounds), "calls": str(calls),
            "load": f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"}
    section = report(times, pairs, meta)
    text = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    if START in text and END in text:
        text = text[:text.index(START)] + section.rstrip("\n") + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    args.out.write_text(text, encoding="utf-8")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
