"""Which step a call belongs to (hint > agent/subgraph > node > default), hints on the model, and
the warning when configuration and the arriving step names disagree."""

from __future__ import annotations

import logging

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import BaseModel

from steproute import step
from steproute._step_identity import StepIdentity, parent_nodes, resolve_step

NS = "supervisor:1f0|research_expert:2a1|agent:3b2"


def test_parent_nodes_are_innermost_first():
    assert parent_nodes({"langgraph_checkpoint_ns": NS}) == ["research_expert", "supervisor"]
    assert parent_nodes({"langgraph_checkpoint_ns": "plan:9c2"}) == []
    assert parent_nodes({"checkpoint_ns": "team:1|node:2"}) == ["team"]
    assert parent_nodes({}) == []


@pytest.mark.parametrize(("metadata", "declared", "configured", "expected"), [
    ({"langgraph_node": "agent", "langgraph_checkpoint_ns": NS}, None, {},
     StepIdentity("research_expert", "subgraph", "research_expert")),
    ({"langgraph_node": "agent", "langgraph_checkpoint_ns": NS}, None, {"supervisor": 1},
     StepIdentity("supervisor", "subgraph", "research_expert")),                        # a configured outer node
    ({"langgraph_node": "agent", "langgraph_checkpoint_ns": NS}, None, {"agent": 1},
     StepIdentity("agent", "node", "research_expert")),                                 # a configured inner node
    ({"langgraph_node": "model", "lc_agent_name": "writer", "langgraph_checkpoint_ns": "model:1"}, None, {},
     StepIdentity("writer", "agent", "writer")),                                        # create_agent(name=...)
    ({"langgraph_node": "agent", "langgraph_checkpoint_ns": NS}, "critic", {"research_expert": 1},
     StepIdentity("critic", "model", "research_expert")),                               # explicit wins
    ({"langgraph_node": "plan", "langgraph_checkpoint_ns": "plan:1"}, None, {},
     StepIdentity("plan", "node", None)),
    ({}, None, {}, StepIdentity("default", "default", None)),
])
def test_resolution_order(metadata, declared, configured, expected):
    assert resolve_step(metadata, declared, configured) == expected


def two_agents_graph(router):
    """Two nodes that call one shared model; the second wraps its call in a subgraph."""
    model = router.chat_model()

    def ask(state):
        return {"messages": [model.invoke(state["messages"])]}

    inner = StateGraph(MessagesState)
    inner.add_node("agent", ask)
    inner.add_edge(START, "agent")
    outer = StateGraph(MessagesState)
    outer.add_node("planner", ask)
    outer.add_node("math_expert", inner.compile())
    outer.add_edge(START, "planner")
    outer.add_edge("planner", "math_expert")
    return outer.compile()


def routed(result):
    return [(m.response_metadata["steproute"]["step"], m.response_metadata["steproute"]["tier"],
             m.response_metadata["steproute"]["agent"]) for m in result["messages"] if m.type == "ai"]


def test_a_subgraph_call_is_routed_as_the_parent_node(make_router):
    router = make_router(steps={"planner": "standard", "math_expert": "advanced"})
    result = two_agents_graph(router).invoke({"messages": [HumanMessage("hi")]})
    assert routed(result) == [("planner", "standard", None), ("math_expert", "advanced", "math_expert")]


def test_each_subgraph_keeps_its_own_pin_on_a_thread(make_router):
    router = make_router(steps={"planner": "standard", "math_expert": "advanced"})
    graph = two_agents_graph(router)
    config = {"configurable": {"thread_id": "t-1"}}
    graph.invoke({"messages": [HumanMessage("hi")]}, config)
    again = graph.invoke({"messages": [HumanMessage("again")]}, config)
    assert routed(again)[-2:] == [("planner", "standard", None), ("math_expert", "advanced", "math_expert")]
    pins = {m.response_metadata["steproute"]["pin_group"] for m in again["messages"] if m.type == "ai"}
    assert pins == {"planner", "math_expert"}


