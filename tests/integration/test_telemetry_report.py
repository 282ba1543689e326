"""Telemetry and the report over the real path: a LangGraph graph routed over HTTP to llmock,
spans in the OpenTelemetry SDK, the decision log on disk, the HTML page in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from steproute import RouterConfig, StepRouter
from steproute._demo import STEPS, build_graph
from steproute.decision_log import read_log
from steproute.report import summarise, write_html

pytestmark = pytest.mark.integration
MODELS = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini", "advanced": "openai/gpt-4o"}


def _routed_graph_run(llmock, tmp_path, runs=3):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tiers = {t: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "k"}]} for t, m in MODELS.items()}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast", baseline="advanced",
                                     steps={"plan": "advanced", "use_tool": "standard", "answer": "standard"}),
                        tracer_provider=provider, decision_log=tmp_path / "decisions.jsonl")
    graph = build_graph(router)
    tracer = provider.get_tracer("app")
    for i in range(runs):
        with tracer.start_as_current_span("agent run"):
            graph.invoke({"question": f"Umbrella in Paris on day {i}?"}, {"configurable": {"thread_id": f"t{i}"}})
    router.decision_log.close()
    return exporter.get_finished_spans(), read_log(tmp_path / "decisions.jsonl")


def test_graph_run_spans_and_log_agree(llmock, tmp_path):
    spans, contents = _routed_graph_run(llmock, tmp_path)
    routes = [s for s in spans if s.name.startswith("route ")]
    chats = [s for s in spans if s.name.startswith("chat ")]
    runs = {s.context.span_id: s for s in spans if s.name == "agent run"}
    assert len(routes) == len(chats) == len(contents.decisions) == 3 * len(STEPS)
    assert all(r.parent.span_id in runs for r in routes)  # nested under the application's span
    by_id = {r.context.span_id: r for r in routes}
    for chat in chats:
        route = by_id[chat.parent.span_id]
        assert route.attributes["steproute.tier"] in MODELS and chat.attributes["gen_ai.request.model"] == MODELS[
            route.attributes["steproute.tier"]]
        assert chat.attributes["gen_ai.response.model"]  # what llmock reported
        assert chat.attributes["steproute.cost.usd"] == pytest.approx(route.attributes["steproute.step.cost.usd"])
    assert {r.attributes["langgraph.node"] for r in routes} == set(STEPS)
    assert {r.attributes["gen_ai.conversation.id"] for r in routes} == {"t0", "t1", "t2"}
    # the log and the spans tell the same story, call by call
    logged = {d["id"]: d for d in contents.decisions}
    for route in routes:
        entry = logged[route.attributes["steproute.decision.id"]]
        assert entry["trace_id"] == format(route.context.trace_id, "032x")
        assert entry["cost_usd"] == pytest.approx(route.attributes["steproute.step.cost.usd"])
        assert entry["tier"] == route.attributes["steproute.tier"]
    # per-step costs add up to each run's total
    for run in runs.values():
        in_run = [r for r in routes if r.parent.span_id == run.context.span_id]
        assert len(in_run) == len(STEPS)
    total = summarise(contents)[-1]
    assert total.cost_usd == pytest.approx(sum(r.attributes["steproute.step.cost.usd"] for r in routes))
    assert Counter(d["tier"] for d in contents.decisions) == {"fast": 6, "advanced": 3, "standard": 6}


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return path


def _load(page: Path, shot: Path, profile: Path) -> str:
    """Open the page in headless Chromium, save a screenshot, return its log (console messages)."""
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=900,1400",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line]


def test_report_page_renders_in_chromium_without_console_errors(llmock, tmp_path):
    _, contents = _routed_graph_run(llmock, tmp_path)
    page = write_html(contents, tmp_path / "report.html")
    log = _load(page, tmp_path / "report.png", tmp_path / "profile")
    assert _console_errors(log) == []
    image = Image.open(tmp_path / "report.png").convert("RGB")
    colours = Counter(image.get_flattened_data())
    # the charts' bar colours cover real area (routed, baseline, saved / tiers)
    for colour in ((0x4C, 0x78, 0xA8), (0xF5, 0x85, 0x18), (0x54, 0xA2, 0x4B)):
        assert colours[colour] > 2000, colour
    # the detector is live: a page that logs an error is caught
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>console.error('chart failed');</script></body></html>")
    assert any("chart failed" in line for line in _console_errors(_load(broken, tmp_path / "b.png", tmp_path / "p2")))


def test_in_tier_fallback_over_http_shows_each_attempt(llmock):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    deployments = [{"model": m, "api_base": llmock.base_url(), "api_key": "k"} for m in ("openai/gpt-4o", "openai/gpt-4.1")]
    router = StepRouter(RouterConfig(tiers={"strong": {"models": deployments}}, default="strong"),
                        tracer_provider=provider)
    llmock.fail(503, times=None, model="gpt-4o")  # the first deployment is down
    message = router.chat_model(step="answer").invoke("hello")
    assert message.response_metadata["model_name"] == "openai/gpt-4.1"
    chats = sorted((s for s in exporter.get_finished_spans() if s.name.startswith("chat ")), key=lambda s: s.start_time)
    assert [(s.name, s.attributes.get("error.type")) for s in chats] == [
        ("chat openai/gpt-4o", "ServiceUnavailableError"), ("chat openai/gpt-4.1", None)]
    assert chats[0].end_time <= chats[1].start_time
