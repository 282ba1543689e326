"""Conversation pins: modes, groups, bounds, re-pins, stores (memory, LangGraph BaseStore, SQLite)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langgraph.store.memory import InMemoryStore

from steproute import ConfigError, Hint, RouterConfig, StepRequest, StepRouter, step
from steproute.pinning import BaseStorePinStore, InMemoryPinStore, Pin
from tests.conftest import mock_tiers

ROOT = Path(__file__).resolve().parents[2]
ANSWER = {"policy": "rules", "fallback": "standard",
          "rules": [{"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"}]}


def router(pinning=None, store=None, **steps):
    config = {"tiers": mock_tiers(), "default": "fast", "steps": {"answer": ANSWER, **steps}}
    if pinning is not None:
        config["pinning"] = pinning
    return StepRouter(RouterConfig(**config), pin_store=store)


def ask(r, text, thread="t1", step_name="answer", hint=None):
    return r.complete(StepRequest(step_name, [{"role": "user", "content": text}], thread=thread,
                                  hint=hint or Hint())).decision


def test_sticky_is_the_default_and_holds_the_first_decision():
    r = router()
    first = ask(r, "hello")
    assert (first.tier, first.pinned, first.pin_group) == ("standard", False, "answer")
    second = ask(r, "now prove it")
    assert (second.tier, second.pinned, second.policy) == ("standard", True, "pin")
    assert second.reason == f"pinned to tier 'standard' (sticky, group 'answer') by {first.id}"
    assert ask(r, "now prove it", thread="t2").tier == "advanced"  # another conversation
    assert ask(r, "now prove it", thread=None).pinned is False  # no thread, no pin


def test_upgrade_only_moves_up_never_down():
    r = router({"mode": "upgrade_only"})
    assert ask(r, "hello").tier == "standard"
    up = ask(r, "prove it")
    assert (up.tier, up.pinned) == ("advanced", False) and "upgraded from pinned tier 'standard'" in up.reason
    back = ask(r, "hello again")
    assert (back.tier, back.pinned) == ("advanced", True)


def test_reevaluate_after_turns_and_after_seconds():
    r = router({"mode": "reevaluate", "after_turns": 2})
    assert ask(r, "hello").tier == "standard"
    assert [ask(r, "prove").pinned for _ in range(2)] == [True, True]
    fresh = ask(r, "prove")
    assert (fresh.tier, fresh.pinned) == ("advanced", False) and fresh.reason.endswith("pin re-evaluated")
    assert ask(r, "hello").tier == "advanced"  # the re-evaluated decision is the new pin
    timed = router({"mode": "reevaluate", "after_seconds": 0.05})
    assert ask(timed, "hello").tier == "standard" and ask(timed, "prove").pinned
    time.sleep(0.06)
    assert ask(timed, "prove").tier == "advanced"


def test_off_in_config_or_hint_means_the_policy_decides_every_call():
    r = router({"mode": "off"})
    ask(r, "hello")
    assert ask(r, "prove it").tier == "advanced"
    r = router()
    ask(r, "hello", hint=Hint(pin="off"))
    assert ask(r, "prove it", hint=Hint(pin="off")).tier == "advanced"


def test_steps_sharing_a_group_share_the_pin():
    r = router(None, None, plan={"policy": "fixed", "tier": "advanced", "pinning": {"group": "user_facing"}},
               answer={**ANSWER, "pinning": {"group": "user_facing"}})
    assert ask(r, "make a plan", step_name="plan").tier == "advanced"
    shared = ask(r, "hello")
    assert (shared.tier, shared.pinned, shared.pin_group) == ("advanced", True, "user_facing")
    floating = ask(r, "x", step_name="rewrite")  # the default step floats in its own group
    assert floating.pin_group == "rewrite" and floating.tier == "fast"


def test_hints_win_over_pins():
    r = router()
    ask(r, "prove it")  # pins advanced
    assert ask(r, "hi", hint=Hint(tier="fast")).tier == "fast"  # a tier hint fixes the tier
    capped = ask(r, "hi", hint=Hint(max_tier="standard"))  # a pin outside the bounds is not followed
    assert (capped.tier, capped.pinned) == ("standard", False) and "pinned tier 'advanced' is out of bounds" in capped.reason
    assert ask(r, "hi").tier == "advanced"  # the one bounded call did not move the pin
    grouped = ask(r, "prove", hint=Hint(pin_group="elsewhere"))
    assert grouped.pin_group == "elsewhere" and not grouped.pinned


def test_a_failing_pinned_model_repins_within_its_tier():
    tiers = mock_tiers()
    tiers["advanced"]["models"] = [
        {"model": "openai/gpt-4o", "mock_response": "litellm.InternalServerError", "api_key": "k"},
        {"model": "openai/gpt-4.1", "mock_response": "ok", "api_key": "k"}]
    store = InMemoryPinStore()
    store.put("t1", "answer", Pin("advanced", "openai/gpt-4o", "d-earlier", time.time()))
    r = StepRouter(RouterConfig(tiers=tiers, default="fast", steps={"answer": ANSWER}), pin_store=store)
    moved = ask(r, "hello")
    assert (moved.tier, moved.model, moved.pinned, moved.repinned) == ("advanced", "openai/gpt-4.1", True, True)
    pin = store.get("t1", "answer")
    assert (pin.tier, pin.model, pin.repins, pin.decision_id) == ("advanced", "openai/gpt-4.1", 1, "d-earlier")
    again = ask(r, "hello")
    assert (again.model, again.repinned) == ("openai/gpt-4.1", False)  # now stable on the new model


def test_async_calls_pin_through_the_async_store_api():
    store = BaseStorePinStore(InMemoryStore())
    r = router(store=store)

    async def run():
        first = (await r.acomplete(StepRequest("answer", [{"role": "user", "content": "hi"}], thread="a"))).decision
        second = (await r.acomplete(StepRequest("answer", [{"role": "user", "content": "prove"}], thread="a"))).decision
        return first, second

    first, second = asyncio.run(run())
    assert first.tier == second.tier == "standard" and second.pinned
    assert store.get("a", "answer").decision_id == first.id


def test_streams_pin_too():
    r = router()
    list(r.stream(StepRequest("answer", [{"role": "user", "content": "hi"}], thread="s")))
    *_, summary = r.stream(StepRequest("answer", [{"role": "user", "content": "prove"}], thread="s"))
    assert summary.decision.pinned and summary.decision.tier == "standard"


def test_the_chat_model_reads_the_thread_and_the_pin_hint():
    llm = router().chat_model()
    config = {"configurable": {"thread_id": "lg-1"}, "metadata": {"thread_id": "lg-1", **step("answer")}}
    llm.invoke("hello", config=config)
    second = llm.invoke("prove it", config=config).response_metadata["steproute"]
    assert second["pinned"] and second["pin_group"] == "answer"
    with pytest.raises(ValueError, match="pin must be one of sticky, upgrade_only, reevaluate, turn, off; got 'always'"):
        step("answer", pin="always")


def test_pinning_config_is_validated():
    with pytest.raises(ConfigError, match=r"pinning: .*reevaluate' needs after_turns or after_seconds"):
        RouterConfig(tiers=mock_tiers(), default="fast", pinning={"mode": "reevaluate"})
    with pytest.raises(ConfigError, match=r"steps\.answer\.pinning\.mode"):
        RouterConfig(tiers=mock_tiers(), default="fast", steps={"answer": {**ANSWER, "pinning": {"mode": "forever"}}})


def test_memory_store_is_bounded_by_count_and_age():
    store = InMemoryPinStore(max_entries=2, ttl_seconds=0.05)
    for thread in ("a", "b", "c"):
        store.put(thread, "g", Pin("fast", "m", thread, 0.0))
    assert len(store) == 2 and store.get("a", "g") is None and store.get("c", "g").decision_id == "c"
    time.sleep(0.06)
    assert store.get("c", "g") is None
    with pytest.raises(ValueError, match="max_entries"):
        InMemoryPinStore(max_entries=0)


def test_basestore_adapter_ignores_malformed_values():
    store = InMemoryStore()
    pins = BaseStorePinStore(store)
    store.put(("steproute", "pins", "t"), "answer", {"tier": "fast"})  # written by something else
    assert pins.get("t", "answer") is None
    assert pins.put_if_absent("t", "answer", Pin("fast", "m", "d", 0.0)).decision_id == "d"


WORKER = """
import json, sys
from langgraph.store.sqlite import SqliteStore
from steproute import RouterConfig, StepRequest, StepRouter
from steproute.pinning import BaseStorePinStore
from tests.conftest import mock_tiers
answer = {"policy": "rules", "fallback": "standard",
          "rules": [{"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"}]}
