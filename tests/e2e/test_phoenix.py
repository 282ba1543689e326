"""Per-step cost in a real tracing backend: Arize Phoenix on 127.0.0.1, fed over OTLP/HTTP.

Phoenix runs from its own virtual environment (``make test`` creates ``.venv-phoenix``), with
its gRPC receiver disabled; the test checks with ``ss`` that it listens on loopback only, runs
the quickstart on the local models with ``--otlp``, and reads the spans back through Phoenix's
GraphQL API. Phoenix prices the ``chat`` spans itself from the model name and token counts,
at the prices the quickstart registers through that API (:func:`steproute.phoenix.register_prices`). A
langgraph-supervisor run on llmock, with no application span, shows in Phoenix as one trace,
and so does the same run under OpenInference's LangChain instrumentation.

``STEPROUTE_PHOENIX_SCREENSHOT=docs/images/phoenix-one-trace.png`` also saves headless
Chromium's picture of the supervisor run's trace in Phoenix, and
``STEPROUTE_PHOENIX_ROUTE_SCREENSHOT=docs/images/phoenix-route-spans.png`` the quickstart's.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import stop_process
from tests.integration.test_run_trace_supervisor import script, supervisor_graph

ROOT = Path(__file__).resolve().parents[2]
PRICES = {"smollm2-135m": (0.15, 0.60), "qwen2.5-coder-0.5b": (2.50, 10.00)}  # as in examples/steproute.yaml
SPANS = """{ projects { edges { node { id name spans(first: 200) { edges { node {
  id name spanKind parentId trace { traceId costSummary { total { cost } } }
  attributes costSummary { total { cost } } cumulativeCostDetailSummaryEntries { value { cost } } } } } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phoenix_python() -> str:
    python = os.environ.get("STEPROUTE_PHOENIX_PYTHON") or str(ROOT / ".venv-phoenix" / "bin" / "python")
    if not Path(python).exists():
        pytest.fail(f"Phoenix's virtual environment is missing ({python}): `make test` creates it")
    return python


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    port, grpc_port = _free_port(), _free_port()
    work = tmp_path_factory.mktemp("phoenix")
    env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(grpc_port),
           "PHOENIX_WORKING_DIR": str(work), "PHOENIX_TELEMETRY_ENABLED": "false",
           "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false"}
    log = open(work / "phoenix.log", "wb")
    proc = subprocess.Popen([_phoenix_python(), str(Path(__file__).with_name("phoenix_launch.py"))], env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (work / "phoenix.log").read_text()[-3000:]
            try:
                if httpx.post(f"{url}/graphql", json={"query": "{ projects { edges { node { name } } } }"},
                              timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Phoenix did not come up in 180 s"
            time.sleep(0.5)
        yield url, proc.pid, grpc_port
    finally:
        stop_process(proc)  # by PID
        log.close()


def test_phoenix_listens_on_loopback_only(phoenix):
    _, pid, grpc_port = phoenix
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours = [line for line in listening if f"pid={pid}," in line]
    assert ours, "Phoenix listens on nothing?"
    for line in ours:
        assert re.search(r"\s127\.0\.0\.1:\d+\s", line), f"listening beyond loopback: {line}"
    assert not [line for line in listening if f":{grpc_port} " in line], "the gRPC receiver is up"


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


def test_each_step_cost_shows_in_phoenix_and_adds_up(phoenix, quickstart):
    """No manual step: the quickstart registers its tiers' prices with Phoenix itself, sends its
    trace to its own project and prints the trace's link; the trace total Phoenix reads is
    steproute's."""
    url, _, _ = phoenix
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--otlp", url],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    printed_total = re.search(r"routed: (\$[0-9.]+)", out)
    assert printed_total, out
    link = re.search(r"trace: (\S+)", out)
    assert link, out

    deadline = time.monotonic() + 60
    while True:  # Phoenix ingests asynchronously
        projects = _graphql(url, SPANS)["projects"]["edges"]
        spans = [e["node"] for p in projects for e in p["node"]["spans"]["edges"]]
        runs = [s for s in spans if s["name"] == "quickstart run"]
        if runs and len([s for s in spans if s["trace"]["traceId"] == runs[0]["trace"]["traceId"]]) == 12:
            break
        assert time.monotonic() < deadline, [s["name"] for s in spans]
        time.sleep(1)
    (project,) = [p["node"]["name"] for p in projects if any(e["node"]["name"] == "quickstart run"
                                                            for e in p["node"]["spans"]["edges"])]
    assert project == "steproute-quickstart"  # not Phoenix's "default"
    assert link.group(1) == f"{url}/redirects/traces/{runs[0]['trace']['traceId']}"
    assert httpx.get(link.group(1), timeout=30).status_code == 200  # the UI's route to the trace
    trace_id = runs[0]["trace"]["traceId"]
    in_run = [s for s in spans if s["trace"]["traceId"] == trace_id]
    routes = {s["name"]: s for s in in_run if s["name"].startswith("route ")}
    chats = [s for s in in_run if s["name"].startswith("chat ")]
    assert set(routes) == {f"route {step}" for step in ("rewrite", "extract", "plan", "calculate", "answer")}
    # one chat per step, and the fast tier's rejected reading of the order (extract is a cascade)
    assert len(chats) == 6 and all(c["spanKind"] == "llm" for c in chats)
    total = 0.0
    for name, route in routes.items():
        ours = json.loads(route["attributes"])["steproute"]["step.cost"]["usd"]
        phoenix_cumulative = sum(e["value"]["cost"] or 0.0 for e in route["cumulativeCostDetailSummaryEntries"])
        assert ours > 0 and phoenix_cumulative == pytest.approx(ours, rel=1e-6), name  # Phoenix priced it the same
        assert route["spanKind"] == "chain"
        summary = json.loads(route["attributes"])["output"]["value"]  # what Phoenix shows first
        assert re.fullmatch(r"tier \w+ · \$0\.0*[1-9]\d(?: .*)?", summary), summary  # the cost, readable
        total += ours
    for chat in chats:
        attributes = json.loads(chat["attributes"])
        assert chat["costSummary"]["total"]["cost"] == pytest.approx(attributes["steproute"]["cost"]["usd"], rel=1e-6)
        assert attributes["gen_ai"]["usage"]["input_tokens"] > 0
        assert attributes["llm"]["model_name"] in {f"openai/{m}" for m in PRICES}
    assert runs[0]["trace"]["costSummary"]["total"]["cost"] == pytest.approx(total, rel=1e-6)
    # the run's total, as the quickstart printed it (two significant digits)
    assert printed_total.group(1) == quickstart.usd(runs[0]["trace"]["costSummary"]["total"]["cost"])
    shot = os.environ.get("STEPROUTE_PHOENIX_ROUTE_SCREENSHOT")
    if shot:
        (project_id,) = [p["node"]["id"] for p in _graphql(url, SPANS)["projects"]["edges"]
                         if any(e["node"]["trace"]["traceId"] == trace_id for e in p["node"]["spans"]["edges"])]
        # the picture opens the step `calculate` (tier fast): its summary, the first thing Phoenix shows of it
        selected = quote(routes["route calculate"]["id"], safe="")
        _screenshot(f"{url}/projects/{project_id}/traces/{trace_id}?selectedSpanNodeId={selected}", Path(shot))


PROJECT_SPANS = """query($name: String!) { projects(filter: {col: name, value: $name}) { edges { node { id name
  spans(first: 200) { edges { node { name spanKind parentId context { spanId traceId } attributes } } } } } } }"""


def _project_spans(url: str, project: str, routes: int) -> tuple[str, list[dict]]:
    """The project's spans, once ``routes`` route spans and the spans around them are in."""
    deadline = time.monotonic() + 60
    while True:  # Phoenix ingests asynchronously
        edges = _graphql(url, PROJECT_SPANS, {"name": project})["projects"]["edges"]
        spans = [e["node"] for p in edges for e in p["node"]["spans"]["edges"]]
        ids = {s["context"]["spanId"] for s in spans}
        if sum(s["name"].startswith("route ") for s in spans) >= routes and all(
                s["parentId"] is None or s["parentId"] in ids for s in spans):
            return edges[0]["node"]["id"], spans
        assert time.monotonic() < deadline, [s["name"] for s in spans]
        time.sleep(1)


def _export_to(url: str, project: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": project, "openinference.project.name": project}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
    return provider


def _run_supervisor(llmock, provider) -> None:
    graph = supervisor_graph(llmock, provider)
    script(llmock)
    graph.invoke({"messages": [_human("What is the weather in Paris?")]}, {"configurable": {"thread_id": "chat-8"}})


def _human(text: str):
    from langchain_core.messages import HumanMessage

    return HumanMessage(text)


def test_one_supervisor_run_is_one_trace_in_phoenix(phoenix, llmock):
    url, _, _ = phoenix
    provider = _export_to(url, "steproute-one-trace")
    _run_supervisor(llmock, provider)  # no application span: steproute makes the run's root
    provider.shutdown()
    project_id, spans = _project_spans(url, "steproute-one-trace", 4)
    assert len(spans) == 9  # the root, four route spans, four chat spans
    assert len({s["context"]["traceId"] for s in spans}) == 1  # ONE trace
    (root,) = [s for s in spans if s["parentId"] is None]
    assert root["name"] == "invoke_agent supervisor" and root["spanKind"] == "agent"
    assert json.loads(root["attributes"])["gen_ai"]["conversation"]["id"] == "chat-8"
    routes = [s for s in spans if s["name"].startswith("route ")]
    assert sorted(r["name"] for r in routes) == ["route supervisor"] * 2 + ["route weather_expert"] * 2
    assert all(r["parentId"] == root["context"]["spanId"] for r in routes)
    shot = os.environ.get("STEPROUTE_PHOENIX_SCREENSHOT")
    if shot:
        _screenshot(f"{url}/projects/{project_id}/traces/{root['context']['traceId']}", Path(shot))


def test_under_openinference_the_route_spans_join_its_trace_in_phoenix(phoenix, llmock):
    from openinference.instrumentation.langchain import LangChainInstrumentor

    url, _, _ = phoenix
    provider = _export_to(url, "steproute-openinference")
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        _run_supervisor(llmock, provider)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    _, spans = _project_spans(url, "steproute-openinference", 4)
    assert len({s["context"]["traceId"] for s in spans}) == 1  # ONE trace: OpenInference's, with ours in it
    by_id = {s["context"]["spanId"]: s for s in spans}
    routes = [s for s in spans if s["name"].startswith("route ")]
    assert len(routes) == 4 and not [s for s in spans if s["name"].startswith("invoke_agent ")]
    for route in routes:  # under OpenInference's span of the chat model's run
        assert by_id[route["parentId"]]["name"] == "RoutedChatModel" and by_id[route["parentId"]]["spanKind"] == "llm"


def _screenshot(page: str, out: Path) -> None:
    """Headless Chromium's picture of a Phoenix page (the UI renders client-side: give it time)."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (make test installs it)"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1600,900", "--virtual-time-budget=15000", f"--screenshot={out.resolve()}", page],
                   capture_output=True, timeout=120, check=True)
    assert out.stat().st_size > 10_000
