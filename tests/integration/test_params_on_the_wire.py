"""What the chat model's parameters become on the wire (LiteLLM → llmock over HTTP): every
request a routed call makes carries them, on every surface and on every tier the call walks
(fallback, cascade). Issue 16: a planted bug that dropped them passed the suite, whose test read
back the model's own fields instead of the request the provider received."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import HumanMessage
from llmock.scenarios import Fail, Match, Reply

from steproute import RouterConfig, StepRouter, step

pytestmark = pytest.mark.integration
CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"
SENT = {"temperature": 0.3, "max_tokens": 7, "seed": 5}


def router_for(llmock, **steps: dict) -> StepRouter:
    tiers = {name: {"models": [{"model": f"openai/{model}", "api_base": llmock.base_url(), "api_key": "k"}]}
             for name, model in (("fast", CHEAP), ("strong", STRONG))}
    return StepRouter(RouterConfig(tiers=tiers, default="fast", steps=steps, dispatch={"num_retries": 0}))


def on_the_wire(llmock) -> list[dict]:
    return [{k: r.body.get(k) for k in SENT} for r in sorted(llmock.requests, key=lambda r: r.seq)]


def test_chat_model_fields_reach_the_provider_on_every_surface(llmock):
    llm = router_for(llmock).chat_model(temperature=0.3, max_tokens=7, model_kwargs={"seed": 5})
    llm.invoke("hi")
    asyncio.run(llm.ainvoke("hi"))
    list(llm.stream("hi"))
    llm.batch(["a", "b"])

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return city

    llm.bind_tools([get_weather]).invoke("weather in Oslo?")
    assert on_the_wire(llmock) == [SENT] * 6
    assert [r.stream for r in sorted(llmock.requests, key=lambda r: r.seq)] == [False, False, True, False, False, False]


def test_a_calls_own_kwargs_win_over_the_fields_on_the_wire(llmock):
    llm = router_for(llmock).chat_model(temperature=0.3, max_tokens=7, model_kwargs={"seed": 5})
    llm.invoke([HumanMessage("hi")], temperature=0.0, seed=9)
    assert on_the_wire(llmock) == [{"temperature": 0.0, "max_tokens": 7, "seed": 9}]


def test_the_fields_reach_every_tier_a_call_walks(llmock):
    """A fallback's and a cascade's later attempts are the same call: same parameters."""
    router = router_for(llmock, answer={"policy": "cascade", "signals": [{"signal": "hedging"}]})
    llm = router.chat_model(temperature=0.3, max_tokens=7, model_kwargs={"seed": 5})
    llmock.add(Fail(500, times=None, match=Match(model=CHEAP)))
    message = llm.invoke("hi", config={"metadata": step("other")})  # fast is down: falls back to strong
    assert message.response_metadata["steproute"]["fallback_from"] == "fast"
    models = [r.model for r in sorted(llmock.requests, key=lambda r: r.seq)]  # the SDK may retry the 500s
    assert models[-1] == STRONG and set(models) == {CHEAP, STRONG}
    assert on_the_wire(llmock) == [SENT] * len(models)

    llmock.reset()
    llmock.add(Reply(text="I'm not sure, maybe Lyon.", match=Match(model=CHEAP)))
    llmock.add(Reply(text="Paris.", match=Match(model=STRONG)))
    message = llm.invoke("Capital of France?", config={"metadata": step("answer")})  # cheap hedges: escalates
    assert message.content == "Paris."
    assert [r.model for r in sorted(llmock.requests, key=lambda r: r.seq)] == [CHEAP, STRONG]
    assert on_the_wire(llmock) == [SENT, SENT]
