"""The fault matrix: every provider fault × every surface, over real HTTP (LiteLLM → llmock).

Each call must end in an answer from a deployment the step may use, or in a typed
``DispatchError`` that names the step, the tier(s) and every attempt — never a hang, never a
cut-short answer passed off as complete, never a tier outside the step's bounds. Three
scenarios per cell:

- ``transient``: the fault hits the cheap tier's next request once (retries may recover);
- ``tier down``: the cheap tier fails every time; the step may fall back to the strong tier;
- ``tier down, max_tier=fast``: the same, but the step may not leave the cheap tier.

The outcomes are written to the matrix in docs/reliability.md (between its markers) when the
whole matrix has run.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from llmock.scenarios import Delay, Fail, Match, StreamFault
from pydantic import BaseModel

from steproute import DispatchError, RouterConfig, StepRouter, step

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"
TIMEOUT, SLOW = 1.0, 3.0
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
RESULTS: dict[tuple[str, str, str], str] = {}


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    degrees: int


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


FAULTS: dict[str, Callable[[int | None], Any]] = {
    "429 + Retry-After": lambda times: Fail(429, retry_after=0.5, times=times, match=Match(model=CHEAP)),
    "500": lambda times: Fail(500, times=times, match=Match(model=CHEAP)),
    "503": lambda times: Fail(503, times=times, match=Match(model=CHEAP)),
    "timeout": lambda times: Delay(SLOW, times=times, match=Match(model=CHEAP)),
    "stream disconnect": lambda times: StreamFault("disconnect", after_chunks=2, times=times,
                                                   match=Match(model=CHEAP, stream=True)),
    "stream truncated": lambda times: StreamFault("truncate", after_chunks=2, times=times,
                                                  match=Match(model=CHEAP, stream=True)),
    "stream stall": lambda times: StreamFault("stall", after_chunks=2, stall_seconds=SLOW, times=times,
                                              match=Match(model=CHEAP, stream=True)),
    "malformed chunk": lambda times: StreamFault("malformed", after_chunks=2, times=times,
                                                 match=Match(model=CHEAP, stream=True)),
}
SCENARIOS = {"transient": (1, None), "tier down": (None, None), "tier down, max_tier=fast": (None, "fast")}
SURFACES = ("invoke", "ainvoke", "stream", "tool calls", "structured output", "cascade", "batch")


def router_for(llmock, cascade: bool) -> StepRouter:
    tiers = {name: {"models": [{"model": f"openai/{model}", "api_base": llmock.base_url(), "api_key": "k"}]}
             for name, model in (("fast", CHEAP), ("strong", STRONG))}
    steps = {"answer": {"policy": "cascade", "signals": [{"signal": "hedging"}]}} if cascade else {}
    return StepRouter(RouterConfig(tiers=tiers, default="fast", steps=steps,
                                   dispatch={"num_retries": 1, "timeout": TIMEOUT}))


def call(router: StepRouter, surface: str, max_tier: str | None) -> list[AIMessage]:
    """Make one call on ``surface``; the messages that came back (the last chunk for streams)."""
    config = {"metadata": step("answer", max_tier=max_tier)}
    model = router.chat_model()
    if surface in ("invoke", "cascade"):
        return [model.invoke("What is the weather in Oslo?", config=config)]
    if surface == "ainvoke":
        return [asyncio.run(model.ainvoke("What is the weather in Oslo?", config=config))]
    if surface == "stream":
        chunks = list(model.stream("What is the weather in Oslo?", config=config))
        message = chunks[0]
        for chunk in chunks[1:]:
            message += chunk
        return [message]
    if surface == "tool calls":
        return [model.bind_tools([get_weather]).invoke("What is the weather in Oslo?", config=config)]
    if surface == "structured output":
        raw = model.with_structured_output(Weather, include_raw=True).invoke("Weather in Oslo?", config=config)
        if raw["parsing_error"] is not None:
            raise raw["parsing_error"]
        assert isinstance(raw["parsed"], Weather)
        return [raw["raw"]]
    if surface == "batch":
        return model.batch(["Weather in Oslo?", "Weather in Rome?", "Weather in Lima?"], config=config)
    raise AssertionError(surface)


def applies(fault: str, surface: str) -> bool:
    """Stream faults hit streamed calls only (the other surfaces make no streamed request)."""
    return surface == "stream" or not fault.startswith(("stream", "malformed"))


CELLS = [(f, s, sc) for f in FAULTS for s in SURFACES for sc in SCENARIOS if applies(f, s)]


def matrix_block() -> str:
    """The table of outcomes, as it goes between the markers of docs/reliability.md."""
    http = [f for f in FAULTS if applies(f, "invoke")]
    lines = []
    for scenario in SCENARIOS:
        lines += [f"**{scenario}**", "", "| fault | " + " | ".join(SURFACES) + " |", "|---|" + "---|" * len(SURFACES)]
        lines += [f"| {fault} | " + " | ".join(RESULTS[(fault, s, scenario)] for s in SURFACES) + " |" for fault in http]
        lines.append("")
    lines += ["**faults inside a stream** (the `stream` surface; the others make no streamed request)", "",
              "| fault | " + " | ".join(SCENARIOS) + " |", "|---|" + "---|" * len(SCENARIOS)]
    lines += [f"| {fault} | " + " | ".join(RESULTS[(fault, "stream", sc)] for sc in SCENARIOS) + " |"
              for fault in FAULTS if fault not in http]
    return "<!-- matrix:start -->\n" + "\n".join(lines).rstrip() + "\n<!-- matrix:end -->"


@pytest.fixture(scope="module", autouse=True)
def write_the_matrix_into_the_docs():
    """Once the module has run: the table into docs/reliability.md, when every cell ran (a run
    of part of the matrix, with ``-k``, leaves the page as it is)."""
    yield
    if len(RESULTS) < len(CELLS):
        return
    assert not any(v.startswith("answer") and "strong" in v for (f, s, sc), v in RESULTS.items() if "max_tier" in sc)
    text = DOC.read_text(encoding="utf-8")
    assert "<!-- matrix:start -->" in text
    updated = re.sub(r"<!-- matrix:start -->.*<!-- matrix:end -->", lambda _: matrix_block(), text, flags=re.S)
    if updated != text and not os.environ.get("STEPROUTE_KEEP_DOCS"):  # `make test-newest`: the pinned run's table stays
        DOC.write_text(updated, encoding="utf-8")


@pytest.mark.parametrize(("fault", "surface", "scenario"), CELLS)
def test_fault_matrix(llmock, fault: str, surface: str, scenario: str) -> None:
    times, max_tier = SCENARIOS[scenario]
    allowed = {f"openai/{CHEAP}"} if max_tier == "fast" else {f"openai/{CHEAP}", f"openai/{STRONG}"}
    router = router_for(llmock, cascade=surface == "cascade")
    llmock.add(FAULTS[fault](times))
    started = time.monotonic()
    try:
        messages = call(router, surface, max_tier)
    except DispatchError as err:
        elapsed = time.monotonic() - started
        assert err.step == "answer" and err.tier == "fast" and err.attempts
        assert all(a.model in allowed and a.error_type for a in err.attempts), err.attempts
        assert "step 'answer'" in str(err) and "'fast'" in str(err)
        assert "k" not in {a.model for a in err.attempts}
        kinds = sorted({a.error_type for a in err.attempts})
        n = len(err.attempts)
        RESULTS[(fault, surface, scenario)] = f"typed error ({', '.join(kinds)}; {n} attempt{'s' if n > 1 else ''})"
    else:
        elapsed = time.monotonic() - started
        models = [m.response_metadata["model_name"] for m in messages]
        assert set(models) <= allowed, models
        for m in messages:
            routed = m.response_metadata["steproute"]
            assert m.content or m.tool_calls, "an empty answer passed off as complete"
            assert routed["cost_usd"] > 0
        how = {f"openai/{CHEAP}": "fast", f"openai/{STRONG}": "strong (fell back)"}
        if surface == "cascade":
            how[f"openai/{STRONG}"] = "strong (escalated)"
        RESULTS[(fault, surface, scenario)] = "answer from " + ", ".join(sorted({how[m] for m in models}))
    assert elapsed < 30, f"{elapsed:.1f} s: too slow to count as not hanging"


def test_retry_after_is_honoured(llmock):
    router = router_for(llmock, cascade=False)
    llmock.add(Fail(429, retry_after=1.0, times=1, match=Match(model=CHEAP)))
    message = router.chat_model().invoke("hi", config={"metadata": step("answer", max_tier="fast")})
    assert message.response_metadata["model_name"] == f"openai/{CHEAP}"
    first, second = sorted(llmock.requests, key=lambda r: r.started_at)
    assert first.status == 429 and first.retry_after == 1.0
    assert second.started_at - first.ended_at >= 0.95  # waited as asked, then succeeded


def test_a_truncated_stream_is_never_returned_as_complete(llmock):
    router = router_for(llmock, cascade=False)
    llmock.add(StreamFault("truncate", after_chunks=2, times=1, match=Match(model=CHEAP, stream=True)))
    with pytest.raises(DispatchError) as excinfo:
        list(router.chat_model().stream("hi", config={"metadata": step("answer")}))
    # LiteLLM before ~1.110 reports the same stream as finished normally, and steproute catches it
    # (StreamTruncated: no finish reason from the provider); newer LiteLLM raises its own error
    from steproute._litellm import litellm

    llmock.add(StreamFault("truncate", after_chunks=2, times=1, match=Match(model=CHEAP, stream=True)))
    try:
        chunks = list(litellm().completion(model=f"openai/{CHEAP}", api_base=llmock.base_url(), api_key="k",
                                           messages=[{"role": "user", "content": "hi"}], stream=True))
    except Exception as exc:  # this LiteLLM notices by itself (the provider's error under MidStreamFallbackError)
        expected = [type(getattr(exc, "original_exception", None) or exc).__name__]
    else:
        assert chunks[-1].choices[0].finish_reason == "stop"
        expected = ["StreamTruncated"]
    assert [a.error_type for a in excinfo.value.attempts] == expected
