"""`route_init_chat_model` and `route_factory`: the patch itself (install, undo, threads, what is kept)."""

from __future__ import annotations

import logging
import sys
import threading
import types

import langchain.chat_models.base as lc_base
import pytest
from langchain.agents import create_agent

import steproute
from steproute import RoutedChatModel, StepRouteError
from steproute.factories import route_factory, route_init_chat_model, routed_fields

ORIGINAL = lc_base._init_chat_model_helper


@pytest.fixture(autouse=True)
def _restored():
    yield
    assert lc_base._init_chat_model_helper is ORIGINAL  # every test leaves LangChain as it found it


def test_init_chat_model_imported_before_and_after_the_line_is_routed(make_router):
    from langchain.chat_models import init_chat_model as imported_before

    router = make_router(steps={"plan": "advanced"})
    fixed_before = imported_before("openai:gpt-4o-mini", configurable_fields=("model",))  # built before, too
    with router.route_init_chat_model() as patch:
        from langchain.chat_models import init_chat_model as imported_after

        assert patch.installed and patch.targets == ("langchain.chat_models.base:_init_chat_model_helper",)
        for factory in (imported_before, imported_after):
            model = factory("openai:gpt-4o", temperature=0.1, max_tokens=20)
            assert isinstance(model, RoutedChatModel) and model.router is router
            assert (model.temperature, model.max_tokens, model.step) == (0.1, 20, None)
        assert fixed_before.invoke("hi", config={"metadata": steproute.step("plan")}).content == "answer from advanced"
    assert not patch.installed
    with pytest.raises(ImportError, match="langchain-openai"):  # LangChain's own behaviour again
        imported_before("openai:gpt-4o")


@pytest.mark.parametrize(("model", "provider", "step"), [
    ("steproute:plan", None, "plan"),
    ("plan", "steproute", "plan"),
    ("Steproute:plan", None, "plan"),
    (None, "steproute", None),
    ("openai:gpt-4o", None, None),
    ("gpt-4o", "openai", None),
])
def test_model_strings_that_name_a_step(make_router, model, provider, step):
    from langchain.chat_models import init_chat_model

    with route_init_chat_model(make_router()):
        if model is None:
            built = init_chat_model(model_provider=provider)._model()  # what a call builds
        else:
            built = init_chat_model(model, model_provider=provider)
    assert isinstance(built, RoutedChatModel) and built.step == step


def test_steproute_provider_is_rejected_without_the_line():
    from langchain.chat_models import init_chat_model

    with pytest.raises(ValueError, match="provider"):
        init_chat_model("steproute:plan")


def test_a_fully_configurable_model_takes_the_step_from_the_run(make_router):
    from langchain.chat_models import init_chat_model

    router = make_router(steps={"plan": "advanced"})
    anything = init_chat_model()  # configurable_fields=("model", "model_provider"), no default model
    with router.route_init_chat_model(step="rewrite"):
        plain = anything.invoke("hi")
        named = anything.invoke("hi", config={"configurable": {"model": "steproute:plan"}})
        tools = anything.bind_tools([{"type": "function", "function": {"name": "f", "parameters": {}}}]).invoke("hi")
    assert plain.response_metadata["steproute"]["step"] == "rewrite"        # the line's step
    assert (named.response_metadata["steproute"]["step"], named.content) == ("plan", "answer from advanced")
    assert tools.response_metadata["steproute"]["step"] == "rewrite"        # bind_tools queued, then routed


def test_create_agent_with_a_provider_string_is_routed(make_router):
    with make_router(steps={"model": "standard"}).route_init_chat_model():
        agent = create_agent("openai:gpt-4o", tools=[])
    answer = agent.invoke({"messages": [("user", "hi")]})["messages"][-1]
    assert answer.response_metadata["model_name"] == "openai/gpt-4.1-mini"  # the standard tier, not gpt-4o


def test_installing_twice_patches_once_and_the_latest_routing_wins(make_router):
    from langchain.chat_models import init_chat_model

    first, second = make_router(), make_router()
    a = route_init_chat_model(first)
    a_again = route_init_chat_model(first)
    b = route_init_chat_model(second)
    assert lc_base._init_chat_model_helper.__wrapped__ is ORIGINAL        # one wrapper, not a wrapper of one
    assert init_chat_model("openai:gpt-4o").router is second
    b.uninstall()
    b.uninstall()                                                        # a second uninstall does nothing
    assert init_chat_model("openai:gpt-4o").router is first
    a.uninstall()
    assert init_chat_model("openai:gpt-4o").router is first             # a_again still holds it
    a_again.uninstall()
    assert lc_base._init_chat_model_helper is ORIGINAL
    assert "uninstalled" in repr(a)