with SqliteStore.from_conn_string(sys.argv[1]) as store:
    store.setup()
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast", steps={"answer": answer}),
                        pin_store=BaseStorePinStore(store))
    d = router.complete(StepRequest("answer", [{"role": "user", "content": sys.argv[2]}], thread="shared")).decision
    print(json.dumps({"tier": d.tier, "pinned": d.pinned, "id": d.id}))
"""


def test_two_processes_share_a_pin_through_langgraphs_sqlite_store(tmp_path):
    db = str(tmp_path / "pins.sqlite")

    def run(text):
        out = subprocess.run([sys.executable, "-c", WORKER, db, text], capture_output=True, text=True, check=True,
                             cwd=ROOT, timeout=120, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"})
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run("hello")
    second = run("please prove it")  # another process; its policy alone would choose 'advanced'
    assert first == {"tier": "standard", "pinned": False, "id": first["id"]}
    assert second["tier"] == "standard" and second["pinned"] is True


def test_spans_and_the_log_record_the_pin(tmp_path):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from steproute.decision_log import read_log

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    r = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast", steps={"answer": ANSWER}),
                   tracer_provider=provider, decision_log=tmp_path / "d.jsonl")
    ask(r, "hello")
    ask(r, "prove")
    first, second = exporter.get_finished_spans()[1::2]  # chat, route, chat, route
    assert first.attributes["steproute.pin.group"] == "answer" and first.attributes["steproute.pinned"] is False
    assert second.attributes["steproute.pinned"] is True and second.attributes["steproute.policy"] == "pin"
    assert second.attributes["steproute.repinned"] is False
    r.decision_log.close()
    logged = read_log(tmp_path / "d.jsonl").decisions
    assert [(d["pinned"], d["pin_group"], d["repinned"]) for d in logged] == [(False, "answer", False),
                                                                              (True, "answer", False)]


def _advanced(first: str, second: str):
    tiers = mock_tiers()
    tiers["advanced"]["models"] = [
        {"model": "openai/gpt-4o", "mock_response": first, "api_key": "k"},
        {"model": "openai/gpt-4.1", "mock_response": second, "api_key": "k"}]
    return tiers


def test_a_pinned_thread_stays_on_its_model_when_the_tier_first_deployment_is_healthy_again():
    store = InMemoryPinStore()
    store.put("t1", "answer", Pin("advanced", "openai/gpt-4.1", "d-earlier", time.time()))  # moved there earlier
    r = StepRouter(RouterConfig(tiers=_advanced("from the first", "from the second"), default="fast",
                                steps={"answer": ANSWER}), pin_store=store)
    result = r.complete(StepRequest("answer", [{"role": "user", "content": "hi"}], thread="t1"))
    assert result.completion.content == "from the second" and result.decision.repinned is False
    streamed = list(r.stream(StepRequest("answer", [{"role": "user", "content": "hi"}], thread="t1")))
    assert streamed[-1].decision.model == "openai/gpt-4.1"


def test_when_the_pinned_model_fails_the_tier_order_takes_over_and_the_pin_moves():
    store = InMemoryPinStore()
    store.put("t1", "answer", Pin("advanced", "openai/gpt-4.1", "d-earlier", time.time()))
    r = StepRouter(RouterConfig(tiers=_advanced("from the first", "litellm.InternalServerError"), default="fast",
                                steps={"answer": ANSWER}), pin_store=store)
    result = r.complete(StepRequest("answer", [{"role": "user", "content": "hi"}], thread="t1"))
    assert result.completion.content == "from the first" and result.decision.repinned is True
    assert [a.model for a in result.completion.failed_attempts] == ["openai/gpt-4.1"]
    assert store.get("t1", "answer").model == "openai/gpt-4o"
