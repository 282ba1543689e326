"""The fault matrix, second part: what a model answers, × every surface of a tool-calling chat
model, over real HTTP (LiteLLM → llmock).

The first part (``test_fault_matrix.py``) crosses transport faults (HTTP errors, timeouts, broken
streams). This one crosses faults in the answer itself, each on the cheap tier every time:

- a tool call without a name (never passed on as a call named ``''``: the answer is a
  ``MalformedResponse``, which falls back like a transient failure);
- a reply nested too deep for a ``tool_calling: json`` tier (never parsed, the same);
- tool arguments that are not JSON (never passed on: LangChain would keep them as an
  ``invalid_tool_call``, which an agent's tool loop never runs, or, streamed, parse the cut JSON
  into a call with partial arguments; a ``MalformedResponse`` that falls back);
- a call to a tool that was never offered (passed on as the model made it: the agent's tool
  loop answers it, as it would from any model);
- a first token held past the deadline (``dispatch.timeout``): a typed ``Timeout``, or the
  strong tier.

Two scenarios: the step may fall back to the strong tier, or ``max_tier=fast`` holds it on the
cheap one. Each cell's outcome is computed before the call (:func:`expected`) and held to; every
answer's decision says where it came from and costs more than $0; every typed error names the
step, the tier and its attempts. The outcomes go into docs/reliability.md between its
``output-matrix`` markers when the whole matrix has run.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from llmock.scenarios import Match, Reply, SlowFirstToken, ToolCall, ToolFault

from steproute import DispatchError, RouterConfig, StepRouter, step

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"
TIMEOUT, SLOW = 1.0, 3.0
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
RESULTS: dict[tuple[str, str, str], str] = {}
ADD = {"type": "function", "function": {"name": "add", "description": "Add two numbers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}
GOOD = Reply(tool_calls=(ToolCall("add", {"a": 2, "b": 3}),), times=None, match=Match(model=STRONG))
DEEP = '{"tool": "add", "arguments": ' + '{"a": ' * 3_000 + "1" + "}" * 3_001

FAULTS: dict[str, Callable[[], Any]] = {
    "tool call without a name": lambda: Reply(tool_calls=(ToolCall("", {"a": 1}),), times=None, match=Match(model=CHEAP)),
    "reply nested too deep (json tier)": lambda: Reply(text=DEEP, times=None, match=Match(model=CHEAP)),
    "tool arguments not JSON": lambda: ToolFault("malformed_arguments", times=None, match=Match(model=CHEAP)),
    "a tool never offered": lambda: ToolFault("unknown_tool", times=None, match=Match(model=CHEAP)),
    "first token held past the deadline": lambda: SlowFirstToken(SLOW, times=None, match=Match(model=CHEAP, stream=True)),
}
SCENARIOS = {"may fall back": None, "max_tier=fast": "fast"}
SURFACES = ("invoke", "ainvoke", "stream", "astream", "batch")
PROMPTS = {"batch": ["2+3?", "4+5?"]}


@dataclass(frozen=True)
class Expected:
    """An answer from ``tier`` (``passed`` on as the model made it, or ``fell back``), or a typed
    error of ``kind`` (``tier`` None)."""

    tier: str | None
    how: str = ""
    kind: str = ""

    def __str__(self) -> str:
        return f"typed error ({self.kind})" if self.tier is None else f"answer from {self.tier} ({self.how})"


def expected(fault: str, scenario: str) -> Expected:
    if fault == "a tool never offered":
        return Expected("fast", "passed on")  # the agent's tool loop answers it, as for any model
    # a held first chunk: httpx's read timeout, a Timeout (LiteLLM before 1.110 called it an
    # APIConnectionError mid-stream)
    kind = "Timeout|APIConnectionError" if fault.startswith("first token") else "MalformedResponse"
    return Expected(None, kind=kind) if SCENARIOS[scenario] == "fast" else Expected("strong", "fell back")


def router_for(llmock, fault: str) -> StepRouter:
    def tier(model: str) -> dict[str, Any]:
        return {"models": [{"model": f"openai/{model}", "api_base": llmock.base_url(), "api_key": "k"}]}

    fast = {**tier(CHEAP), **({"tool_calling": "json"} if "json tier" in fault else {})}
    return StepRouter(RouterConfig(tiers={"fast": fast, "strong": tier(STRONG)}, default="fast",
                                   dispatch={"num_retries": 0, "timeout": TIMEOUT}))


def call(router: StepRouter, surface: str, max_tier: str | None) -> list[AIMessage]:
    model = router.chat_model().bind_tools([ADD])
    config = {"metadata": step("answer", max_tier=max_tier)}
    if surface == "invoke":
        return [model.invoke("2+3?", config=config)]
    if surface == "ainvoke":
        return [asyncio.run(model.ainvoke("2+3?", config=config))]
    if surface == "batch":
        return model.batch(PROMPTS["batch"], config=config)
    if surface == "stream":
        chunks = list(model.stream("2+3?", config=config))
    else:
        async def collect() -> list[Any]:
            return [c async for c in model.astream("2+3?", config=config)]

        chunks = asyncio.run(collect())
    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    return [message]


def applies(fault: str, surface: str) -> bool:
    """A held first token is a streamed request's fault (held replies: ``test_fault_matrix.py``)."""
    return not fault.startswith("first token") or surface in ("stream", "astream")


