import pytest

from steproute import Decision, Hint, RoutingError, StepRequest
from steproute.pricing import Price, call_cost
from steproute.types import Usage

MSG = [{"role": "user", "content": "hello"}]


def test_default_policy_for_unknown_steps(make_router):
    d = make_router().decide(StepRequest("anything", MSG))
    assert (d.step, d.tier, d.model, d.policy, d.reason) == ("anything", "fast", "openai/gpt-4o-mini", "fixed",
                                                            "fixed tier 'fast'")


def test_step_policy_by_name_then_by_kind(make_router):
    router = make_router(steps={"plan": "advanced", "extract": {"tier": "standard", "kind": "extract"}})
    assert router.decide(StepRequest("plan", MSG)).tier == "advanced"
    by_kind = router.decide(StepRequest("pull_fields", MSG, kind="extract"))
    assert (by_kind.tier, by_kind.kind) == ("standard", "extract")
    assert router.decide(StepRequest("extract", MSG)).kind == "extract"  # kind from the config


def test_tier_hint_wins_over_policy(make_router):
    d = make_router(steps={"plan": "advanced"}).decide(StepRequest("plan", MSG, hint=Hint(tier="fast")))
    assert (d.tier, d.policy, d.reason) == ("fast", "hint", "tier hint 'fast'")


def test_min_and_max_hints_clamp(make_router):
    router = make_router(steps={"plan": "advanced"})
    raised = router.decide(StepRequest("x", MSG, hint=Hint(min_tier="standard")))
    assert (raised.tier, raised.reason) == (
        "standard", "step 'x' matches no steps: entry; default policy: fixed tier 'fast'; raised to min_tier 'standard'")
    lowered = router.decide(StepRequest("plan", MSG, hint=Hint(max_tier="standard")))
    assert (lowered.tier, lowered.reason) == ("standard", "fixed tier 'advanced'; lowered to max_tier 'standard'")


def test_config_bounds_clamp_a_tier_hint(make_router):
    router = make_router(steps={"plan": {"tier": "advanced", "min_tier": "standard"}})
    assert router.decide(StepRequest("plan", MSG, hint=Hint(tier="fast"))).tier == "standard"


def test_bad_hints_raise_routing_error_naming_step(make_router):
    router = make_router()
    with pytest.raises(RoutingError, match=r"step 'plan': tier hint 'gold' is not a tier \(known: fast, standard, advanced\)"):
        router.decide(StepRequest("plan", MSG, hint=Hint(tier="gold")))
    with pytest.raises(RoutingError, match="step 'plan': min_tier 'advanced' is above max_tier 'fast'"):
        router.decide(StepRequest("plan", MSG, hint=Hint(min_tier="advanced", max_tier="fast")))


def test_rules_without_match_defer_to_default(make_router):
    router = make_router(default="standard", steps={"answer": {"policy": "rules", "rules": [
        {"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"}]}})
    hit = router.decide(StepRequest("answer", [{"role": "user", "content": "prove it"}]))
    assert (hit.tier, hit.policy, hit.reason) == ("advanced", "rules", "rule 'hard' matched (keywords ['prove'])")
    miss = router.decide(StepRequest("answer", MSG))
    assert (miss.tier, miss.policy) == ("standard", "fixed")
    assert miss.reason == "step policy had no match; default: fixed tier 'standard'"


def test_default_rules_without_fallback_use_cheapest_allowed(make_router):
    router = make_router(default={"policy": "rules", "rules": [{"when": {"has_tools": True}, "tier": "advanced"}],
                                  "min_tier": "standard"})
    d = router.decide(StepRequest("x", MSG))
    assert (d.tier, d.reason) == ("standard", "no policy matched; cheapest allowed tier")


def test_decision_is_immutable_and_serialisable(make_router):
    d = make_router().decide(StepRequest("s", MSG, thread="t-1"))
    assert isinstance(d, Decision)
    with pytest.raises(AttributeError):
        d.tier = "advanced"  # type: ignore[misc]
    assert d.as_dict()["thread"] == "t-1"
    assert d.id != make_router().decide(StepRequest("s", MSG)).id


