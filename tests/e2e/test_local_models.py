"""A real routed agent on two real local models (llama.cpp on 127.0.0.1), no API key."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steproute import RouterConfig, StepRouter, step
from steproute._litellm import litellm
from steproute.errors import LocalModelError
from steproute.local import LocalServer, LocalServers

FAST, STRONG = "openai/smollm2-135m", "openai/qwen2.5-coder-0.5b"
EXPECTED = {"rewrite": ("fast", FAST), "extract": ("strong", STRONG), "plan": ("strong", STRONG),
            "calculate": ("fast", FAST), "answer": ("strong", STRONG)}
TOTAL = f"{3 * 4.50 + 2 * 1.20 + 3.90:.2f}"  # the customer's order with shipping: "19.80"


def test_quickstart_routes_each_step_to_its_local_model_and_gets_the_total_right(local_servers, quickstart, monkeypatch):
    for name, value in local_servers.env().items():
        monkeypatch.setenv(name, value)
    streamed: list[tuple[str, int, str]] = []

    def on_step(name, state, calls):  # what `make demo` prints as each step finishes
        streamed.append((name, len(tracker_calls()), quickstart.step_line(name, state, calls)))

    router = quickstart.load_router("local")
    trackers = []
    original = quickstart.StepCostTracker

    class Tracker(original):  # the run's own tracker, to count the calls made when each line prints
        def __init__(self):
            super().__init__()
            trackers.append(self)

    def tracker_calls():
        return trackers[-1].calls

    monkeypatch.setattr(quickstart, "StepCostTracker", Tracker)
    state, tracker = quickstart.run(router, on_step=on_step)
    # each line printed when its own step had answered and the next had not started
    assert [(name, calls) for name, calls, _ in streamed] == [(s, i + 1) for i, s in enumerate(EXPECTED)]
    assert [(c.step, (c.tier, c.model)) for c in tracker.calls] == list(EXPECTED.items())
    for call in tracker.calls:
        assert call.input_tokens > 0 and call.output_tokens > 0, call
        assert call.logprobs > 0, f"{call.step}: no logprobs came back"
        assert call.latency_s > 0 and call.cost_usd > 0
        if call.tier == "fast":
            assert call.cost_usd < call.baseline_cost_usd
        elif call.step == "extract":  # the cascade pays for the fast tier's rejected reading too
            assert call.cost_usd > call.baseline_cost_usd
            assert "escalated fast → strong" in call.reason and "logprob below threshold" in call.reason, call.reason
        else:
            assert call.cost_usd == pytest.approx(call.baseline_cost_usd)
    assert sum(c.cost_usd for c in tracker.calls) == pytest.approx(tracker.total_cost_usd)
    assert tracker.total_cost_usd < tracker.total_baseline_cost_usd
    # The workload has one right answer: 3 notebooks at 4.50 + 2 pens at 1.20 + 3.90 shipping =
    # 19.80 EUR (README: the plan once tripled the fee and the run answered 27.60). Both models run
    # at temperature 0; the order read by the cascade, the plan's expression checked against it,
    # the calculator's result and the reply are all checked against the known total.
    assert state["order"] == "3 x notebook, 2 x pen", state["order"]
    assert quickstart.calculator.invoke({"expression": state["expression"]}) == TOTAL, state
    assert state["result"] == TOTAL, state
    assert TOTAL in state["answer"], state["answer"]
    right, line = quickstart.verdict(state, quickstart.shop_total(quickstart.KNOWN_ORDERS[quickstart.QUESTION]))
    assert right is True and line == f"answer: {TOTAL} EUR ✓ matches the order's known total"
    # a wrong total would be called wrong
    assert quickstart.verdict({**state, "result": "27.60"}, 19.80) == (
        False, "answer: 27.60 EUR ✗ WRONG: the order's known total is 19.80 EUR")
    # the bill: a why column with each decision's reason, money in one readable format
    bill = quickstart.bill(tracker).splitlines()
    assert bill[0].split()[-1] == "why"
    assert "escalated fast → strong" in next(row for row in bill if row.startswith("extract"))
    assert all("fixed tier" in row for row in bill if row.split()[0] in ("rewrite", "plan", "calculate", "answer"))
    assert all(a == quickstart.usd(float(a[1:])) for a in re.findall(r"\$[0-9.]+", "\n".join(bill)))


def test_logprobs_come_back_through_litellm(local_servers):
    response = litellm().completion(
        model=FAST, api_base=local_servers["fast"].base_url, api_key="local",
        messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    tokens = response.choices[0].logprobs.content
    # one entry per token, except that llama.cpp joins the byte tokens of one multi-byte character
    assert 0 < len(tokens) <= response.usage.completion_tokens
    assert "".join(t.token for t in tokens) == response.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in tokens)
    assert response.model.endswith("smollm2-135m")


def test_small_models_make_tool_calls_through_json_schema(local_servers):
    router = StepRouter(RouterConfig(tiers=local_servers.tiers_config(), default="fast"))

    def multiply(a: float, b: float) -> float:
        """Multiply two numbers."""
        return a * b

    for tier in ("fast", "strong"):
        llm = router.chat_model(step=tier, max_tokens=48, temperature=0)
        message = llm.bind_tools([multiply], tool_choice="required").invoke(
            "What is 6 times 7?", config={"metadata": step(tier, tier=tier)})
        (call,) = message.tool_calls
        assert call["name"] == "multiply" and set(call["args"]) == {"a", "b"}
        assert all(isinstance(v, (int, float)) for v in call["args"].values())
        assert message.response_metadata["steproute"]["tier"] == tier
    chunks = list(router.chat_model(max_tokens=48).bind_tools([multiply], tool_choice="required").stream("6 times 7?"))
    assert [c["name"] for chunk in chunks for c in chunk.tool_call_chunks] == ["multiply"]


def test_servers_listen_on_loopback_only_and_fit_in_memory(local_servers):
    pids = {s.pid for s in local_servers.servers.values()}
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in listening.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    assert len(ours) >= len(pids)
    for line in ours:
        assert re.search(r"\s127\.0\.0\.1:\d+\s", line), line
    rss = sum(s.rss_bytes() for s in local_servers.servers.values())
    assert 0 < rss < 1.5 * 1024**3, f"{rss / 1024**2:.0f} MB"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _start_cli() -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen([sys.executable, "-m", "steproute", "local", "--tier", "fast=smollm2-135m"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Serving until Ctrl-C"):
            break
    out = "".join(lines)
    assert "export STEPROUTE_LOCAL_FAST_URL=http://127.0.0.1:" in out and "model: openai/smollm2-135m" in out
    return proc, [int(p) for p in re.findall(r"pid (\d+)", out)]


def _gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_cli_leaves_no_server_behind(local_servers, how):
    proc, pids = _start_cli()
    assert pids and all(_alive(p) for p in pids)
    proc.send_signal(how)
    proc.wait(timeout=30)
    assert _gone(pids), f"orphaned llama-server after {how.name}"
    if how != signal.SIGKILL:
        assert proc.returncode in (130, 128 + signal.SIGTERM)


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path, monkeypatch):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'error: unknown argument --jinja' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("STEPROUTE_LLAMA_SERVER", str(fake))
    server = LocalServer("smollm2-135m", progress=False)
    with pytest.raises(LocalModelError, match=r"exited while starting; log: .*\n.*unknown argument --jinja"):
        server.start()
    assert server.process is None and server.port is None


def test_servers_stop_when_the_block_fails():
    with pytest.raises(RuntimeError, match="boom"), LocalServers({"fast": "smollm2-135m"}, progress=False) as servers:
        pid = servers["fast"].pid
        assert pid is not None and _alive(pid)
        raise RuntimeError("boom")
    assert _gone([pid])