CELLS = [(f, s, sc) for f in FAULTS for s in SURFACES for sc in SCENARIOS if applies(f, s)]


def matrix_block() -> str:
    lines = []
    for scenario in SCENARIOS:
        lines += [f"**{scenario}**", "", "| what the cheap tier answers | " + " | ".join(SURFACES) + " |",
                  "|---|" + "---|" * len(SURFACES)]
        lines += [f"| {fault} | " + " | ".join(RESULTS.get((fault, s, scenario), "—") for s in SURFACES) + " |"
                  for fault in FAULTS]
        lines.append("")
    return "<!-- output-matrix:start -->\n" + "\n".join(lines).rstrip() + "\n<!-- output-matrix:end -->"


@pytest.fixture(scope="module", autouse=True)
def write_the_matrix_into_the_docs():
    yield
    if len(RESULTS) < len(CELLS):
        return
    text = DOC.read_text(encoding="utf-8")
    assert "<!-- output-matrix:start -->" in text
    updated = re.sub(r"<!-- output-matrix:start -->.*<!-- output-matrix:end -->", lambda _: matrix_block(), text,
                     flags=re.S)
    if updated != text and not os.environ.get("STEPROUTE_KEEP_DOCS"):
        DOC.write_text(updated, encoding="utf-8")


@pytest.mark.parametrize(("fault", "surface", "scenario"), CELLS)
def test_output_fault_matrix(llmock, fault: str, surface: str, scenario: str) -> None:
    want = expected(fault, scenario)
    router = router_for(llmock, fault)
    llmock.add(FAULTS[fault]())
    llmock.add(GOOD)
    started = time.monotonic()
    try:
        messages = call(router, surface, SCENARIOS[scenario])
    except DispatchError as err:
        assert want.tier is None, f"expected {want}, got a typed error: {[a.error_type for a in err.attempts]}"
        assert err.step == "answer" and err.tier == "fast" and err.attempts
        kinds = sorted({a.error_type for a in err.attempts})
        assert len(kinds) == 1 and kinds[0] in want.kind.split("|"), kinds
        assert "step 'answer'" in str(err) and "'fast'" in str(err)
        assert STRONG not in {r.model for r in llmock.requests}, "a call held to the cheap tier reached the strong one"
        RESULTS[(fault, surface, scenario)] = f"typed error ({', '.join(kinds)})"
    else:
        assert want.tier is not None, f"expected {want}, got answers {[m.response_metadata for m in messages]}"
        assert len(messages) == len(PROMPTS.get(surface, ["2+3?"]))
        for m in messages:
            routed = m.response_metadata["steproute"]
            assert routed["tier"] == want.tier and routed["cost_usd"] > 0, routed
            assert routed["fallback_from"] == ("fast" if want.how == "fell back" else None), routed
            if want.how == "fell back":
                assert want.kind in routed["reason"] or "fell back" in routed["reason"], routed["reason"]
                assert [(c["name"], c["args"]) for c in m.tool_calls] == [("add", {"a": 2, "b": 3})]
            else:  # a tool never offered: the model's call, as it made it
                assert len(m.tool_calls) == 1 and m.tool_calls[0]["name"] not in ("", "add"), m.tool_calls
            assert all(c["name"] for c in m.tool_calls), "a call named '' was passed on"
        RESULTS[(fault, surface, scenario)] = str(want)
    assert time.monotonic() - started < 30
