"""The `steproute report` page from a real routed run: writes docs/images/report-page.png.

A three-step LangGraph graph (rewrite → solve → answer) answers 36 sums for two tenants, routed
across three tiers over real HTTP to llmock (a mock OpenAI-compatible server started on
127.0.0.1; real LiteLLM, real LangGraph, scripted answers, LiteLLM's prices for the models the
tiers name). ``solve`` is a cascade (fast → standard → advanced, judged by the hedging signal):
the fast tier hedges on some sums, which are escalated, and gets a few sums wrong without
hedging, which are kept. Every answer is graded by checking its number against the sum
(quality 1 or 0) and two thirds of them are rated with ``router.feedback()``, as users would;
every second sum is also answered on the baseline tier by a shadow call whose graded answer is
logged as a shadow result. Then ``steproute report --html`` renders the page and headless
Chromium takes its screenshot.

    python examples/report_page.py                  # writes docs/images/report-page.png
    python examples/report_page.py --out /tmp/rp    # also keeps decisions.jsonl and report.html there
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
PNG = ROOT / "docs" / "images" / "report-page.png"
MODELS = {"fast": "gpt-4o-mini", "standard": "gpt-4.1-mini", "advanced": "gpt-4o"}
TENANTS = ("acme", "globex")


class State(TypedDict, total=False):
    question: str
    rewrite: str
    rewrite_id: str
    solve: str
    solve_id: str
    answer: str
    answer_id: str


def _router(base_url: str, decision_log: Any = None, *, solve: Any = None) -> Any:
    from steproute import RouterConfig, StepRouter

    tiers = {t: {"models": [{"model": f"openai/{m}", "api_base": base_url, "api_key": "mock"}]} for t, m in MODELS.items()}
    cascade = {"policy": "cascade", "tiers": list(MODELS), "signals": [{"signal": "hedging"}]}
    steps = {"rewrite": "fast", "answer": "standard", "solve": solve or cascade}
    return StepRouter(RouterConfig(tiers=tiers, default="fast", baseline="advanced", steps=steps),
                      decision_log=decision_log)


def _graph(router: Any) -> Any:
    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph

    from steproute import step

    llm = router.chat_model()

    def node(name: str, prompt: Callable[[dict[str, Any]], str]) -> Callable[..., dict[str, Any]]:
        def run(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            message = llm.invoke([HumanMessage(prompt(state))], config=config)
            return {name: message.text, f"{name}_id": message.response_metadata["steproute"]["id"]}
        return run

    g = StateGraph(State)
    g.add_node("rewrite", node("rewrite", lambda s: f"Rewrite as a sum: {s['question']}"),
               metadata=step("rewrite", kind="rewrite"))
    g.add_node("solve", node("solve", lambda s: f"Solve: {s['rewrite']}"), metadata=step("solve"))
    g.add_node("answer", node("answer", lambda s: f"Answer {s['question']} from: {s['solve']}"),
               metadata=step("answer", kind="synthesis"))
    g.add_edge(START, "rewrite")
    g.add_edge("rewrite", "solve")
    g.add_edge("solve", "answer")
    g.add_edge("answer", END)
    return g.compile()


def _graded(text: str, expected: int) -> float:
    numbers = re.findall(r"-?[0-9]+", text)
    return 1.0 if numbers and int(numbers[-1]) == expected else 0.0


def write_log(base_url: str, add: Callable[..., Any], path: str | Path, *, questions: int = 36, seed: int = 0) -> Path:
    """Run the graph over ``questions`` sums on the llmock at ``base_url`` (``add`` queues its
    scripted replies: ``LLMock.add``, or ``LLMockServer.state.scenarios.add``), rating answers
    and logging shadow results into the decision log at ``path``."""
    from llmock.scenarios import Match, Reply

    from steproute import StepRequest
    from steproute.decision_log import JsonlDecisionLog

    def reply(tier: str, text: str) -> None:
        add(Reply(text=text, times=1, match=Match(model=MODELS[tier])))

    rng = random.Random(seed)
    log = JsonlDecisionLog(path)
    router, shadow = _router(base_url, log), _router(base_url, solve="advanced")
    graph = _graph(router)
    for i in range(questions):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        total, luck = a + b, rng.random()
        reply("fast", f"{a} + {b}")
        if luck < 0.3:  # the fast tier hedges: escalated; the standard tier hedges on some too
            reply("fast", f"I'm not sure, maybe {total + 1}.")
            if luck < 0.08:
                reply("standard", f"I think it might be {total - 10}, but I'm not certain.")
                reply("advanced", solved := f"{a} + {b} = {total}")
            else:
                reply("standard", solved := f"{a} + {b} = {total}")
        else:  # kept on the fast tier; wrong without hedging now and then
            reply("fast", solved := f"{a} + {b} = {total + (10 if luck > 0.88 else 0)}")
        reply("standard", f"The answer is {re.findall(r'-?[0-9]+', solved)[-1]}.")
        state = graph.invoke({"question": f"What is {a} plus {b}?"}, {"metadata": {"tenant": TENANTS[i % 2]}})
        if i % 3 != 2:  # users rate two answers in three
            router.feedback(state["solve_id"], _graded(state["solve"], total))
            router.feedback(state["answer_id"], _graded(state["answer"], total))
        if i % 2 == 0:  # the shadow: the same solve call on the baseline tier, graded the same way
            reply("advanced", f"{a} + {b} = {total}")
            done = shadow.complete(StepRequest("solve", [{"role": "user", "content": f"Solve: {state['rewrite']}"}]))
            log.write({"type": "shadow", "id": state["solve_id"], "tier": "advanced", "model": done.decision.model,
                       "quality": _graded(done.completion.content, total), "cost_usd": done.cost_usd})
    log.close()
    return Path(path)


def screenshot(page: Path, png: Path, *, width: int = 1400, height: int = 1500) -> Path:
    """A headless Chromium screenshot of ``page`` (no network: the page fetches nothing)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", page.as_uri()], check=True, capture_output=True, timeout=120)
    return png


def main(argv: list[str] | None = None) -> int:
    from llmock.testing import LLMockServer

    from steproute.cli import main as steproute

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="keep decisions.jsonl and report.html in this folder")
    parser.add_argument("--png", default=str(PNG), help=f"the screenshot to write (default {PNG.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    folder = Path(args.out or tempfile.mkdtemp(prefix="steproute-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "decisions.jsonl"
    log.unlink(missing_ok=True)
    with LLMockServer(host="127.0.0.1") as server:
        write_log(server.base_url("openai"), server.state.scenarios.add, log)
    code = steproute(["report", str(log), "--html", str(folder / "report.html")])
    if code:
        return code
    print(f"wrote {screenshot(folder / 'report.html', Path(args.png))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
