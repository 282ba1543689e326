"""Telemetry and the report over the real path: a LangGraph graph routed over HTTP to llmock,
spans in the OpenTelemetry SDK, the decision log on disk, the HTML page in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from steproute import RouterConfig, StepRouter
from steproute._demo import STEPS, build_graph
from steproute._report_html import tier_colours
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
    return _load_at(page, shot, profile, 900)


def _load_at(page: Path, shot: Path, profile: Path, width: int) -> str:
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", f"--window-size={width},2000",
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
    # each tier's colour (cheap to strong) covers real area of the charts
    for tier, colour in tier_colours(["fast", "standard", "advanced"]).items():
        assert colours[_rgb(colour)] > 2000, tier
    # the detector is live: a page that logs an error is caught
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>console.error('chart failed');</script></body></html>")
    assert any("chart failed" in line for line in _console_errors(_load(broken, tmp_path / "b.png", tmp_path / "p2")))


def _rgb(colour: str) -> tuple[int, int, int]:
    if colour.startswith("#"):
        return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
    r, g, b = (int(v) for v in re.findall(r"[0-9]+", colour)[:3])
    return r, g, b


_PROBE = """<script>
const box = e => { const b = e.getBoundingClientRect(); return {left: b.left, width: b.width}; };
const tiers = {};
document.querySelectorAll('[data-tier]').forEach(e => {
  const t = e.getAttribute('data-tier'); (tiers[t] = tiers[t] || []).push(getComputedStyle(e).fill); });
const charts = [...document.querySelectorAll('svg.chart')].map(s => ({name: s.dataset.chart, x: s.dataset.x,
  y: s.dataset.y, ...box(s), yticks: [...s.querySelectorAll('.ytick')].map(t => t.textContent),
  xticks: [...s.querySelectorAll('.xtick')].map(t => t.textContent)}));
const out = document.createElement('pre');
out.id = 'probe';
out.textContent = JSON.stringify({viewport: window.innerWidth, main: box(document.querySelector('main')),
  headline: box(document.querySelector('.headline')), headline_text: document.querySelector('.headline').textContent,
  tiers, charts});
document.body.appendChild(out);
</script>"""


def _measure(page: Path, tmp_path: Path, width: int) -> dict:
    """Lay the page out in headless Chromium at ``width`` and read sizes, colours and axis labels
    back from the rendered DOM (a copy of the page with a probe script; the page itself has none)."""
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'pp'}",
         f"--window-size={width},1000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stdout[-2000:]
    return json.loads(html.unescape(found.group(1)))


def test_report_page_uses_the_width_one_colour_per_tier_dollar_and_date_axes(llmock, tmp_path):
    """The page of a real routed run (examples/report_page.py: a cascade, feedback, shadow results,
    two tenants over llmock) in headless Chromium: read back from the DOM and the screenshot."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    try:
        import report_page
    finally:
        sys.path.pop(0)
    log = report_page.write_log(llmock.base_url(), llmock.add, tmp_path / "decisions.jsonl", questions=18)
    page = write_html(read_log(log), tmp_path / "report.html")
    width = 1400
    dom = _measure(page, tmp_path, width)
    assert dom["viewport"] == width
    # the content spans the window (not a 720-pixel column), and the charts sit two abreast
    assert dom["main"]["width"] >= 0.9 * width and dom["headline"]["width"] >= 0.9 * width
    charts = dom["charts"]
    assert {c["name"] for c in charts} == {"cost", "quality", "mix", "cost-over-time", "escalation", "tenant-cost"}
    assert all(c["width"] >= 0.4 * width for c in charts)
    assert any(c["left"] >= width / 2 for c in charts) and any(c["left"] < width / 4 for c in charts)
    # one colour per tier in every chart and legend, distinct tiers distinct, darker from cheap to strong
    fills = {tier: set(values) for tier, values in dom["tiers"].items()}
    assert set(fills) == {"fast", "standard", "advanced"}
    assert all(len(f) == 1 for f in fills.values()), fills
    colour = {tier: _rgb(next(iter(f))) for tier, f in fills.items()}
    assert len(set(colour.values())) == 3
    light = [sum(colour[t]) for t in ("fast", "standard", "advanced")]
    assert light == sorted(light, reverse=True)
    # cost axes in $, time axes with dates
    for chart in charts:
        if chart["y"] == "usd":
            assert chart["yticks"] and all(t.startswith("$") for t in chart["yticks"]), chart
        if chart["x"] == "time":
            assert chart["xticks"] and all(re.match(r"\d{4}-\d{2}-\d{2}\d{2}:\d{2}", t) for t in chart["xticks"]), chart
    text = " ".join(dom["headline_text"].split())
    assert "saved against the baseline tier" in text and "quality against the baseline tier" in text
    assert re.search(r"quality against the baseline tier ?[+-]\d\.\d\d", text), text
    # the screenshot, read back: every tier's colour drawn on both halves of the window
    shot = tmp_path / "report.png"
    assert _console_errors(_load_at(page, shot, tmp_path / "profile", width)) == []
    image = Image.open(shot).convert("RGB")
    assert image.width == width
    pixels = image.load()
    for tier, rgb in colour.items():
        xs = [x for y in range(0, image.height, 2) for x in range(0, width, 2) if pixels[x, y] == rgb]
        assert len(xs) > 300, tier
        assert min(xs) < width / 2 < max(xs), tier
    # content reaches across the window: non-white pixels near both edges
    ink = [x for y in range(0, image.height, 4) for x in range(0, width, 4) if sum(pixels[x, y]) < 600]
    assert min(ink) < 0.05 * width and max(ink) > 0.95 * width


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