def test_hints_on_the_model_reach_the_decision(make_router):
    router = make_router(steps={"critic": "fast"})
    message = router.chat_model(step="critic", min_tier="standard", max_tier="standard").invoke("hi")
    meta = message.response_metadata["steproute"]
    assert (meta["step"], meta["tier"]) == ("critic", "standard")
    pinned = router.chat_model(step="critic", pin="off").invoke("hi", {"configurable": {"thread_id": "t"}})
    assert pinned.response_metadata["steproute"]["pin_group"] is None
    assert router.chat_model(tier="advanced").invoke("hi").response_metadata["steproute"]["tier"] == "advanced"


def test_hints_on_the_model_survive_bind_tools_and_structured_output(make_router):
    router = make_router()
    model = router.chat_model(tier="advanced")

    def weather(city: str) -> str:
        """The weather."""
        return city

    class Answer(BaseModel):
        text: str

    assert model.bind_tools([weather]).invoke("hi").response_metadata["steproute"]["tier"] == "advanced"
    raw = model.with_structured_output(Answer, include_raw=True).invoke("hi")["raw"]
    assert raw.response_metadata["steproute"]["tier"] == "advanced"


def test_a_run_hint_wins_over_the_models_field_by_field(make_router):
    router = make_router()
    model = router.chat_model(step="critic", tier="advanced")
    message = model.invoke("hi", {"metadata": step("reviewer", max_tier="standard")})
    meta = message.response_metadata["steproute"]
    # the step and max_tier come from the run; the model's fixed tier is clamped by the run's ceiling
    assert (meta["step"], meta["tier"]) == ("reviewer", "standard")


def test_with_config_hints_become_the_models_own(make_router):
    router = make_router()
    configured = router.chat_model().with_config(metadata={**step("reviewer", tier="standard"), "team": "a"}, tags=["x"])
    bound = configured.bound
    assert (bound.step, bound.tier) == ("reviewer", "standard")  # survives a factory that unwraps .bound
    assert configured.config["metadata"] == {"team": "a"} and configured.config["tags"] == ["x"]
    plain = router.chat_model().with_config(metadata=step("reviewer", tier="standard"))
    assert (plain.step, plain.tier) == ("reviewer", "standard")


def test_unknown_tiers_and_pin_modes_on_the_model_are_refused(make_router):
    router = make_router()
    with pytest.raises(ValueError, match=r"tier 'gold' is not a tier \(known: fast, standard, advanced\)"):
        router.chat_model(tier="gold")
    with pytest.raises(ValueError, match="max_tier a 24-character value is not a tier"):
        router.chat_model(max_tier="sk-live-7f3c9a1b2d4e6f80")
    with pytest.raises(ValueError, match="pin must be one of"):
        router.chat_model(pin="forever")


def test_configuration_and_reality_disagreeing_is_said_once(make_router, caplog):
    router = make_router(steps={"researcher": "advanced", "writer": "standard"})
    model = router.chat_model()
    with caplog.at_level(logging.INFO, logger="steproute"):
        for _ in range(3):
            model.invoke("hi", {"metadata": {"langgraph_node": "agent"}})
        writer = model.invoke("hi", {"metadata": {"langgraph_node": "writer"}})
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["steproute: calls arrive as step 'agent', which matches no steps: entry (by name or kind), so "
                      "the default policy routes them; configured steps that have matched no call so far: 'researcher', "
                      "'writer'. See docs/integrations.md for how a call's step is found."]
    decision = model.invoke("hi", {"metadata": {"langgraph_node": "agent"}}).response_metadata["steproute"]
    assert decision["reason"] == "step 'agent' (node) matches no steps: entry; default policy: fixed tier 'fast'"
    assert writer.response_metadata["steproute"]["reason"] == "fixed tier 'standard'"
    assert router.coverage.unmatched_entries() == ["researcher"]
    assert router.coverage.unconfigured_steps() == ["agent"]


def test_no_warning_without_step_entries(make_router, caplog):
    router = make_router()
    with caplog.at_level(logging.WARNING, logger="steproute"):
        router.chat_model().invoke("hi", {"metadata": {"langgraph_node": "agent"}})
    assert not caplog.records
    assert router.chat_model().invoke("hi").response_metadata["steproute"]["reason"] == "fixed tier 'fast'"
