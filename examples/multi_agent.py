"""langgraph-supervisor's README quickstart, routed by steproute: one shared model, one tier per agent.

The app is the package's own quickstart (a supervisor, a research expert and a math expert made
with ``create_react_agent``); the only steproute line is ``model = router.chat_model()``. The
models are served by llmock on 127.0.0.1 with a scripted conversation (no API key, no download),
so the tiers each agent reached and the bill are real LiteLLM calls over HTTP.

    python examples/multi_agent.py            # prints the per-call and the per-agent bill
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from llmock.scenarios import Reply, ToolCall
from llmock.testing import LLMockServer

from steproute import RouterConfig, StepCostTracker, StepRouter

CONFIG = {
    "tiers": {"fast": {"models": ["openai/gpt-4o-mini"]},
              "standard": {"models": ["openai/gpt-4.1-mini"]},
              "advanced": {"models": ["openai/gpt-4o"]}},
    "default": "fast",
    "steps": {"supervisor": "standard", "research_expert": "fast", "math_expert": "advanced"},
}


@tool
def web_search(query: str) -> str:
    """Search the web for information."""
    return "FAANG headcount 2024: Meta 67,317; Google 181,269."


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def build_app(model):
    """The quickstart of langgraph-supervisor's README, unchanged but for the model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent
        from langgraph_supervisor import create_supervisor

        research = create_react_agent(model=model, tools=[web_search], name="research_expert",
                                      prompt="You are a world class researcher with access to web search.")
        math = create_react_agent(model=model, tools=[add], name="math_expert",
                                  prompt="You are a math expert. Always use one tool at a time.")
        return create_supervisor([research, math], model=model,
                                 prompt="You manage a research expert and a math expert.").compile()


def main() -> None:
    with LLMockServer(host="127.0.0.1") as server:
        for name, args in (("transfer_to_research_expert", {}), ("web_search", {"query": "FAANG headcount 2024"})):
            server.state.scenarios.add(Reply(tool_calls=(ToolCall(name, args),), times=1))
        server.state.scenarios.add(Reply(text="Meta 67,317 and Google 181,269.", times=1))
        for name, args in (("transfer_to_math_expert", {}), ("add", {"a": 67317, "b": 181269})):
            server.state.scenarios.add(Reply(tool_calls=(ToolCall(name, args),), times=1))
        server.state.scenarios.add(Reply(text="248,586.", times=1))
        server.state.scenarios.add(Reply(text="Meta and Google had 248,586 employees together in 2024.", times=1))
        config = dict(CONFIG)
        config["tiers"] = {t: {"models": [{"model": m["models"][0], "api_base": server.base_url("openai"),
                                            "api_key": "not-needed"}]} for t, m in CONFIG["tiers"].items()}
        router = StepRouter(RouterConfig(**config))
        tracker = StepCostTracker()
        app = build_app(router.chat_model())  # the one steproute line in the app
        result = app.invoke({"messages": [HumanMessage("What is the combined headcount of Meta and Google?")]},
                            {"callbacks": [tracker], "configurable": {"thread_id": "demo-1"}})
    print("assistant:", result["messages"][-1].content, "\n")
    print(tracker.table(reasons=True), "\n")
    print(tracker.table(per_step=True))


if __name__ == "__main__":
    main()
