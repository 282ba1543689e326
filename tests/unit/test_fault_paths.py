"""Fault paths without a server (LiteLLM's mock_response): the default deadline, the money a
failed call spent, and text no request can carry. The same faults over real HTTP are in
tests/integration/test_fault_paths_llmock.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import steproute._litellm as steproute_litellm
from steproute import ConfigError, DispatchError, RequestEncodingError, RouterConfig, StepRequest, StepRouter
from steproute._encoding import first_unencodable
from steproute._litellm import deadlines
from tests.conftest import mock_tiers

DOCS = Path(__file__).resolve().parents[2] / "docs"


# -- the default deadline ----------------------------------------------------------------------


def test_dispatch_has_a_documented_default_deadline_and_refuses_nonsense():
    dispatch = RouterConfig(tiers=mock_tiers(), default="fast").dispatch
    assert (dispatch.timeout, dispatch.stream_timeout) == (600.0, None)
    table = (DOCS / "configuration.md").read_text()
    assert "| `timeout` | 600 |" in table and "| `stream_timeout` | `timeout` |" in table
    for bad in (0, -1, None, "soon"):
        with pytest.raises(ConfigError, match=r"dispatch\.timeout"):
            RouterConfig(tiers=mock_tiers(), default="fast", dispatch={"timeout": bad})


@pytest.mark.parametrize(("own", "timeout", "stream_timeout", "expected"), [
    ({}, 600.0, None, (600.0, 600.0)),
    ({}, 30.0, 5.0, (30.0, 5.0)),
    ({"timeout": 7}, 30.0, 5.0, (7, 7)),
    ({"stream_timeout": 2}, 30.0, 5.0, (30.0, 2)),
    ({"timeout": 7, "stream_timeout": 2}, 30.0, None, (7, 2)),
])
def test_a_deployments_own_deadlines_win_over_dispatchs(own, timeout, stream_timeout, expected):
    assert deadlines(own, timeout, stream_timeout) == expected


def test_the_default_deadline_and_no_hidden_retries_reach_litellm(monkeypatch):
    sent: list[dict[str, Any]] = []
    module = steproute_litellm.litellm()
    real = module.completion
    monkeypatch.setattr(module, "completion", lambda **kw: sent.append(kw) or real(**kw))
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"))
    router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]))
    router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]), timeout=3)
    assert [(kw["timeout"], kw["num_retries"]) for kw in sent] == [(600.0, 0), (3, 0)]


# -- a failed call logs the money it spent ------------------------------------------------------


def test_a_cascade_whose_last_tier_fails_logs_what_it_spent(tmp_path):
    tiers = mock_tiers()
    tiers["fast"]["models"][0]["mock_response"] = "I'm not sure, I cannot say."
    tiers["standard"]["models"][0]["mock_response"] = "litellm.InternalServerError"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = StepRouter(RouterConfig(tiers=tiers, default="fast", steps={"s": {
        "policy": "cascade", "tiers": ["fast", "standard"], "signals": [{"signal": "hedging"}]}},
        guards={"budgets": {"limits": {"acme": 1.0}}}),
        tracer_provider=provider, decision_log=tmp_path / "log.jsonl")
    with pytest.raises(DispatchError):
        router.complete(StepRequest("s", [{"role": "user", "content": "hi"}], tenant="acme"))
    router.decision_log.close()
    (entry,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    spans = exporter.get_finished_spans()
    paid = sum(s.attributes.get("steproute.cost.usd", 0.0) for s in spans if s.name.startswith("chat "))
    (route,) = [s for s in spans if s.name == "route s"]
    assert paid > 0
    assert entry["cost_usd"] == pytest.approx(paid) == route.attributes["steproute.step.cost.usd"]
    assert router.budget_store.usage("acme", router._budget.window()[0]) == (pytest.approx(paid), 0.0)
    assert [a["error_type"] for a in entry["failed_attempts"]] == ["InternalServerError"]


# -- text no request can carry -----------------------------------------------------------------


def test_the_field_is_named_and_keys_that_are_not_names_are_not_shown():
    assert first_unencodable([{"role": "user", "content": "fine"}], "messages") is None
    assert first_unencodable([{"role": "user", "content": "é\ud800"}], "messages") == ("messages[0].content", 1)
    found = first_unencodable({"sk-live-secret key \ud800": "x"}, "metadata")
    assert found == ("metadata[key] (a key)", 19)
    assert first_unencodable({"a": [[["\udfff"]]]}, "p") == ("p.a[0][0][0]", 0)


def test_tools_and_schemas_are_checked_too(make_router):
    tool = {"type": "function", "function": {"name": "f", "description": "d\udc00", "parameters": {}}}
    with pytest.raises(RequestEncodingError) as excinfo:
        StepRequest("s", [{"role": "user", "content": "hi"}], tools=[tool])
    assert excinfo.value.field == "tools[0].function.description"
    with pytest.raises(RequestEncodingError, match=r"response_schema\.title"):
        StepRequest("s", [{"role": "user", "content": "hi"}], response_schema={"title": "\ud83d"})


def test_the_chat_model_raises_the_typed_error_before_any_call(make_router, monkeypatch):
    module = steproute_litellm.litellm()
    monkeypatch.setattr(module, "completion", lambda **kw: pytest.fail("no model may be called"))
    with pytest.raises(RequestEncodingError) as excinfo:
        make_router().chat_model().invoke("private words \ud800 more private words")
    assert excinfo.value.field == "messages[0].content" and "private" not in str(excinfo.value)


ANY_TEXT = st.lists(st.one_of(st.characters(codec=None), st.integers(0xD800, 0xDFFF).map(chr)),
                    max_size=16).map("".join)
"""Any Unicode text, lone surrogates included."""


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=4), tool_text=ANY_TEXT)
def test_any_text_is_routed_or_refused_typed_and_never_falls_back(texts, tool_text):
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"))
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]
    tools = [{"type": "function", "function": {"name": "f", "description": tool_text, "parameters": {}}}]
    fields = [(f"messages[{i}].content", t) for i, t in enumerate(texts)] + [
        ("tools[0].function.description", tool_text)]
    bad = [name for name, t in fields if not _encodes(t)]
    try:
        routed = router.complete(StepRequest("s", messages, tools=tools))
    except RequestEncodingError as err:
        assert bad and err.field == bad[0]
        assert all(t not in str(err) for _, t in fields if len(t) >= 4)
    else:
        assert not bad
        assert (routed.decision.tier, routed.decision.fallback_from) == ("fast", None)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
