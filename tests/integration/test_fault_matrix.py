"""The fault matrix: every provider fault × every surface, over real HTTP (LiteLLM → llmock).

Each call must end in an answer from a deployment the step may use, or in a typed
``DispatchError`` that names the step, the tier(s) and every attempt — never a hang, never a
cut-short answer passed off as complete, never a tier outside the step's bounds. Three
scenarios per cell:

- ``transient``: the fault hits the cheap tier's next request once (retries may recover);
- ``tier down``: the cheap tier fails every time; the step may fall back to the strong tier;
- ``tier down, max_tier=fast``: the same, but the step may not leave the cheap tier.

Each cell's outcome is computed before the call from its fault, surface and scenario
(:func:`expected`) and the call is held to it: which tier answers (and whether it fell back or
escalated), or which typed error ends it; an answer's text is the answering model's own, whole
(compared with the same model's answer to the same prompt without the fault); a stream never
falls back after its first chunk was shown, so the text shown and the final outcome come from one
model. The outcomes are written to the matrix in docs/reliability.md (between its markers) when the
whole matrix has run.
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


QUESTION = "What is the weather in Oslo?"
BATCH = ["Weather in Oslo?", "Weather in Rome?", "Weather in Lima?"]
WIRE = {"fast": CHEAP, "strong": STRONG}
HTTP_ERRORS = {"429 + Retry-After": "RateLimitError", "500": "InternalServerError",
               "503": "ServiceUnavailableError", "timeout": "Timeout"}


@dataclass(frozen=True)
class Expected:
    """What one cell must end in: an answer from ``tier`` (``how`` it got there), or a typed
    error (``tier`` None) of one of ``kinds`` (None: any kind)."""

    tier: str | None
    how: str = ""
    kinds: frozenset[str] | None = None

    def __str__(self) -> str:
        if self.tier is None:
            return "typed error" + (f" ({', '.join(sorted(self.kinds))})" if self.kinds else "")
        return f"answer from {self.tier}" + (f" ({self.how})" if self.how else "")


def expected(fault: str, surface: str, scenario: str) -> Expected:
    """The outcome the cell must have, from its fault, surface and scenario."""
    times, max_tier = SCENARIOS[scenario]
    if fault not in HTTP_ERRORS:
        # the stream broke after two chunks had reached the caller: text shown cannot be taken back,
        # so neither a retry nor a fallback may follow, whatever the scenario. (LiteLLM's names for
        # a broken stream differ between its versions: any typed error kind.)
        return Expected(None)
    if times == 1:
        return Expected("fast")  # LiteLLM's retry on the same deployment absorbs one fault
    if max_tier == "fast":
        return Expected(None, kinds=frozenset({HTTP_ERRORS[fault]}))  # may not leave the cheap tier
    return Expected("strong", "escalated" if surface == "cascade" else "fell back")


def prompts(surface: str) -> list[str]:
    return BATCH if surface == "batch" else ["Weather in Oslo?" if surface == "structured output" else QUESTION]


def reference_texts(llmock, router: StepRouter, surface: str) -> dict[str, list[str]]:
    """Each tier's answer to the cell's prompts without any fault (llmock answers a model and a
    prompt with the same text every time), then the server's journal is cleared."""
    texts = {tier: [router.chat_model().invoke(p, config={"metadata": step("reference", tier=tier)}).content
                    for p in prompts(surface)] for tier in WIRE}
    llmock.reset()
    return texts


def call(router: StepRouter, surface: str, max_tier: str | None, shown: list[str]) -> list[AIMessage]:
    """Make one call on ``surface``; the messages that came back (the last chunk for streams).
    A stream's text goes into ``shown`` chunk by chunk, as a caller would show it."""
    config = {"metadata": step("answer", max_tier=max_tier)}
    model = router.chat_model()
    if surface in ("invoke", "cascade"):
        return [model.invoke(QUESTION, config=config)]
    if surface == "ainvoke":
        return [asyncio.run(model.ainvoke(QUESTION, config=config))]
    if surface == "stream":
        message = None
        for chunk in model.stream(QUESTION, config=config):
            shown.append(chunk.text)
            message = chunk if message is None else message + chunk
        assert message is not None
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
        return model.batch(BATCH, config=config)
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
    text = DOC.read_text(encoding="utf-8")
    assert "<!-- matrix:start -->" in text
    updated = re.sub(r"<!-- matrix:start -->.*<!-- matrix:end -->", lambda _: matrix_block(), text, flags=re.S)
    if updated != text and not os.environ.get("STEPROUTE_KEEP_DOCS"):  # `make test-newest`: the pinned run's table stays
        DOC.write_text(updated, encoding="utf-8")


@pytest.mark.parametrize(("fault", "surface", "scenario"), CELLS)
def test_fault_matrix(llmock, fault: str, surface: str, scenario: str) -> None:
    times, max_tier = SCENARIOS[scenario]
    want = expected(fault, surface, scenario)
    router = router_for(llmock, cascade=surface == "cascade")
    texts = reference_texts(llmock, router, surface) if surface not in ("tool calls", "structured output") else {}
    llmock.add(FAULTS[fault](times))
    shown: list[str] = []
    started = time.monotonic()
    try:
        messages = call(router, surface, max_tier, shown)
    except DispatchError as err:
        elapsed = time.monotonic() - started
        assert want.tier is None, f"expected {want}, got a typed error: {sorted({a.error_type for a in err.attempts})}"
        assert err.step == "answer" and err.tier == "fast" and err.tiers == ("fast",) and err.attempts
        assert all(a.model == f"openai/{CHEAP}" and a.error_type for a in err.attempts), err.attempts
        assert "step 'answer'" in str(err) and "'fast'" in str(err)
        kinds = sorted({a.error_type for a in err.attempts})
        if want.kinds is not None:
            assert set(kinds) == want.kinds, kinds
        assert STRONG not in {r.model for r in llmock.requests}, "a call that ended in an error reached the strong tier"
        if surface == "stream":  # what the caller saw is the start of the cheap model's one answer
            assert texts["fast"][0].startswith("".join(shown)), (shown, texts["fast"][0])
        n = len(err.attempts)
        RESULTS[(fault, surface, scenario)] = f"typed error ({', '.join(kinds)}; {n} attempt{'s' if n > 1 else ''})"
    else:
        elapsed = time.monotonic() - started
        assert want.tier is not None, f"expected {want}, got an answer from {[m.response_metadata for m in messages]}"
        assert len(messages) == len(prompts(surface))
        for i, m in enumerate(messages):
            routed = m.response_metadata["steproute"]
            assert m.response_metadata["model_name"] == f"openai/{WIRE[want.tier]}"
            assert routed["tier"] == want.tier and routed["cost_usd"] > 0
            # a cascade whose first tier failed escalates; the decision records the failure too
            assert routed["fallback_from"] == ("fast" if want.how else None), routed
            assert routed["escalated_from"] == ("fast" if want.how == "escalated" else None), routed
            if surface == "tool calls":
                assert m.tool_calls and m.tool_calls[0]["name"] == "get_weather"
            elif surface != "structured output":  # the answering model's whole answer, nothing else
                assert m.content == texts[want.tier][i], (m.content, texts[want.tier][i])
        if surface == "stream":  # the text shown is the final answer's, chunk for chunk
            assert "".join(shown) == messages[0].content
        RESULTS[(fault, surface, scenario)] = str(want)
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
