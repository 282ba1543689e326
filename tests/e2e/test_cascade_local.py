"""The cascade on real local models: SmolLM2-135M answers first, Qwen2.5-Coder-0.5B when the
answer's real token log-probabilities, its arithmetic or its JSON schema say no."""

from __future__ import annotations

import jsonschema
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.policies.confidence import Answer, parse_json_answer

QUESTIONS = {  # question → the right number
    "What is 7 + 5?": 12, "What is 2 + 2?": 4, "What is 9 - 3?": 6, "What is 12 + 30?": 42, "What is 100 / 4?": 25,
}
SCHEMA = {"type": "object", "properties": {"item": {"type": "string"}, "quantity": {"type": "integer"}},
          "required": ["item", "quantity"], "additionalProperties": False}
LOGPROB_THRESHOLD = 0.7


def priced(tiers: dict) -> dict:
    prices = {"fast": 1e-7, "strong": 2e-6}
    for tier, spec in tiers.items():
        spec["models"][0].update(input_cost_per_token=prices[tier], output_cost_per_token=prices[tier])
    return tiers


def test_a_cascade_escalates_on_real_logprobs_arithmetic_and_schema(local_servers):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = StepRouter(RouterConfig(tiers=priced(local_servers.tiers_config()), default="fast", steps={
        "calculate": {"policy": "cascade", "signals": [{"signal": "arithmetic"},
                                                      {"signal": "logprob", "threshold": LOGPROB_THRESHOLD}]},
        "extract": {"policy": "cascade", "signals": [{"signal": "schema"}]},
    }), tracer_provider=provider)

    results = {q: router.complete(StepRequest("calculate", [{"role": "user", "content": f"{q} Reply with the number only."}]),
                                  max_tokens=12, temperature=0) for q in QUESTIONS}
    why = {"logprob": 0, "arithmetic": 0, "accepted": 0}
    for question, result in results.items():
        d = result.decision
        first = d.cascade[0]
        signals = dict(first.signals)
        assert first.tier == "fast" and first.model == "openai/smollm2-135m"
        assert "logprob" in signals or signals.get("arithmetic") == 0.0  # real logprobs came back
        if first.accepted:
            why["accepted"] += 1
            assert (d.tier, d.attempts, d.escalated_from) == ("fast", 1, None)
            assert signals["logprob"] >= LOGPROB_THRESHOLD and signals.get("arithmetic", 1.0) == 1.0
            assert result.cost_usd == result.completion.cost_usd
        else:
            assert (d.tier, d.attempts, d.escalated_from) == ("strong", 2, "fast"), question
            assert [a.tier for a in d.cascade] == ["fast", "strong"]
            if signals.get("arithmetic") == 0.0:
                why["arithmetic"] += 1
            else:
                assert signals["logprob"] < LOGPROB_THRESHOLD
                why["logprob"] += 1
            # the step paid for both attempts
            assert result.cost_usd == sum(a.cost_usd for a in d.cascade) > result.completion.cost_usd
            # Qwen's answer to these is right
            assert str(QUESTIONS[question]) in result.completion.content, (question, result.completion.content)
    # SmolLM2 at temperature 0: "2 + 2 = 4" (accepted), "12 + 30 = 32" and "100 / 4 = 2.25" (confident, but wrong
    # sums), "7 + 5 = 12" and "9 - 3 is 2" (low probability)
    assert all(n > 0 for n in why.values()), why

    extract = router.complete(StepRequest("extract", [{"role": "user", "content": (
        "Extract the item and quantity as JSON with keys item and quantity: 'I bought 3 notebooks.'")}],
        response_schema=SCHEMA), max_tokens=40, temperature=0)
    d = extract.decision
    assert (d.cascade[0].tier, d.cascade[0].accepted, dict(d.cascade[0].signals)) == ("fast", False, {"schema": 0.0})
    assert d.tier == "strong"
    value = parse_json_answer(Answer(extract.completion.content))
    jsonschema.validate(value, SCHEMA)
    assert value["quantity"] == 3 and "notebook" in value["item"]

    # every attempt is a chat span under its step's route span; the route span's cost is the step's
    spans = exporter.get_finished_spans()
    routes = [s for s in spans if s.name.startswith("route ")]
    assert len(routes) == len(QUESTIONS) + 1
    for route in routes:
        chats = [s for s in spans if s.parent is not None and s.parent.span_id == route.context.span_id]
        chain = list(route.attributes["steproute.cascade.chain"])
        assert len(chats) == route.attributes["steproute.attempts"] == len(chain)
        assert chain in (["fast"], ["fast", "strong"])
        assert [c.attributes["steproute.cascade.role"] for c in chats] == ["attempt"] * (len(chain) - 1) + ["answer"]
        assert route.attributes["steproute.step.cost.usd"] == sum(c.attributes["steproute.cost.usd"] for c in chats)
