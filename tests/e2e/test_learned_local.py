"""The llm policy on a real local model: strict parsing of what a small model really answers."""

from __future__ import annotations

from steproute import RouterConfig, StepRequest, StepRouter


def test_a_local_model_routes_and_its_answers_are_parsed_strictly(local_servers):
    config = RouterConfig(tiers=local_servers.tiers_config(), default="fast", steps={
        "answer": {"policy": "llm", "router_tier": "strong", "fallback": "strong", "max_tokens": 4,
                   "choices": {"fast": "greetings and one-word lookups", "strong": "maths, proofs and code"}}})
    router = StepRouter(config)
    questions = ["Hi there!", "Prove that the square root of 2 is irrational.", "Write a Python quicksort.",
                 "What colour is the sky?"]
    decisions = [router.decide(StepRequest("answer", [{"role": "user", "content": q}])) for q in questions]
    policy = router.policy_of("answer")
    parsed = [d for d in decisions if " answered " in d.reason]
    fell_back = [d for d in decisions if "unparsable routing answer" in d.reason]
    # every decision is one or the other, the counters agree, and nothing failed on the way
    assert len(parsed) + len(fell_back) == len(questions)
    assert (policy.calls, policy.unparsable, policy.failed) == (len(questions), len(fell_back), 0)
    assert all(d.tier == "strong" for d in fell_back)
    assert all(d.tier in ("fast", "strong") for d in parsed)
    assert parsed  # Qwen2.5-Coder-0.5B at temperature 0 names a tier for all four (SmolLM2-135M for none)
