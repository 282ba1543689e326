"""Limits of the guards: the PII scan is linear and keeps the event loop free; budgets reserve a
safe upper bound (max output tokens × ``n``), settle unknown usage at the estimate, never credit
negative usage, and refuse limits that are not finite numbers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from steproute import BudgetExceeded, ConfigError, RouterConfig, StepRequest, StepRouter
from steproute.guards import PII_THREAD_CHARS, PiiGuard, estimate_cost, max_output_tokens
from tests.conftest import mock_tiers

ADVERSARIAL = ["a", "a.", "1", "1-", "1 ", "a@", "@a.", "1.", "4111 ", "AB12"]


def ask(text: str = "hello", **kw: Any) -> StepRequest:
    return StepRequest(kw.pop("step", "s"), [{"role": "user", "content": text}], **kw)


def scan_time(text: str) -> float:
    guard, request = PiiGuard("x"), ask(text)
    best = float("inf")
    for _ in range(3):  # the best of three: the machine may be busy
        started = time.perf_counter()
        guard.detect(request)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_the_pii_scan_is_linear_on_adversarial_text(unit):
    # a ratio, not a time: 10x the input takes about 10x as long when linear, 100x when quadratic
    # (the quadratic detector took 6-8 s on 80,000 characters); a busy machine slows both alike
    small = scan_time(unit * (80_000 // len(unit)))
    large = scan_time(unit * (800_000 // len(unit)))
    assert large < 25 * max(small, 0.005), f"10x the input: {small:.4f}s -> {large:.4f}s"


@pytest.mark.parametrize(("text", "fired"), [
    ("Pay with 4111.1111.1111.1111", ("card",)),
    ("Pay with 4111/1111/1111/1111", ("card",)),
    ("Pay with 4111\u200b1111\u200b1111\u200b1111", ("card",)),
    ("Pay with ４１１１ １１１１ １１１１ １１１１", ("card",)),  # full-width digits
    ("Write to ann.lee\uff20example.org", ("email",)),  # full-width @
    ("Write to ann.lee@exa\u200bmple.org", ("email",)),
    ("Write to ann\u200b.lee\u200b@\u200bexample.org", ("email",)),
    ("Write to ann.lee@example.org", ("email",)),
    ("Pay with 4111.1111.1111.1112", ()),  # fails the Luhn check
    ("version 1.2.3.4, address 192.168.1.1, a@b, @handle, user@localhost", ()),
])
def test_obfuscated_personal_data_is_found(text, fired):
    assert PiiGuard("x").detect(ask(text)) == fired


def test_a_long_pii_scan_does_not_stall_other_coroutines():
    # a window large enough for the 1,000,004 characters (the capability filter would refuse them otherwise)
    router = StepRouter(RouterConfig(tiers=mock_tiers(capabilities={"max_input_tokens": 2_000_000}), default="fast",
                                     guards={"pii": {"tier": "fast"}}))
    text = "a1-." * 250_000 + " ann@example.org"  # 1,000,004 characters
    assert len(text) > PII_THREAD_CHARS

    async def main() -> tuple[float, Any]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        result = await router.acomplete(ask(text))
        done.set()
        await tick
        return max(gaps), result

    worst, result = asyncio.run(main())
    assert result.decision.guard == "pii:email"
    assert worst < 0.15, f"the other coroutine waited {worst:.3f}s"


# -- budgets -------------------------------------------------------------------------------------


def answer(completion_tokens: int | None, prompt_tokens: int = 10, choices: int = 1) -> dict[str, Any]:
    response: dict[str, Any] = {"model": "gpt-4o", "choices": [
        {"index": i, "message": {"role": "assistant", "content": "word " * 50}, "finish_reason": "stop"}
        for i in range(choices)]}
    if completion_tokens is not None:
        response["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    return response


def router_answering(response: dict[str, Any], limit: float) -> StepRouter:
    tiers = mock_tiers()
    tiers["advanced"]["models"][0]["mock_response"] = response
    return StepRouter(RouterConfig(tiers=tiers, default={"policy": "fixed", "tier": "advanced", "tier_fallback": "none"},
                                   guards={"budgets": {"limits": {"acme": limit}}}))


def spent(router: StepRouter) -> tuple[float, float]:
    return router.budget_store.usage("acme", router._budget.window()[0])


def concurrent(router: StepRouter, calls: int, **params: Any) -> list[Any]:
    async def main() -> list[Any]:
        return await asyncio.gather(*(router.acomplete(ask(tenant="acme"), **params) for _ in range(calls)),
                                    return_exceptions=True)
    return asyncio.run(main())


def test_concurrent_calls_without_max_tokens_stay_within_the_limit_and_one_call():
    price = router_answering(answer(8000), 1.0)._dispatcher.first_deployment("advanced").price
    bound = estimate_cost(price, ask(tenant="acme"), {}, max_output_tokens("openai/gpt-4o"))
    assert bound >= 8000 * price.output  # the bound covers what the call can write
    limit = 0.25
    router = router_answering(answer(8000), limit)
    results = concurrent(router, 16)
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert answered and all(isinstance(r, BudgetExceeded) for r in results if isinstance(r, BaseException))
    total, reserved = spent(router)
    assert reserved == 0.0
    assert total == pytest.approx(sum(r.cost_usd for r in answered))
    assert total <= limit + bound, f"spent {total / limit:.1f}x the limit"


def test_n_choices_are_reserved_n_times():
    price = router_answering(answer(1), 1.0)._dispatcher.first_deployment("advanced").price
    one = estimate_cost(price, ask(), {"max_tokens": 2000})
    assert estimate_cost(price, ask(), {"max_tokens": 2000, "n": 8}) > 7.9 * one
    limit = 0.3
    router = router_answering(answer(16_000, choices=8), limit)  # eight choices of 2,000 tokens
    results = concurrent(router, 8, max_tokens=2000, n=8)
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert answered and len(answered) < 8
    total, _ = spent(router)
    assert total <= limit + estimate_cost(price, ask(tenant="acme"), {"max_tokens": 2000, "n": 8})


def test_a_response_without_usage_settles_at_the_estimate():
    router = router_answering(answer(None), 1.0)
    result = router.complete(ask(tenant="acme"), max_tokens=300)
    assert result.cost_usd == 0.0  # what the provider told us
    price = router._dispatcher.first_deployment("advanced").price
    total, reserved = spent(router)
    assert total == pytest.approx(estimate_cost(price, ask(tenant="acme"), {"max_tokens": 300})) and reserved == 0.0
    assert total >= 300 * price.output


def test_negative_usage_never_credits_the_budget(caplog):
    router = router_answering(answer(-1_000_000, prompt_tokens=-1_000_000), 1.0)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        router.complete(ask(tenant="acme"), max_tokens=10)
        router.complete(ask(tenant="acme"), max_tokens=10)
    total, reserved = spent(router)
    assert total >= 0.0 and reserved == 0.0
    assert total == pytest.approx(0.0)
    warnings = [r for r in caplog.records if "negative" in r.getMessage()]
    assert len(warnings) == 1  # said once


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_limits_that_are_not_finite_are_refused(bad):
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(tiers=mock_tiers(), default="fast", guards={"budgets": {"limits": {"acme": bad}}})
    text = str(excinfo.value)
    assert "guards.budgets" in text and "acme" in text and "finite" in text


def test_max_output_tokens_comes_from_litellm_else_a_conservative_default():
    from steproute.guards import DEFAULT_MAX_OUTPUT_TOKENS

    assert max_output_tokens("openai/gpt-4o") == 16384
    assert max_output_tokens("acme/unknown-model") == DEFAULT_MAX_OUTPUT_TOKENS >= 16384


@pytest.mark.parametrize("at", [65_000, 65_530, 65_536, 66_000, 131_000, 200_000])
def test_personal_data_anywhere_in_a_long_text_is_found(at):
    filler = ("word " * 60_000)[:at]
    assert PiiGuard("x").detect(ask(filler + "ann@example.org 4111.1111.1111.1111" + " more" * 30_000)) == ("email", "card")
    assert PiiGuard("x").detect(ask("1" * at + " 4111 1111 1111 1111 " + "x" * 70_000)) == ("card",)
