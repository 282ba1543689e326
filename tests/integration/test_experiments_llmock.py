"""An A/B experiment over the real path: a LangGraph graph whose routed chat model calls llmock over
HTTP, threads assigned to arms that pin different tiers, the log read back by `steproute report --by arm`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import RouterConfig, StepRouter
from steproute.decision_log import read_log
from steproute.experiments import Experiment

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MODELS = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini", "advanced": "openai/gpt-4o"}
ARM_TIER = {"control": "standard", "cheap": "fast", "strong": "advanced"}


class State(TypedDict, total=False):
    question: str
    draft: str
    answer: str


def test_threads_follow_their_arms_tier_over_http_and_the_report_shows_the_arms(llmock, tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tiers = {t: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "k"}]} for t, m in MODELS.items()}
    config = RouterConfig(tiers=tiers, default="fast", steps={"draft": "standard", "answer": "standard"},
                          experiment={"name": "answer-tier", "steps": ["answer", "draft"],
                                      "arms": {"control": None, "cheap": "fast", "strong": "advanced"},
                                      "split": {"control": 0.4, "cheap": 0.3, "strong": 0.3}})
    log = tmp_path / "decisions.jsonl"
    router = StepRouter(config, decision_log=log, tracer_provider=provider)
    llm = router.chat_model()

    def draft(state: State) -> State:
        return {"draft": llm.invoke([HumanMessage(state["question"])]).text}

    def answer(state: State) -> State:
        first = llm.invoke([HumanMessage(state["draft"])]).text  # two calls in one node: one thread, one arm
        return {"answer": llm.invoke([HumanMessage(first or "again")]).text}

    builder = StateGraph(State)
    builder.add_node("draft", draft)
    builder.add_node("answer", answer)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "answer")
    builder.add_edge("answer", END)
    graph = builder.compile()
    threads = [f"conversation-{i}" for i in range(24)]
    for thread in threads:
        out = graph.invoke({"question": f"Question of {thread}?"}, {"configurable": {"thread_id": thread}})
        assert out["answer"]
    router.decision_log.close()

    experiment = Experiment.from_config(config.experiment)
    decisions = read_log(log).decisions
    assert len(decisions) == 3 * len(threads)
    seen = defaultdict(set)
    for d in decisions:
        arm = experiment.assign(d["thread"]).arm
        assert (d["experiment"], d["arm"], d["assigned"]) == ("answer-tier", arm, True)
        seen[d["thread"]].add((d["arm"], d["tier"], d["model"]))
    for thread, calls in seen.items():  # every call of a thread: its arm's tier, at both steps
        (only,) = calls
        assert only[1:] == (ARM_TIER[only[0]], MODELS[ARM_TIER[only[0]]]), thread
    arms_used = {next(iter(c))[0] for c in seen.values()}
    assert arms_used == set(ARM_TIER)
    # what llmock was asked for: one request per call, each thread's model
    assert len(llmock.requests) == len(decisions)
    routes = [s for s in exporter.get_finished_spans() if s.name.startswith("route ")]
    assert {(s.attributes["gen_ai.conversation.id"], s.attributes["steproute.experiment.arm"]) for s in routes} == {
        (t, experiment.assign(t).arm) for t in threads}

    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    run = subprocess.run([sys.executable, "-m", "steproute", "report", str(log), "--by", "arm"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "experiment 'answer-tier' (unit: thread; control: 'control')"
    calls = defaultdict(int)
    for d in decisions:
        calls[(d["arm"], d["step"])] += 1
    rows = [line.split()[:3] for line in lines if line.split()[:1] and line.split()[0] in ARM_TIER]
    assert {(a, s): int(n) for a, s, n in rows} == dict(calls)
    assert [r[0] for r in rows][:2] == ["control", "control"]  # the control first
    as_json = subprocess.run([sys.executable, "-m", "steproute", "report", str(log), "--by", "arm", "--json"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    data = json.loads(as_json.stdout)
    (exp,) = data["experiments"]
    assert {(r["arm"], r["step"]): r["calls"] for r in exp["rows"]} == dict(calls)
    assert sum(exp["units"].values()) == len(threads)
    for r in exp["rows"]:
        assert r["tiers"] == {ARM_TIER[r["arm"]]: 1.0}
