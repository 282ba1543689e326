"""Apps that build their own model (``init_chat_model``, a factory), routed with one line, over HTTP.

The apps live in tests/apps and are imported like third-party code: never edited, imported
fresh for each test. What reached llmock (the model on the wire, the request body) says where
each step's calls went. The app asks for ``gpt-4o-mini`` / ``gpt-4o``; the router's tiers are
``gpt-4.1-nano`` (fast) and ``gpt-4.1`` (strong), so an unrouted call cannot pass for a routed one.

Assumed step names: the graph's nodes are ``plan`` and ``answer``; the ``create_agent`` agent is
named ``researcher`` and its model node is ``model`` — both names map to the strong tier, so the
assertions hold whichever of the two the router's step resolution picks for an agent's calls.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage

import steproute
from steproute import RouterConfig, StepRouter

pytestmark = pytest.mark.integration

APPS = Path(__file__).resolve().parents[1] / "apps"
APP_MODULES = ("init_chat_model_app", "factory_graph", "factory_models")
TIERS = {"fast": "openai/gpt-4.1-nano", "strong": "openai/gpt-4.1"}
WIRE = {tier: model.split("/")[1] for tier, model in TIERS.items()}
MODES = ("invoke", "ainvoke", "messages", "amessages")
THREADS = (None, "thread-7")


@pytest.fixture
def import_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Import an app module from tests/apps afresh, as a third-party package would be."""
    monkeypatch.syspath_prepend(str(APPS))
    for name in APP_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module
    for name in APP_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def router(llmock) -> StepRouter:
    tiers = {t: {"models": [{"model": m, "api_base": llmock.base_url(), "api_key": "sk-router-key"}]}
             for t, m in TIERS.items()}
    return StepRouter(RouterConfig(tiers=tiers, default="fast", steps={
        "plan": "strong", "answer": "fast", "researcher": "strong", "model": "strong",
        "planner": "strong", "writer": "fast"}))


def config_for(thread: str | None, **configurable: Any) -> dict[str, Any]:
    if thread is not None:
        configurable["thread_id"] = thread
    return {"configurable": configurable}


async def run(app: Any, state: dict[str, Any], mode: str, config: dict[str, Any]) -> list[AIMessage]:
    """Run ``app`` one way; return the AI messages it produced, complete (streamed ones merged)."""
    if mode in ("invoke", "ainvoke"):
        out = app.invoke(state, config) if mode == "invoke" else await app.ainvoke(state, config)
        return [m for m in out.get("messages", []) if isinstance(m, AIMessage)]
    if mode == "messages":
        items = list(app.stream(state, config, stream_mode="messages"))
    else:
        items = [item async for item in app.astream(state, config, stream_mode="messages")]
    merged: dict[str, AIMessageChunk] = {}
    for chunk, _meta in items:
        if isinstance(chunk, AIMessageChunk):
            merged[chunk.id] = merged[chunk.id] + chunk if chunk.id in merged else chunk
    return list(merged.values())


def routed(message: AIMessage) -> tuple[str, str, str]:
    meta = message.response_metadata
    return meta["steproute"]["step"], meta["steproute"]["tier"], meta["model_name"]


@pytest.mark.parametrize("thread", THREADS)
@pytest.mark.parametrize("mode", MODES)
async def test_a_two_node_graph_on_init_chat_model_is_routed_with_one_line(llmock, router, import_app, mode,
                                                                            thread, caplog):
    caplog.set_level(logging.INFO, logger="steproute")
    with router.route_init_chat_model():                            # the one line
        app = import_app("init_chat_model_app")
        llmock.reply("1. look it up 2. answer").reply("It is sunny.")
        messages = await run(app.graph, {"question": "Weather in Paris?"}, mode, config_for(thread))

    requests = llmock.requests
    assert [r.model for r in requests] == [WIRE["strong"], WIRE["fast"]]     # plan → strong, answer → fast
    assert all(r.stream == mode.endswith("messages") for r in requests)
    for request in requests:                                         # what the app set, kept
        assert (request.body["temperature"], request.body["max_tokens"]) == (0.3, 256)
    if messages:                                                     # streamed: each answer's metadata
        assert [routed(m) for m in messages] == [("plan", "strong", TIERS["strong"]), ("answer", "fast", TIERS["fast"])]
        assert {m.response_metadata["steproute"]["thread"] for m in messages} == {thread}
    notes = [r for r in caplog.records if "routes init_chat_model('openai:gpt-4o-mini')" in r.getMessage()]
    assert len(notes) == 1                                           # said once, not once per call
    assert notes[0].levelno == logging.WARNING                       # base_url is ignored
    assert "ignored: base_url" in notes[0].getMessage() and "kept: max_tokens, temperature" in notes[0].getMessage()


