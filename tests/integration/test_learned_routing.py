"""Learned policies over real HTTP: a trained classifier and an LLM router in a LangGraph graph,
LiteLLM → llmock on 127.0.0.1."""

from __future__ import annotations

from typing import TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from steproute import RouterConfig, StepRouter, step
from steproute.evaluation._train import train_classifier
from steproute.policies._artefact import save_artefact
from tests.unit.test_learned_policies import MODELS, PROOF, synthetic_rows

pytestmark = pytest.mark.integration


def tiers(llmock) -> dict:
    return {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_base": llmock.base_url(), "api_key": "k"}]},
            "strong": {"models": [{"model": "openai/gpt-4o", "api_base": llmock.base_url(), "api_key": "k"}]}}


class State(TypedDict, total=False):
    question: str
    answer: str


def graph_for(router: StepRouter):
    model = router.chat_model()

    def answer(state: State) -> State:
        reply = model.invoke([HumanMessage(state["question"])], config=step("answer"))
        return {"answer": reply.response_metadata["model_name"]}

    g = StateGraph(State)
    g.add_node("answer", answer)
    g.add_edge(START, "answer")
    g.add_edge("answer", END)
    return g.compile()


def test_a_trained_classifier_routes_a_graph_step_over_http(llmock, tmp_path):
    save_artefact(train_classifier(synthetic_rows(300), MODELS, folds=0), tmp_path / "a.steproute")
    router = StepRouter(RouterConfig(tiers=tiers(llmock), default="fast", steps={
        "answer": {"policy": "classifier", "artefact": str(tmp_path / "a.steproute"), "threshold": 0.1}}))
    app = graph_for(router)
    easy = app.invoke({"question": "What is the capital of Norway?"})
    hard = app.invoke({"question": PROOF.messages[0]["content"]})
    assert [easy["answer"], hard["answer"]] == ["openai/gpt-4o-mini", "openai/gpt-4o"]
    assert [r.model for r in llmock.requests] == ["gpt-4o-mini", "gpt-4o"]


async def test_an_llm_router_asks_the_cheap_tier_then_dispatches(llmock):
    router = StepRouter(RouterConfig(tiers=tiers(llmock), default="fast", steps={
        "answer": {"policy": "llm", "router_tier": "fast", "fallback": "strong",
                   "choices": {"fast": "short factual lookups", "strong": "proofs and multi-step reasoning"}}}))
    app = graph_for(router)
    llmock.reply("fast")  # the routing answer; the step's own answer is llmock's default text
    assert app.invoke({"question": "Capital of Peru?"})["answer"] == "openai/gpt-4o-mini"
    routing, answered = llmock.requests
    assert routing.model == "gpt-4o-mini" and routing.body["max_tokens"] == 8 and routing.body["temperature"] == 0
    assert "proofs and multi-step reasoning" in routing.body["messages"][0]["content"]
    assert "Capital of Peru?" in routing.body["messages"][1]["content"]
    assert answered.model == "gpt-4o-mini"

    llmock.reset()
    llmock.reply("Hmm, it depends on the question.")  # unparsable: the fallback answers, counted
    assert (await app.ainvoke({"question": "Prove it."}))["answer"] == "openai/gpt-4o"
    policy = router.policy_of("answer")
    assert (policy.calls, policy.unparsable, policy.failed) == (2, 1, 0)

    llmock.reset()
    llmock.fail(500, times=None, model="gpt-4o-mini")  # the routing tier is down: the step still answers
    assert app.invoke({"question": "Prove it."})["answer"] == "openai/gpt-4o"
    assert policy.failed == 1
