"""Per-step overhead in a LangGraph graph: steproute's routed model against ChatLiteLLM, in one run.

The same 5-node graph (rewrite → extract → plan → tool_use → answer), every node one chat-model
call with LiteLLM ``mock_response`` (no network), runs with: ``ChatLiteLLM`` in every node (what
users have without steproute), ``ChatLiteLLMRouter`` over a ``litellm.Router`` (the LangChain way
to get LiteLLM's fallbacks), and steproute's ``RoutedChatModel`` with the ``fixed``, ``rules``
and ``classifier`` policies — OpenTelemetry SDK on (in-memory span exporter and metric reader),
conversation pins on (each run is a thread). Variants are interleaved round by round; each
figure is a median, and the ratio is to ChatLiteLLM in the same rounds.

    python benchmarks/graph_overhead.py [--rounds 12] [--runs 20]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, TypedDict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _timing import interleaved
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import RouterConfig, StepRouter

STEPS = ("rewrite", "extract", "plan", "tool_use", "answer")
PROMPTS = {
    "rewrite": "Rewrite as a search query: which notebook is cheapest for a student?",
    "extract": "Extract the product and quantity from: 'I want 2 notebooks and a pen'.",
    "plan": "Plan the steps to compare three notebooks by price and weight.",
    "tool_use": "Call the price tool for notebook A and notebook B.",
    "answer": "Write the final answer: notebook B is cheapest at 19.80 EUR.",
}
MOCK = {"mock_response": "ok", "api_key": "sk-bench"}


class State(TypedDict, total=False):
    done: int


def build_graph(model_for_step) -> Any:
    g = StateGraph(State)
    for name in STEPS:
        model = model_for_step(name)

        def node(state: State, model=model, prompt=PROMPTS[name]) -> State:
            model.invoke([HumanMessage(prompt)])
            return {"done": state.get("done", 0) + 1}

        g.add_node(name, node)
    for a, b in itertools.pairwise((START, *STEPS, END)):
        g.add_edge(a, b)
    return g.compile()


def router(policy: dict[str, Any], tracer: TracerProvider, meter: MeterProvider) -> StepRouter:
    config = RouterConfig(
        tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", **MOCK}]},
               "strong": {"models": [{"model": "openai/gpt-4o", **MOCK}]}},
        default=policy, pinning={"mode": "sticky"})
    return StepRouter(config, tracer_provider=tracer, meter_provider=meter)


def classifier_artefact(tmp: Path) -> Path:
    """A classifier trained on 2,000 MMLU development rows (the policy's cost does not depend on its accuracy)."""
    from steproute.evaluation import load_mmlu
    from steproute.evaluation._routellm import GPT4, MIXTRAL
    from steproute.evaluation._train import train_classifier
    from steproute.policies._artefact import save_artefact

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm" / "routellm" / "evals" / "mmlu"
    path = tmp / "classifier.steproute"
    save_artefact(train_classifier(load_mmlu(data).rows[::5], (MIXTRAL, GPT4), folds=0), path)
    return path


def variants(tmp: Path) -> tuple[dict[str, Any], InMemorySpanExporter]:
    import litellm
    from langchain_litellm import ChatLiteLLM, ChatLiteLLMRouter

    exporter = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(exporter))
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
    plain = ChatLiteLLM(model="openai/gpt-4o-mini", api_key="sk-bench", model_kwargs={"mock_response": "ok"})
    lite_router = litellm.Router(model_list=[{"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", **MOCK}}])
    via_router = ChatLiteLLMRouter(router=lite_router, model_name="fast")
    rules = {"policy": "rules", "rules": [{"tier": "strong", "when": {"keywords": ["plan", "final"]}},
                                          {"tier": "strong", "when": {"min_input_tokens": 500}}], "fallback": "fast"}
    routed = {
        "steproute fixed": router({"policy": "fixed", "tier": "fast"}, tracer, meter),
        "steproute rules": router(rules, tracer, meter),
        "steproute classifier": router({"policy": "classifier", "artefact": str(classifier_artefact(tmp))}, tracer, meter),
    }
    graphs = {"ChatLiteLLM": build_graph(lambda _: plain), "ChatLiteLLMRouter": build_graph(lambda _: via_router)}
    for name, r in routed.items():
        model = r.chat_model()
        graphs[name] = build_graph(lambda _, model=model: model)
    counter = itertools.count()

    def run(graph: Any) -> Any:
        return lambda: graph.invoke({}, config={"configurable": {"thread_id": f"t{next(counter)}"}})

    return {name: run(g) for name, g in graphs.items()}, exporter


def measure(rounds: int, runs: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        todo, exporter = variants(Path(tmp))
        return interleaved(todo, rounds, runs, warmup=5, after_round=exporter.clear)


def table(times: dict[str, list[float]]) -> list[str]:
    base = statistics.median(times["ChatLiteLLM"])
    lines = ["| variant | per graph run (5 steps) | per step | added per step | ratio to ChatLiteLLM |", "|---|---|---|---|---|"]
    for name, values in times.items():
        m = statistics.median(values)
        lines.append(f"| {name} | {m * 1e3:.2f} ms | {m / 5 * 1e3:.2f} ms | {(m - base) / 5 * 1e6:+.0f} µs | {m / base:.2f}x |")
    return lines


def main() -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    times = measure(args.rounds, args.runs)
    print("\n".join(table(times)))
    return times


if __name__ == "__main__":
    sys.exit(main() and 0)
