"""Per-step cost in a real tracing backend: Arize Phoenix on 127.0.0.1, fed over OTLP/HTTP.

Phoenix runs from its own virtual environment (``make test`` creates ``.venv-phoenix``), with
its gRPC receiver disabled; the test checks with ``ss`` that it listens on loopback only, runs
the quickstart on the local models with ``--otlp``, and reads the spans back through Phoenix's
GraphQL API. Phoenix prices the ``chat`` spans itself from the model name and token counts,
after the test registers the local models' (illustrative) prices through that API.
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

import httpx
import pytest

from tests.conftest import stop_process

ROOT = Path(__file__).resolve().parents[2]
PRICES = {"smollm2-135m": (0.15, 0.60), "qwen2.5-coder-0.5b": (2.50, 10.00)}  # as in examples/steproute.yaml
SPANS = """{ projects { edges { node { name spans(first: 200) { edges { node {
  id name spanKind parentId trace { traceId costSummary { total { cost } } }
  attributes costSummary { total { cost } } cumulativeCostDetailSummaryEntries { value { cost } } } } } } } } }"""
CREATE_MODEL = "mutation($input: CreateModelMutationInput!) { createModel(input: $input) { model { id } } }"


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


def test_each_step_cost_shows_in_phoenix_and_adds_up(phoenix):
    url, _, _ = phoenix
    for name, (per_m_in, per_m_out) in PRICES.items():  # local models have no list price: register ours
        _graphql(url, CREATE_MODEL, {"input": {
            "name": name, "namePattern": f"^{re.escape(name)}$",
            "costs": [{"tokenType": "input", "costPerMillionTokens": per_m_in, "kind": "PROMPT"},
                      {"tokenType": "output", "costPerMillionTokens": per_m_out, "kind": "COMPLETION"}]}})
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--otlp", url],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    printed_total = float(re.search(r"routed: \$([0-9.]+)", out).group(1))

    deadline = time.monotonic() + 60
    while True:  # Phoenix ingests asynchronously
        spans = [e["node"] for p in _graphql(url, SPANS)["projects"]["edges"] for e in p["node"]["spans"]["edges"]]
        runs = [s for s in spans if s["name"] == "quickstart run"]
        if runs and len([s for s in spans if s["trace"]["traceId"] == runs[0]["trace"]["traceId"]]) == 11:
            break
        assert time.monotonic() < deadline, [s["name"] for s in spans]
        time.sleep(1)
    trace_id = runs[0]["trace"]["traceId"]
    in_run = [s for s in spans if s["trace"]["traceId"] == trace_id]
    routes = {s["name"]: s for s in in_run if s["name"].startswith("route ")}
    chats = [s for s in in_run if s["name"].startswith("chat ")]
    assert set(routes) == {f"route {step}" for step in ("rewrite", "extract", "plan", "calculate", "answer")}
    assert len(chats) == 5 and all(c["spanKind"] == "llm" for c in chats)
    total = 0.0
    for name, route in routes.items():
        ours = json.loads(route["attributes"])["steproute"]["step.cost"]["usd"]
        phoenix_cumulative = sum(e["value"]["cost"] or 0.0 for e in route["cumulativeCostDetailSummaryEntries"])
        assert ours > 0 and phoenix_cumulative == pytest.approx(ours, rel=1e-6), name  # Phoenix priced it the same
        assert route["spanKind"] == "chain"
        total += ours
    for chat in chats:
        attributes = json.loads(chat["attributes"])
        assert chat["costSummary"]["total"]["cost"] == pytest.approx(attributes["steproute"]["cost"]["usd"], rel=1e-6)
        assert attributes["gen_ai"]["usage"]["input_tokens"] > 0 and attributes["llm"]["model_name"] in PRICES
    assert runs[0]["trace"]["costSummary"]["total"]["cost"] == pytest.approx(total, rel=1e-6)
    assert total == pytest.approx(printed_total, abs=1e-7)  # the run's total, as the quickstart printed it
