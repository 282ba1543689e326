"""Pin mode ``turn`` over the real path: LangChain's ``create_agent`` tool loop with a routed
model, LiteLLM over HTTP to llmock, a multi-turn thread (docs/pinning.md, "Agent turns")."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, convert_to_openai_messages
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.decision_log import read_log

pytestmark = pytest.mark.integration
MODELS = {"fast": "gpt-4o-mini", "standard": "gpt-4.1-mini", "advanced": "gpt-4o"}
FORECAST = "Sunny all day, light wind from the west, 18 to 22 degrees, no rain expected this week. " * 5
# 'prove' → advanced; a short conversation → fast; else standard. A tool result makes the
# conversation long, so the policy alone would move a turn that began on fast to standard.
RULES = {"policy": "rules", "fallback": "standard",
         "rules": [{"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"},
                   {"name": "short", "when": {"max_input_tokens": 30}, "tier": "fast"}],
         "pinning": {"mode": "turn"}}

FAST_TURNS = {**RULES, "rules": [{"name": "chat", "when": {"max_input_tokens": 100_000}, "tier": "fast"}]}


@tool
def forecast(city: str) -> str:
    """The week's weather forecast for a city."""
    return FORECAST


def tiers(llmock: Any, models: dict[str, list[str]]) -> dict[str, Any]:
    return {t: {"models": [{"model": "openai/" + m, "api_base": llmock.base_url(), "api_key": "k"} for m in ms]}
            for t, ms in models.items()}


def routed(messages: list[Any]) -> list[tuple[str, bool, str]]:
    return [(m.response_metadata["steproute"]["tier"], m.response_metadata["steproute"]["pinned"],
             m.response_metadata["steproute"]["reason"]) for m in messages if isinstance(m, AIMessage)]


def test_a_create_agent_tool_loop_stays_on_the_model_that_began_each_turn(llmock, tmp_path):
    router = StepRouter(RouterConfig(tiers=tiers(llmock, {t: [m] for t, m in MODELS.items()}), default="fast",
                                     steps={"helper": RULES}), decision_log=tmp_path / "d.jsonl")
    agent = create_agent(router.chat_model(), tools=[forecast], name="helper", checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "chat-1"}}

    def turn(text: str, tool_calls: int) -> list[Any]:
        for _ in range(tool_calls):
            llmock.call_tool("forecast", {"city": "Paris"})
        llmock.reply("Sunny.")
        before = len(llmock.requests)
        messages = agent.invoke({"messages": [HumanMessage(text)]}, thread)["messages"]
        opened = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
        assert sum(isinstance(m, ToolMessage) for m in messages[opened:]) == tool_calls
        return [*routed(messages[opened:]), [r.model for r in llmock.requests[before:]]]

    # turn 1 opens short (fast); after each long tool result the policy alone would say standard
    *calls, wire = turn("Weather in Paris?", tool_calls=2)
    assert [(tier, pinned) for tier, pinned, _ in calls] == [("fast", False), ("fast", True), ("fast", True)]
    assert calls[1][2].startswith("pinned for this turn: tier 'fast' (turn, group 'helper') by d-")
    assert wire == ["gpt-4o-mini"] * 3
    assert router.decide(_request_like_the_last_call(agent, thread)).tier == "standard"

    # turn 2: the next user message is routed afresh, and its tool loop stays there
    *calls, wire = turn("Now prove it will not rain in Lyon", tool_calls=1)
    assert [(tier, pinned) for tier, pinned, _ in calls] == [("advanced", False), ("advanced", True)]
    assert calls[0][2].endswith("; new turn") and wire == ["gpt-4o"] * 2

    # turn 3 may go down: the policy decides again (a long conversation: standard)
    *calls, wire = turn("Thanks!", tool_calls=1)
    assert [(tier, pinned) for tier, pinned, _ in calls] == [("standard", False), ("standard", True)]
    assert wire == ["gpt-4.1-mini"] * 2

    router.decision_log.close()
    logged = read_log(tmp_path / "d.jsonl").decisions
    assert [(d["tier"], d["pinned"]) for d in logged] == [
        ("fast", False), ("fast", True), ("fast", True), ("advanced", False), ("advanced", True),
        ("standard", False), ("standard", True)]
    assert all(d["reason"].startswith("pinned for this turn") for d in logged if d["pinned"])


def _request_like_the_last_call(agent: Any, thread: dict[str, Any]) -> Any:
    """The thread's conversation as the policy would see it (OpenAI format), to show what it would choose."""
    state = agent.get_state(thread).values["messages"]
    last_tool = max(i for i, m in enumerate(state) if isinstance(m, ToolMessage))
    return StepRequest("helper", convert_to_openai_messages(state[: last_tool + 1]))


def test_a_two_deployment_tier_keeps_the_conversation_on_the_deployment_that_served_it_last(llmock):
    router = StepRouter(RouterConfig(
        tiers=tiers(llmock, {"fast": ["gpt-4o-mini", "gpt-4.1-nano"], "standard": ["gpt-4.1-mini"],
                             "advanced": ["gpt-4o"]}),
        default="fast", steps={"helper": FAST_TURNS}, dispatch={"allowed_fails": 100}))
    llm = router.chat_model(step="helper")
    thread = {"configurable": {"thread_id": "chat-2"}, "metadata": {"thread_id": "chat-2"}}  # as LangGraph passes it
    history: list[Any] = []

    def say(text: str) -> dict[str, Any]:
        history.append(HumanMessage(text))
        answer = llm.invoke(history, thread)
        history.append(answer)
        return answer.response_metadata["steproute"]

    llmock.fail(500, times=None, model="gpt-4o-mini")  # the tier's first deployment is down
    first = say("hi")
    assert (first["tier"], first["model"]) == ("fast", "openai/gpt-4.1-nano")
    llmock.reset()  # it is back; the conversation stays where its prompt cache is warm
    second = say("ok")
    assert (second["tier"], second["model"], second["pinned"]) == ("fast", "openai/gpt-4.1-nano", False)
    assert "deployment 'openai/gpt-4.1-nano' first (it served this conversation last)" in second["reason"]
    assert [r.model for r in llmock.requests] == ["gpt-4.1-nano"]

    llmock.fail(500, times=None, model="gpt-4.1-nano")  # now the warm one fails: the tier's order, and a re-pin
    third = say("and?")
    assert (third["model"], third["repinned"]) == ("openai/gpt-4o-mini", True)
    llmock.reset()
    fourth = say("bye")
    assert (fourth["model"], fourth["repinned"]) == ("openai/gpt-4o-mini", False)
    assert [r.model for r in llmock.requests] == ["gpt-4o-mini"]
