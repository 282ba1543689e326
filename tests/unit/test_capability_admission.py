"""Review of issue 21's capability filter: the budget reserves at the tier the capability
filter moves a call to, the window estimate counts tool-call arguments, what is logged once,
and the messages."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from steproute import CapabilityError, RouterConfig, StepRequest, StepRouter
from steproute.testing import FunctionTransport, Reply, TierCall
from steproute.types import Hint, Usage

IMAGE = [{"role": "user", "content": [
    {"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
TIERS = {"fast": {"models": ["openai/gpt-3.5-turbo"]}, "advanced": {"models": ["openai/gpt-4o"]}}


def budget_router(mode: str, calls: list[TierCall]) -> StepRouter:
    guard: dict[str, Any] = {"limits": {"default": 0.005}, "on_exceed": mode}
    if mode == "cap":
        guard["cap_tier"] = "fast"

    def answer(call: TierCall) -> Reply:
        calls.append(call)
        return Reply("x", usage=Usage(input_tokens=10, output_tokens=1000))

    return StepRouter(RouterConfig(tiers=TIERS, default="fast", guards={"budgets": guard}),
                      transport=FunctionTransport(answer))


def test_a_capability_move_to_a_dearer_tier_reserves_the_dearer_tiers_estimate():
    calls: list[TierCall] = []
    router = budget_router("refuse", calls)
    reserved: list[float] = []

    def answer(call: TierCall) -> Reply:
        reserved.append(router.budget_store.usage("acme", window)[1])
        return Reply("x", usage=Usage(input_tokens=10, output_tokens=1000))

    router = StepRouter(router.config, transport=FunctionTransport(answer))
    window = router._budget.window()[0]
    router.complete(StepRequest("s", IMAGE, tenant="acme"), max_tokens=1000)
    assert reserved[0] >= 0.01  # gpt-4o's 1000 output tokens, not gpt-3.5-turbo's $0.0015


def test_a_tenant_over_its_budget_is_not_moved_above_the_cap_tier_for_a_capability():
    calls: list[TierCall] = []
    router = budget_router("cap", calls)
    router.complete(StepRequest("s", IMAGE, tenant="acme"), max_tokens=1000)  # under the limit: spends $0.01
    assert [c.tier for c in calls] == ["advanced"]
    with pytest.raises(CapabilityError) as caught:  # now over it: held to 'fast', which cannot see images
        router.complete(StepRequest("s", IMAGE, tenant="acme"), max_tokens=1000)
    assert [c.tier for c in calls] == ["advanced"]
    assert "(its tier is fixed by a budget cap)" in str(caught.value)


def test_a_tier_fixed_by_a_hint_says_so_in_the_capability_error():
    router = StepRouter(RouterConfig(tiers=TIERS, default="fast"), transport=FunctionTransport(lambda c: "x"))
    with pytest.raises(CapabilityError) as caught:
        router.complete(StepRequest("s", IMAGE, hint=Hint(tier="fast")))
    assert "(its tier is fixed by a `tier` hint)" in str(caught.value)


def test_a_capability_move_within_the_budget_reserves_at_the_moved_tier():
    calls: list[TierCall] = []
    router = budget_router("refuse", calls)
    result = router.complete(StepRequest("s", IMAGE, tenant="acme"), max_tokens=100)
    assert result.decision.tier == "advanced"
    assert [c.tier for c in calls] == ["advanced"]


# -- the window estimate -------------------------------------------------------------------------

WINDOW_TIERS = {"fast": {"models": ["openai/gpt-3.5-turbo"]}, "strong": {"models": ["openai/gpt-4o"]}}


def test_tool_call_arguments_count_toward_the_window():
    import json
    body = "def f(x):\n    return x * 2  # a line of generated code\n" * 1200
    messages = [{"role": "user", "content": "write the module"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "write_file", "arguments": json.dumps({"path": "m.py", "text": body})}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    router = StepRouter(RouterConfig(tiers=WINDOW_TIERS, default="fast"), transport=FunctionTransport(lambda c: "ok"))
    result = router.complete(StepRequest("s", messages))  # ~22.9k tokens: over gpt-3.5-turbo's 16,385
    assert result.decision.tier == "strong"
    assert "context window" in result.decision.reason


def test_tool_schemas_count_toward_the_window():
    from steproute.capabilities import needs_of
    tool = {"type": "function", "function": {"name": "f", "description": "x" * 4000, "parameters": {}}}
    plain = needs_of([{"role": "user", "content": "hi"}], {})
    with_tools = needs_of([{"role": "user", "content": "hi"}], {"tools": [tool]})
    assert with_tools.bound >= plain.bound + 4000
    assert with_tools.input_tokens() >= plain.input_tokens() + 4000 // 8


def test_long_mixed_text_is_not_undercounted_by_its_ends():
    import os

    import litellm

    from steproute.capabilities import needs_of
    english = ("The quick brown fox jumps over the lazy dog while the committee deliberates. " * 120)[:8192]
    messages = [{"role": "user", "content": english},
                {"role": "tool", "tool_call_id": "c", "content": os.urandom(20000).hex()},
                {"role": "user", "content": english}]
    real = litellm.token_counter(model="gpt-3.5-turbo", messages=messages)
    assert needs_of(messages, {}).input_tokens() >= real * 0.85


def test_moves_of_one_step_for_different_capabilities_are_each_logged_once(caplog):
    tiers = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "capabilities": {"tools": False, "max_input_tokens": 1000}}]},
             "strong": {"models": ["openai/gpt-4o"]}}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast"), transport=FunctionTransport(lambda c: "ok"))
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 200} for i in range(10)]
    with caplog.at_level(logging.WARNING, logger="steproute"):
        for _ in range(2):
            router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]), tools=[tool])
            router.complete(StepRequest("s", long))
    moves = [r.getMessage() for r in caplog.records if "the call went to tier" in r.getMessage()]
    assert len(moves) == 2
    assert any("function calling" in m for m in moves) and any("context window" in m for m in moves)


# -- a capability move and the step's latency budget ------------------------------------------------

THREE = {"fast": {"models": ["openai/gpt-3.5-turbo"]}, "standard": {"models": ["openai/gpt-4o-mini"]},
         "advanced": {"models": ["openai/gpt-4o"]}}


def latency_router(standard_s: float, advanced_s: float) -> StepRouter:
    from steproute.latency import TOTAL
    router = StepRouter(RouterConfig(tiers=THREE, default="fast",
                                     steps={"answer": {"policy": "fixed", "tier": "fast", "max_latency_ms": 200}}),
                        transport=FunctionTransport(lambda c: "ok"))
    book = router._dispatcher.latency
    for _ in range(5):
        book.observe("standard", "openai/gpt-4o-mini", TOTAL, standard_s, now=book.clock())
        book.observe("advanced", "openai/gpt-4o", TOTAL, advanced_s, now=book.clock())
    return router


def test_a_capability_move_prefers_the_cheapest_capable_tier_that_fits_the_latency_budget(caplog):
    router = latency_router(0.3, 0.05)  # standard p95 300 ms > 200 ms; advanced 50 ms fits
    with caplog.at_level(logging.WARNING, logger="steproute"):
        result = router.complete(StepRequest("answer", IMAGE))
    assert result.decision.tier == "advanced"
    assert "needs vision" in result.decision.reason and "latency" in result.decision.reason
    assert any("latency" in r.getMessage() for r in caplog.records)


def test_a_capability_move_says_when_no_capable_tier_fits_the_latency_budget():
    router = latency_router(0.3, 0.5)
    result = router.complete(StepRequest("answer", IMAGE))
    assert result.decision.tier == "standard"  # the fastest capable tier
    assert "no allowed tier fits max_latency_ms 200" in result.decision.reason


# -- tool_calling: json tiers and what steproute check says -----------------------------------------


def test_a_json_tier_does_not_warn_that_tools_or_schemas_are_unknown(caplog):
    tiers = {"fast": {"tool_calling": "json", "models": [
        {"model": "openai/smollm2-135m", "api_base": "http://127.0.0.1:1/v1", "api_key": "local",
         "capabilities": {"vision": False, "audio": False, "max_input_tokens": 8192, "max_output_tokens": 2048}}]},
        "strong": {"models": ["openai/gpt-4o"]}}
    with caplog.at_level(logging.WARNING, logger="steproute"):
        StepRouter(RouterConfig(tiers=tiers, default="fast"), transport=FunctionTransport(lambda c: "ok"))
    assert not [r for r in caplog.records if "no model information" in r.getMessage()]


def test_check_says_in_one_line_which_facts_are_unknown(tmp_path):
    from steproute.config_check import check_file
    path = tmp_path / "local.yaml"
    path.write_text("tiers:\n  fast:\n    tool_calling: json\n    models: [{model: openai/my-local, api_base: "
                    "'http://127.0.0.1:1/v1', api_key: local}]\n  strong: {models: [openai/gpt-4o]}\ndefault: fast\n")
    report = check_file(path)
    unknown = [w for w in report.warnings if "no model information" in w.message]
    assert [w.path for w in unknown] == ["tiers.fast.models[0]"]
    assert "vision" in unknown[0].message and "tools" not in unknown[0].message


def test_check_names_the_tiers_that_have_a_capability_in_plain_grammar(tmp_path):
    from steproute.config_check import check_file
    path = tmp_path / "caps.yaml"
    path.write_text("tiers:\n  fast:\n    models: [{model: openai/gpt-3.5-turbo}]\n"
                    "  mid: {models: [openai/gpt-4o-mini]}\n  strong: {models: [openai/gpt-4o]}\n"
                    "default: fast\nsteps:\n  act: {policy: fixed, tier: fast, max_tier: fast}\n")
    messages = [w.message for w in check_file(path).warnings if "vision" in w.message]
    assert messages and messages[0].endswith("(tiers 'mid', 'strong' have it)")


# -- max_tokens: the message, a string, a deployment's own --------------------------------------------

OUT_TIERS = {"fast": {"models": [{"model": "openai/gpt-3.5-turbo", "capabilities": {"max_output_tokens": 4096}}]},
             "strong": {"models": ["openai/gpt-4o"]}}


def test_a_move_for_max_tokens_names_the_limit_it_exceeds():
    router = StepRouter(RouterConfig(tiers=OUT_TIERS, default="fast"), transport=FunctionTransport(lambda c: "ok"))
    result = router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]), max_tokens=10000)
    assert result.decision.tier == "strong"
    assert "max_tokens 10000 exceeds max_output_tokens of 'fast' (4096)" in result.decision.reason


def test_max_tokens_given_as_a_string_is_read_as_a_number():
    router = StepRouter(RouterConfig(tiers=OUT_TIERS, default="fast"), transport=FunctionTransport(lambda c: "ok"))
    result = router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]), max_tokens="10000")
    assert result.decision.tier == "strong"


def test_a_deployments_own_max_tokens_counts_when_the_call_sets_none():
    tiers = {"fast": {"models": [{"model": "openai/gpt-3.5-turbo", "max_tokens": 10000,
                                  "capabilities": {"max_output_tokens": 4096}}]},
             "strong": {"models": ["openai/gpt-4o"]}}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast"), transport=FunctionTransport(lambda c: "ok"))
    result = router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]))
    assert result.decision.tier == "strong"
    assert "max_tokens 10000 exceeds max_output_tokens of 'fast' (4096)" in result.decision.reason
    assert router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]), max_tokens=100).decision.tier == "fast"