def test_concurrent_installs_calls_and_uninstalls(make_router):
    from langchain.chat_models import init_chat_model

    routers = [make_router() for _ in range(4)]
    held = route_init_chat_model(routers[0])
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def churn(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(40):
                with route_init_chat_model(routers[i % 4]):
                    assert init_chat_model("openai:gpt-4o").router in routers
        except BaseException as exc:
            errors.append(exc)

    def call() -> None:
        try:
            barrier.wait()
            for _ in range(100):
                assert isinstance(init_chat_model("openai:gpt-4o"), RoutedChatModel)  # `held` is never removed
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(6)] + [threading.Thread(target=call)
                                                                               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert init_chat_model("openai:gpt-4o").router is routers[0]
    held.uninstall()


def test_what_is_kept_and_what_is_ignored():
    fields, kept, ignored = routed_fields({
        "model": "gpt-4o", "model_provider": "openai", "temperature": 0, "max_completion_tokens": 9,
        "stop": "END", "timeout": (1, 5), "request_timeout": 30, "top_p": 0.5, "model_kwargs": {"user": "u"},
        "api_key": "sk-secret", "base_url": "http://x", "tags": ["t"], "max_retries": None})
    assert fields == {"temperature": 0, "max_tokens": 9, "stop": ["END"], "timeout": 30,
                      "model_kwargs": {"top_p": 0.5, "user": "u"}, "tags": ["t"]}
    assert kept == ["max_completion_tokens", "model_kwargs", "request_timeout", "stop", "tags", "temperature", "top_p"]
    assert ignored == ["api_key", "base_url", "timeout"]  # max_retries=None: not set, so not ignored either


def test_the_log_says_it_once_names_parameters_and_never_values(make_router, caplog):
    from langchain.chat_models import init_chat_model

    caplog.set_level(logging.INFO, logger="steproute")
    model = init_chat_model("openai:gpt-4o", configurable_fields="any", api_key="sk-live-0123456789abcdef")
    with make_router().route_init_chat_model():
        for _ in range(3):
            model.invoke("hi")
        init_chat_model("openai:gpt-4o")
    notes = [r for r in caplog.records if "steproute routes" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in notes] == [
        ("WARNING", "steproute routes init_chat_model('openai:gpt-4o'): the router chooses the model (the app's "
                    "model name is ignored); kept: nothing; ignored: api_key"),
        ("INFO", "steproute routes init_chat_model('openai:gpt-4o'): the router chooses the model (the app's "
                 "model name is ignored); kept: nothing; ignored: nothing")]
    assert "sk-live" not in caplog.text


def test_a_key_pasted_as_the_model_name_is_not_logged(make_router, caplog):
    from langchain.chat_models import init_chat_model

    caplog.set_level(logging.INFO, logger="steproute")
    with make_router().route_init_chat_model():
        init_chat_model("sk-proj-abcdefghijklmnop", model_provider="openai")
    assert "abcdefghijklmnop" not in caplog.text and "a 31-character model name" in caplog.text


def test_an_unknown_langchain_layout_is_an_error_not_a_silent_no_op(make_router, monkeypatch):
    monkeypatch.delattr(lc_base, "_init_chat_model_helper")
    with pytest.raises(StepRouteError, match=r"cannot route init_chat_model with langchain \d"):
        route_init_chat_model(make_router())
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "langchain.chat_models.base", None)
    with pytest.raises(ImportError, match=r"steproute\[agents\]"):
        route_init_chat_model(make_router())


def test_uninstall_leaves_a_later_patch_alone(make_router, caplog):
    patch = route_init_chat_model(make_router())
    theirs = lambda *a, **k: None  # noqa: E731 - another library's patch, made after ours
    lc_base._init_chat_model_helper = theirs
    patch.uninstall()
    assert lc_base._init_chat_model_helper is theirs and "left langchain.chat_models.base" in caplog.text
    lc_base._init_chat_model_helper = ORIGINAL


def test_route_factory_replaces_the_function_and_its_imported_copies(make_router, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="steproute")
    models = types.ModuleType("shop_models")
    exec("def get_model(role='x', **kw):\n    raise AssertionError('the original factory ran')", models.__dict__)
    graph = types.ModuleType("shop_graph")
    graph.get_model = models.get_model  # from shop_models import get_model
    monkeypatch.setitem(sys.modules, "shop_models", models)
    monkeypatch.setitem(sys.modules, "shop_graph", graph)
    original = models.get_model
    router = make_router(steps={"planner": "advanced"})
    with route_factory(models.get_model, router, step=lambda role="x", **_: role) as patch:  # the function itself
        assert set(patch.targets) == {"shop_models:get_model", "shop_graph:get_model"}
        model = graph.get_model("planner", temperature=0.5, base_url="http://x")
        assert (model.step, model.temperature) == ("planner", 0.5)
        assert model.invoke("hi").content == "answer from advanced"
        assert models.get_model.__name__ == "get_model" and models.get_model.__wrapped__ is original
        with route_factory("shop_models:get_model", router, step="fixed") as inner:  # latest wins, same wrapper
            assert graph.get_model().step == "fixed" and inner.targets == patch.targets
    assert models.get_model is original and graph.get_model is original
    assert "ignored: base_url, 1 positional argument" in caplog.text


@pytest.mark.parametrize("target", ["shop_models.get_model", "shop_models:", ":get_model", "shop_models:a.b",
                                    "sk-1234567890abcdef:x"])
def test_route_factory_refuses_a_malformed_target(make_router, target):
    with pytest.raises(StepRouteError, match=r"expected 'package\.module:function'") as excinfo:
        route_factory(target, make_router())
    assert "1234567890" not in str(excinfo.value)


def test_route_factory_refuses_what_it_cannot_replace(make_router, monkeypatch):
    module = types.ModuleType("shop_config")
    module.MODEL = "gpt-4o"
    monkeypatch.setitem(sys.modules, "shop_config", module)
    with pytest.raises(StepRouteError, match="is not a function"):
        route_factory("shop_config:MODEL", make_router())
    with pytest.raises(StepRouteError, match="module-level function"):
        route_factory(lambda: None, make_router())
    with pytest.raises(ModuleNotFoundError):
        route_factory("no_such_app.models:get_model", make_router())