@pytest.mark.parametrize("thread", THREADS)
@pytest.mark.parametrize("mode", MODES)
async def test_a_create_agent_on_init_chat_model_is_routed_with_one_line(llmock, router, import_app, mode, thread):
    app = import_app("init_chat_model_app")       # imported BEFORE the line: the configurable model exists
    patch = steproute.route_init_chat_model(router)
    try:
        llmock.call_tool("get_weather", {"city": "Paris"}).reply("It is 18°C and sunny in Paris.")
        state = {"messages": [("user", "Weather in Paris?")]}
        if mode in ("invoke", "ainvoke"):
            out = app.researcher.invoke(state, config_for(thread)) if mode == "invoke" else \
                await app.researcher.ainvoke(state, config_for(thread))
            assert any(isinstance(m, ToolMessage) and m.content == "18°C and sunny in Paris" for m in out["messages"])
            answers = [m for m in out["messages"] if isinstance(m, AIMessage)]
        else:
            answers = await run(app.researcher, state, mode, config_for(thread))
    finally:
        patch.uninstall()
    assert [r.model for r in llmock.requests] == [WIRE["strong"], WIRE["strong"]]   # both turns of the tool loop
    assert llmock.requests[0].body["tools"][0]["function"]["name"] == "get_weather"
    assert len(answers) == 2 and answers[0].tool_calls[0]["args"] == {"city": "Paris"}
    for message in answers:
        step, tier, model = routed(message)
        assert step in ("researcher", "model") and (tier, model) == ("strong", TIERS["strong"])
        assert message.response_metadata["steproute"]["thread"] == thread


async def test_a_run_can_name_the_step_through_the_apps_configurable_fields(llmock, router, import_app):
    """``config_prefix="llm"``: the run's ``llm_model`` reaches the routed model; "steproute:<step>" names
    the step, so both nodes run as ``answer`` (fast) although ``plan`` is configured strong."""
    with router.route_init_chat_model():
        app = import_app("init_chat_model_app")
        llmock.reply("a plan").reply("an answer")
        out = await app.graph.ainvoke({"question": "hi"}, {"configurable": {"llm_model": "steproute:answer",
                                                                           "llm_temperature": 0.9}})
    assert out["answer"] == "an answer"
    assert [r.model for r in llmock.requests] == [WIRE["fast"], WIRE["fast"]]
    assert [r.body["temperature"] for r in llmock.requests] == [0.9, 0.9]  # the run's setting, kept


def test_without_the_line_the_app_is_not_routed_and_after_uninstall_neither(llmock, router, import_app):
    app = import_app("init_chat_model_app")
    with pytest.raises(ImportError, match="langchain-openai"):       # the app's own provider, not steproute
        app.graph.invoke({"question": "hi"})
    with router.route_init_chat_model():
        llmock.reply("p").reply("a")
        assert app.graph.invoke({"question": "hi"})["answer"] == "a"
    with pytest.raises(ImportError, match="langchain-openai"):
        app.graph.invoke({"question": "hi"})
    assert len(llmock.requests) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_a_factory_imported_by_name_is_routed_with_one_line(llmock, router, import_app, mode, caplog):
    caplog.set_level(logging.INFO, logger="steproute")
    app = import_app("factory_graph")              # has done `from factory_models import get_model`
    with steproute.route_factory("factory_models:get_model", router, step=lambda role="default", **_: role) as patch:
        assert set(patch.targets) == {"factory_models:get_model", "factory_graph:get_model"}
        llmock.reply("a plan").reply("an answer")
        messages = await run(app.graph, {"question": "hi"}, mode, config_for("t-1"))
    assert [r.model for r in llmock.requests] == [WIRE["strong"], WIRE["fast"]]     # planner → strong, writer → fast
    assert llmock.requests[1].body["temperature"] == 0.0                            # get_model(..., temperature=0.0)
    if messages:
        assert [routed(m)[:2] for m in messages] == [("planner", "strong"), ("writer", "fast")]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "steproute routes factory_models:get_model(): " in text and "ignored: api_key, 1 positional argument" in text
    assert "sk-app-own-key" not in text                                              # names, never values
    assert app.get_model.__module__ == "factory_models" and not hasattr(app.get_model, "__steproute_patch__")
