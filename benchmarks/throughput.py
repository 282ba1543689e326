"""Throughput under concurrency: 200 graph runs at once over real HTTP, routed and unrouted.

llmock (an OpenAI-compatible server, started as its own process on 127.0.0.1 with 50 ms
latency per request, so it does not share this process's interpreter lock) answers every
call. The 5-node graph of ``graph_overhead.py`` runs 200 times concurrently
(``asyncio.gather`` of ``ainvoke``), once with ``ChatLiteLLM`` in every node and once with
steproute's routed model (``rules`` policy, OpenTelemetry SDK on, pins on), alternating for
several rounds. Reported: completed graph runs per second, and the ratio routed / unrouted.

    python benchmarks/throughput.py [--concurrency 200] [--rounds 3] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


from graph_overhead import build_graph
from load import llmock_process
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import RouterConfig, StepRouter


async def burst(graph: Any, n: int, counter: Any) -> float:
    start = time.perf_counter()
    results = await asyncio.gather(*(graph.ainvoke({}, config={"configurable": {"thread_id": f"t{next(counter)}"}})
                                     for _ in range(n)))
    elapsed = time.perf_counter() - start
    assert all(r["done"] == 5 for r in results)
    return n / elapsed


def run(concurrency: int = 200, rounds: int = 3, latency_ms: int = 50) -> dict[str, list[float]]:
    """Graph runs per second of each variant, one figure per round."""
    from langchain_litellm import ChatLiteLLM

    with llmock_process(latency_ms) as base:
        plain = ChatLiteLLM(model="openai/gpt-4o-mini", api_base=base, api_key="k")
        exporter = InMemorySpanExporter()
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(exporter))
        router = StepRouter(RouterConfig(
            tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_base": base, "api_key": "k"}]},
                   "strong": {"models": [{"model": "openai/gpt-4o", "api_base": base, "api_key": "k"}]}},
            default={"policy": "rules", "rules": [{"tier": "strong", "when": {"keywords": ["plan", "final"]}}],
                     "fallback": "fast"}),
            tracer_provider=tracer, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))
        graphs = {"ChatLiteLLM": build_graph(lambda _: plain), "steproute rules": build_graph(lambda _: router.chat_model())}
        counter = itertools.count()
        rates: dict[str, list[float]] = {name: [] for name in graphs}

        async def rounds_of_bursts() -> None:
            for graph in graphs.values():  # warm-up: connections, imports
                await burst(graph, 10, counter)
            for _ in range(rounds):
                for name, graph in graphs.items():
                    rates[name].append(await burst(graph, concurrency, counter))
                    exporter.clear()

        asyncio.run(rounds_of_bursts())
    return rates


def main() -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    rates = run(args.concurrency, args.rounds, args.latency_ms)
    for name, values in rates.items():
        print(f"{name:18} {statistics.median(values):7.1f} graph runs/s  (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    ratio = statistics.median(rates["steproute rules"]) / statistics.median(rates["ChatLiteLLM"])
    print(f"routed / unrouted: {ratio:.2f}x")
    return rates


if __name__ == "__main__":
    main()
    sys.exit(0)