def test_complete_prices_the_call_and_the_baseline(make_router):
    router = make_router(steps={"plan": "standard"})
    result = router.complete(StepRequest("plan", MSG))
    usage = result.completion.usage
    assert (usage.input_tokens, usage.output_tokens) == (10, 20)  # LiteLLM mock usage
    # openai/gpt-4.1-mini: $0.40/M in, $1.60/M out; baseline openai/gpt-4o: $2.50/M, $10/M
    assert result.cost_usd == pytest.approx(10 * 0.4e-6 + 20 * 1.6e-6)
    assert result.baseline_cost_usd == pytest.approx(10 * 2.5e-6 + 20 * 10e-6)
    assert result.savings_usd == pytest.approx(result.baseline_cost_usd - result.cost_usd)
    assert result.decision.model == "openai/gpt-4.1-mini"
    assert result.completion.content == "answer from standard"


def test_config_price_override_and_explicit_baseline(make_router):
    tiers = {
        "local": {"models": [{"model": "openai/my-local", "mock_response": "x", "input_cost_per_token": 0,
                              "output_cost_per_token": 0}]},
        "cloud": {"models": [{"model": "openai/gpt-4o", "mock_response": "y", "input_cost_per_token": 1e-6,
                              "output_cost_per_token": 2e-6}]},
        "frontier": {"models": [{"model": "openai/gpt-4o", "mock_response": "z"}]},
    }
    router = make_router(tiers=tiers, default="local", baseline="cloud")
    result = router.complete(StepRequest("s", MSG))
    assert result.cost_usd == 0
    assert result.baseline_cost_usd == pytest.approx(10 * 1e-6 + 20 * 2e-6)


def test_unpriced_model_counts_zero_and_warns(make_router, caplog):
    tiers = {"t": {"models": [{"model": "openai/unpriced-model-xyz", "mock_response": "x"}]}}
    with caplog.at_level("WARNING", logger="steproute"):
        router = make_router(tiers=tiers, default="t")
    assert "no price for openai/unpriced-model-xyz" in caplog.text
    assert router.complete(StepRequest("s", MSG)).cost_usd == 0


def test_cached_tokens_are_priced_at_the_cache_rate():
    price = Price(input=2e-6, output=1e-5, cache_read=1e-6)
    assert call_cost(price, Usage(input_tokens=100, output_tokens=0, cache_read_tokens=40)) == pytest.approx(
        60 * 2e-6 + 40 * 1e-6)


async def test_async_and_stream_paths(make_router):
    router = make_router(default="standard")
    result = await router.acomplete(StepRequest("s", MSG))
    assert result.decision.tier == "standard"
    items = list(router.stream(StepRequest("s", MSG)))
    text = "".join(getattr(i, "content", "") for i in items[:-1])
    assert text == "answer from standard"
    summary = items[-1]
    assert summary.decision.tier == "standard" and summary.usage.output_tokens > 0 and summary.cost_usd > 0
    aitems = [i async for i in router.astream(StepRequest("s", MSG))]
    assert aitems[-1].baseline_cost_usd >= aitems[-1].cost_usd


def test_cost_is_priced_at_the_deployment_that_answered_even_with_one_model_name(make_router):
    # Two deployments of the same model at different prices (two regions, two contracts): the
    # first fails, so the call must be priced at the second deployment's price.
    tiers = {"t": {"models": [
        {"model": "openai/gpt-4o", "mock_response": "litellm.InternalServerError",
         "input_cost_per_token": 1.0, "output_cost_per_token": 1.0},
        {"model": "openai/gpt-4o", "mock_response": "ok", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
    ]}}
    result = make_router(tiers=tiers, default="t").complete(StepRequest("s", MSG))
    assert result.completion.content == "ok"
    assert result.cost_usd == pytest.approx(10 * 1e-6 + 20 * 2e-6)
