"""Docs that stay true: every code and configuration snippet in README.md and docs/ runs here.

- Every fenced block names its language (``python``, ``yaml``, ``toml``, ``json``, ``sh``,
  ``console`` or ``text``); output and messages are ``text``.
- ``yaml``/``toml``: a whole configuration (``tiers:`` and ``default:``) is checked as ``steproute
  check`` checks it, with placeholder values for its ``${VAR}``s; a fragment (a section, or
  steps) is merged into a small base configuration with the tiers it names and must pass too.
  The page's first whole configuration is its ``steproute.yaml``.
- ``python``: the blocks of one page run in order in one namespace, like a doctest of the page,
  in a scratch folder holding ``examples/`` and the page's ``steproute.yaml``; every LiteLLM call
  goes over HTTP to llmock (``OPENAI_BASE_URL``). Names a fragment takes for granted (``builder``,
  ``router``, a tool) come from :class:`PageNamespace`. A block whose first line is ``# pkg/mod.py``
  is a file of the page's app: it is written to the folder, and a later block must import it.
- ``sh``/``console``: ``steproute`` commands run with ``python -m steproute`` when their inputs
  exist (else their arguments are parsed by the real CLI); ``pip``, ``make``, ``git``,
  ``docker`` and ``export`` lines are skipped, and nothing else is.
- A block that cannot run here says why, in an HTML comment right before it:
  ``<!-- snippet: not run (reason) -->``; few may.
- Figures: each ``<!-- name:start -->`` block, each image under docs/images and each generated
  page is named by the script that writes it.
- Claims the docs make in words (the sample error, ``steproute check``'s output, secrets never
  shown, the decision log never waiting) are tested here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from steproute import ConfigError, RouterConfig, StepRouter
from steproute.config_check import check_file

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "yaml", "toml", "json", "sh", "console", "text"}
RUNNABLE = LANGUAGES - {"text"}
SKIPPED_COMMANDS = ("pip", "make", "git", "docker", "export")
MARKER = re.compile(r"<!--\s*snippet:(.*?)-->", re.S)
NOT_RUN = re.compile(r"\s*not run \((\S.*\S)\)\s*$", re.S)
BASE_TIERS = ("fast", "standard", "advanced", "strong")
BASE_MODELS = {"fast": "openai/gpt-4o-mini", "standard": "openai/gpt-4.1-mini",
               "advanced": "openai/gpt-4o", "strong": "openai/gpt-4o"}
FILE_HEADER = re.compile(r"^# ([\w/]+\.py)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: str | None  # the reason given by a marker right before the block

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = re.match(r"^\s*```(\S*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.fullmatch(before.strip())
        reason = NOT_RUN.match(marker.group(1)) if marker else None
        found.append(Block(page, i + 1, opening.group(1), textwrap.dedent("\n".join(lines[i + 1:end])) + "\n",
                           reason.group(1) if reason else ("" if marker else None)))
        i = end + 1
    return found


BLOCKS = [b for page in PAGES for b in blocks_of(page)]


def of(*langs: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.lang in langs]


# -- fences and markers ---------------------------------------------------------------------


def test_the_pages_have_snippets_of_every_kind():
    langs = {b.lang for b in BLOCKS}
    assert {"python", "yaml", "toml", "sh", "console", "text"} <= langs, langs


def test_every_fence_names_a_known_language():
    wrong = [f"{b.id} ```{b.lang}" for b in BLOCKS if b.lang not in LANGUAGES]
    assert not wrong, f"fences with no or an unknown language (want one of {sorted(LANGUAGES)}): {wrong}"


def test_every_not_run_marker_gives_a_reason_and_they_are_rare():
    markers = [(page, m) for page in PAGES for m in MARKER.finditer(page.read_text(encoding="utf-8"))]
    bad = [f"{page.name}: {m.group(0)}" for page, m in markers if not NOT_RUN.match(m.group(1))]
    assert not bad, f"a snippet marker must read <!-- snippet: not run (reason) -->: {bad}"
    placed = [b for b in BLOCKS if b.not_run is not None]
    assert len(placed) == len(markers), "every marker stands right before a fenced block"
    assert all(b.lang in RUNNABLE for b in placed), [b.id for b in placed if b.lang not in RUNNABLE]
    runnable = [b for b in BLOCKS if b.lang in RUNNABLE]
    assert len(placed) < 0.2 * len(runnable), f"{len(placed)} of {len(runnable)} snippets are not run"


# -- configuration snippets -----------------------------------------------------------------


def _tier_names(node: Any, key: str = "") -> set[str]:
    """Tier names a configuration fragment refers to."""
    names: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("tier", "min_tier", "max_tier", "cap_tier", "fallback", "router_tier") and isinstance(v, str):
                names.add(v)
            elif k == "tiers" and isinstance(v, list):
                names.update(t for t in v if isinstance(t, str))
            elif k == "steps" and isinstance(v, dict):
                names.update(t for t in v.values() if isinstance(t, str))
            names |= _tier_names(v, k)
    elif isinstance(node, list):
        for v in node:
            names |= _tier_names(v, key)
    return names


def _merge(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in fragment.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _placeholders(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in set(re.findall(r"\$\{(\w+)(?::-[^}]*)?\}", text)):
        if name not in os.environ:
            monkeypatch.setenv(name, "http://127.0.0.1:9/v1" if name.endswith(("_URL", "_BASE")) else "placeholder")


def _parse(block: Block) -> dict[str, Any]:
    data = tomllib.loads(block.text) if block.lang == "toml" else yaml.safe_load(block.text)
    assert isinstance(data, dict), f"{block.id}: not a mapping"
    return data


@pytest.mark.parametrize("block", of("yaml", "toml"))
def test_configuration_snippets_load(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = _parse(block)
    if "default" not in data:  # a fragment: in a base configuration, with the tiers it names
        names = _tier_names(data)
        tiers = [t for t in sorted(names) if t not in BASE_TIERS] + list(BASE_TIERS)
        base = {"tiers": {t: {"models": [BASE_MODELS.get(t, "openai/gpt-4o-mini")]} for t in tiers}, "default": "fast"}
        data = _merge(base, data)
    _placeholders(block.text, monkeypatch)
    if "artefact" in block.text:  # trained artefacts are not at hand: the schema is checked, not the files
        RouterConfig.from_dict(data, source=block.id)
        return
    path = tmp_path / "steproute.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    report = check_file(path)
    assert not report.errors, f"{block.id}: {[str(p) for p in report.errors]}"


@pytest.mark.parametrize("block", of("json"))
def test_json_snippets_are_rows_of_the_evaluation_format(block: Block, tmp_path: Path):
    from steproute.evaluation import read_rows

    row = json.loads(block.text)
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    rows, problems = read_rows(tmp_path / "rows.jsonl")
    assert len(rows) == 1 and not problems, problems


# -- Python snippets ------------------------------------------------------------------------

DEFAULT_CONFIG = {"tiers": {t: {"models": [m]} for t, m in BASE_MODELS.items()}, "default": "fast",
                  "steps": {"plan": "strong", "tool_use": "fast"}}


@pytest.fixture(scope="module")
def llmock_url() -> Iterator[str]:
    from llmock.testing import LLMockServer

    with LLMockServer(host="127.0.0.1") as server:
        yield server.base_url("openai")


class PageNamespace(dict):  # type: ignore[type-arg]
    """A page's globals: what the page defines, and on first use the names its fragments take
    for granted (the graph builder, the router, tools, a routed message)."""

    def __missing__(self, name: str) -> Any:
        make = getattr(self, f"_make_{name}", None)
        if make is None:
            raise KeyError(name)
        self[name] = value = make()
        return value

    # steproute and LangChain names a page's fragments use without importing them
    def _make_StepRouter(self) -> Any:
        return StepRouter

    def _make_step(self) -> Any:
        from steproute import step

        return step

    def _make_StepRouterMiddleware(self) -> Any:
        from steproute import StepRouterMiddleware

        return StepRouterMiddleware

    def _make_create_agent(self) -> Any:
        from langchain.agents import create_agent

        return create_agent

    def _make_create_react_agent(self) -> Any:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langgraph.prebuilt import create_react_agent
        return create_react_agent

    def _make_create_supervisor(self) -> Any:
        from langgraph_supervisor import create_supervisor

        return create_supervisor

    def _make_ToolStrategy(self) -> Any:
        from langchain.agents.structured_output import ToolStrategy

        return ToolStrategy

    def _make_Weather(self) -> Any:
        from pydantic import BaseModel

        class Weather(BaseModel):
            city: str = ""
            summary: str = ""

        return Weather

    # the page's router and model, from the page's steproute.yaml
    def _make_router(self) -> Any:
        return StepRouter.from_file("steproute.yaml")

    def _make_model(self) -> Any:
        return self["router"].chat_model()

    def _make_llm(self) -> Any:
        return self["router"].chat_model()

    def _make_message(self) -> Any:
        return self["llm"].invoke("How much do I owe?", config={"metadata": self["step"]("answer")})

    def _make_request(self) -> Any:
        from steproute import StepRequest

        return StepRequest(step="answer", messages=[{"role": "user", "content": "Hello"}])

    # a graph under construction, its nodes and tools
    def _builder(self) -> Any:
        from typing import TypedDict

        from langgraph.graph import StateGraph

        class State(TypedDict, total=False):
            messages: list[Any]
            question: str
            text: str
            plan: str
            answer: str
            dates: str

        return StateGraph(State)

    _make_builder = _builder
    _make_graph = _builder

    def _node(self) -> Any:
        return lambda state: {}

    _make_rewrite = _make_plan = _make_answer = _make_extract = _node

    def _tool(self, name: str) -> Any:
        from langchain_core.tools import tool

        def run(text: str) -> str:
            return f"{name}: no result for {text}"

        run.__name__, run.__doc__ = name, f"The {name} tool."
        return tool(run)

    def _make_search(self) -> Any:
        return self._tool("search")

    def _make_web_search(self) -> Any:
        return self._tool("web_search")

    def _make_get_weather(self) -> Any:
        return self._tool("get_weather")

    def _make_add(self) -> Any:
        from langchain_core.tools import tool

        @tool
        def add(a: float, b: float) -> float:
            """Add two numbers."""
            return a + b

        return add

    def _make_multiply(self) -> Any:
        from langchain_core.tools import tool

        @tool
        def multiply(a: float, b: float) -> float:
            """Multiply two numbers."""
            return a * b

        return multiply

    def _make_weather(self) -> Any:
        return self["create_agent"](self["model"], [self["get_weather"]], name="weather_expert",
                                    system_prompt="You report the weather.")

    def _make_maths(self) -> Any:
        return self["create_agent"](self["model"], [self["add"]], name="math_expert",
                                    system_prompt="You do arithmetic.")

    # stores for the snippets that share one across replicas
    def _make_store(self) -> Any:
        from langgraph.store.memory import InMemoryStore

        return InMemoryStore()

    def _make_pins(self) -> Any:
        from steproute.pinning import BaseStorePinStore

        return BaseStorePinStore(self["store"])

    def _make_conninfo(self) -> Any:
        return "postgresql://steproute@127.0.0.1:1/unused"  # the lock connects at its first use only


def _app_files(block: Block) -> dict[str, str]:
    """``# pkg/mod.py`` sections of a block that shows an app's files."""
    files: dict[str, list[str]] = {}
    current = None
    for line in block.text.splitlines():
        header = FILE_HEADER.match(line)
        if header:
            current = files.setdefault(header.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() + "\n" for name, lines in files.items()}


class Page:
    """One page's Python and shell blocks, run in order in one namespace and one scratch folder
    (``work/``, beside a ``shared`` link to the benchmark data the docs call ``../shared``)."""

    def __init__(self, page: Path, base: Path) -> None:
        self.blocks = [b for b in BLOCKS if b.page == page and b.lang in ("python", "sh", "console")]
        self.folder = _sandbox(base)
        folder = self.folder
        self.ns = PageNamespace({"__name__": f"docs_{page.stem.replace('-', '_')}"})
        self.done: dict[str, BaseException | None] = {}
        self.ran: dict[str, list[tuple[str, str]]] = {}
        self.packages: set[str] = set()
        whole = [b for b in BLOCKS if b.page == page and b.lang == "yaml" and {"tiers", "default"} <= set(_parse(b))]
        text = whole[0].text if whole else yaml.safe_dump(DEFAULT_CONFIG, sort_keys=False)
        (folder / "steproute.yaml").write_text(text, encoding="utf-8")
        for b in self.blocks:
            for name, source in _app_files(b).items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(source, encoding="utf-8")
                (folder / name).parent.joinpath("__init__.py").touch()
                self.packages.add(name.split("/")[0])

    def run(self, block: Block) -> None:
        for earlier in self.blocks:
            if earlier.id not in self.done:
                self.done[earlier.id] = self._exec(earlier)
            if earlier == block:
                break
            if self.done[earlier.id] is not None:
                pytest.fail(f"{earlier.id}, an earlier block of the page, failed: {self.done[earlier.id]!r}")
        if self.done[block.id] is not None:
            raise self.done[block.id]  # type: ignore[misc]

    def _exec(self, block: Block) -> BaseException | None:
        try:
            if block.lang != "python":
                self.ran[block.id] = _run_shell(block, self.folder)
            elif block.not_run is not None:
                compile(block.text, block.id, "exec")  # it still parses
            elif not _app_files(block):  # (files of the page's app are imported by a later block)
                exec(compile(block.text, block.id, "exec"), self.ns)
                for value in list(self.ns.values()):  # what a reader's process leaves on disk at exit
                    log = getattr(value, "decision_log", None) if isinstance(value, StepRouter) else None
                    if log is not None and hasattr(log, "flush"):
                        log.flush()
        except (Exception, pytest.fail.Exception) as exc:  # reported on the block's own test
            return exc
        return None


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, llmock_url: str) -> Iterator[dict[Path, Page]]:
    from steproute.factories import ModelPatch

    patches: list[ModelPatch] = []  # a page's route_init_chat_model() / route_factory() is undone below
    install = ModelPatch.__init__

    def recorded(self: ModelPatch, *args: Any, **kwargs: Any) -> None:
        install(self, *args, **kwargs)
        patches.append(self)

    env = {"OPENAI_BASE_URL": llmock_url, "OPENAI_API_KEY": "sk-placeholder"}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    made: dict[Path, Page] = {}
    ModelPatch.__init__ = recorded  # type: ignore[method-assign]
    try:
        yield _PageCache(made, tmp_path_factory)  # type: ignore[misc]
    finally:
        ModelPatch.__init__ = install  # type: ignore[method-assign]
        for patch in patches:
            if patch.installed:
                patch.uninstall()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for page in made.values():
            for name in [m for m in sys.modules if m.split(".")[0] in page.packages]:
                del sys.modules[name]


class _PageCache(dict):  # type: ignore[type-arg]
    def __init__(self, made: dict[Path, Page], factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.made, self.factory = made, factory

    def __missing__(self, page: Path) -> Page:
        self[page] = self.made[page] = Page(page, self.factory.mktemp(page.stem.replace(".", "_")))
        return self[page]


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    cwd = os.getcwd()
    sys.path.insert(0, str(folder))
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(str(folder))


@pytest.mark.parametrize("block", of("python"))
def test_python_snippets_run(block: Block, pages: dict[Path, Page]):
    page = pages[block.page]
    with _in_folder(page.folder):
        page.run(block)
        for check in CLAIMS.get(block.id, ()):
            check(page.ns)


def test_app_files_shown_in_the_docs_are_imported_by_a_snippet(pages: dict[Path, Page]):
    for page_path in {b.page for b in BLOCKS if b.lang == "python" and _app_files(b)}:
        page = pages[page_path]
        with _in_folder(page.folder):
            for b in page.blocks:
                page.run(b)
        for b in page.blocks:
            for name in _app_files(b):
                module = name[:-3].replace("/", ".")
                assert module in sys.modules, f"{b.id}: {name} is shown but no snippet of the page imports it"


def _readme_message(ns: dict[str, Any]) -> None:
    meta = ns["message"].response_metadata
    assert meta["model_name"] == "openai/gpt-4.1-mini"
    assert {k: meta["steproute"][k] for k in ("step", "tier", "policy", "reason")} == {
        "step": "answer", "tier": "standard", "policy": "rules", "reason": "no rule matched; fallback tier"}


CLAIMS = {"README.md:138": [_readme_message]}
"""What a snippet's comments say it shows, checked after it ran."""


# -- shell snippets -------------------------------------------------------------------------

INPUTS = {  # the arguments of each command that name a file it reads
    "check": ["config"], "report": ["log", "--config"], "convert": ["source"],
    "train": ["--data"], "eval": ["--data", "--policy"], "calibrate": ["--data", "--config"],
    "replay": ["log", "--config"], "drift": ["log"],
}


def _commands(block: Block) -> list[str]:
    text = block.text.replace("\\\n", " ")
    lines = text.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    return [c for c in (line.split("#")[0].strip() for line in lines) if c]


def _inputs(argv: list[str]) -> list[str]:
    wanted, found = INPUTS.get(argv[0], []), []
    positional = [a for i, a in enumerate(argv[1:], 1) if not a.startswith("-") and not argv[i - 1].startswith("--")]
    for name in wanted:
        if name.startswith("--"):
            if name in argv:
                found.append(argv[argv.index(name) + 1])
        elif positional:
            found.append(positional.pop(0))
    return found


def _parses(argv: list[str]) -> None:
    """The real CLI reads ``argv`` (its subcommand and flags exist) but does no work."""
    import steproute._cli_eval as cli_eval
    import steproute._cli_replay as cli_replay
    import steproute._demo as demo
    import steproute.cli as cli

    seen: list[str] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        for module, name in ((cli, "_check"), (cli, "_local"), (cli, "_report"), (cli_eval, "run"), (demo, "main"),
                             (cli_replay, "run")):
            monkeypatch.setattr(module, name, lambda *a, _n=name, **k: seen.append(_n) or 0)
        try:
            assert cli.main(argv) == 0
        except SystemExit as exc:  # argparse refused the arguments
            pytest.fail(f"steproute {' '.join(argv)}: the CLI refuses these arguments (exit {exc.code})")
    assert seen


def _sandbox(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    if (ROOT.parent / "shared").exists():  # the docs' ../shared/data: the benchmark data beside the checkout
        (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    return work


def _a_decision_id(log: Path) -> str:
    """The first decision id of a decision log (what a reader copies from the demo's output)."""
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("type") == "decision":
            return str(entry["id"])
    raise AssertionError(f"{log} holds no decision")


def _run_shell(block: Block, work: Path) -> list[tuple[str, str]]:
    """Run a shell block's commands in ``work``; the ``steproute`` commands that ran, with their
    output (with no local servers' ``STEPROUTE_LOCAL_*_URL`` set, as on a fresh machine)."""
    import shlex

    ran = []
    for command in _commands(block):
        argv = shlex.split(command)
        if argv[0] in SKIPPED_COMMANDS:
            continue
        assert argv[0] == "steproute", f"{block.id}: `{command}` is neither steproute nor an allowed command"
        argv = argv[1:]
        serves = argv[0] == "local" and "--list" not in argv  # runs servers until Ctrl-C, or builds them
        if block.not_run is not None or serves or not all((work / p).exists() for p in _inputs(argv)):
            _parses(argv)
            continue
        if "DECISION_ID" in argv:  # the docs' placeholder for an id the reader's own log holds
            argv[argv.index("DECISION_ID")] = _a_decision_id(work / argv[argv.index("--log") + 1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEPROUTE_LOCAL_")}
        env.update(PYTHONPATH=str(ROOT), LITELLM_LOCAL_MODEL_COST_MAP="True")
        done = subprocess.run([sys.executable, "-m", "steproute", *argv], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{block.id}: steproute {command}: {done.stderr[-2000:]}"
        ran.append((command, done.stdout))
    return ran


@pytest.mark.parametrize("block", of("sh", "console"))
def test_shell_snippets_run(block: Block, pages: dict[Path, Page]):
    page = pages[block.page]
    with _in_folder(page.folder):
        page.run(block)
    if block.not_run is None and any(c.startswith("steproute") for c in _commands(block)):
        assert page.ran[block.id], f"{block.id}: no steproute command of the block had its inputs"


def test_only_the_allowed_commands_are_skipped():
    assert SKIPPED_COMMANDS == ("pip", "make", "git", "docker", "export")
    first = {c.split()[0] for b in BLOCKS if b.lang in ("sh", "console") for c in _commands(b)}
    assert first <= {"steproute", *SKIPPED_COMMANDS}, first


# -- figures --------------------------------------------------------------------------------

MARKER_GENERATORS = {  # <!-- name:start --> block -> the script that writes it
    "shadow-overhead": "benchmarks/shadow_overhead.py",
    "results": "benchmarks/evaluation.py",
    "speed": "benchmarks/decision_speed.py",
    "cascade": "benchmarks/cascade.py",
    "matrix": "tests/integration/test_fault_matrix.py",
    "output-matrix": "tests/integration/test_output_fault_matrix.py",
    "load": "benchmarks/load.py",
    "latency-check": "benchmarks/latency_check.py",
    "learned-speed": "benchmarks/learned_speed.py",
    "agent-gsm8k": "benchmarks/_agent_docs.py",
    "agent-bfcl": "benchmarks/_agent_docs.py",
}
IMAGE_GENERATORS = {  # docs/images/... -> (the script that writes it, how it names the file)
    "eval-mmlu.png": ("benchmarks/evaluation.py", "eval-{folder}.png"),
    "eval-gsm8k.png": ("benchmarks/evaluation.py", "eval-{folder}.png"),
    "eval-mt_bench.png": ("benchmarks/evaluation.py", "eval-{folder}.png"),
    "cascade-gsm8k.png": ("benchmarks/cascade.py", "cascade-gsm8k.png"),
    "cascade-routing-gsm8k.png": ("benchmarks/cascade.py", "cascade-routing-gsm8k.png"),
    "phoenix-one-trace.png": ("tests/e2e/test_phoenix.py", "phoenix-one-trace.png"),
    "report-page.png": ("examples/report_page.py", "report-page.png"),
    "threshold-explorer.png": ("examples/threshold_explorer.py", "threshold-explorer.png"),
    "lifecycle.png": ("examples/lifecycle.py", "lifecycle.png"),
    "bandit_regret.png": ("benchmarks/bandit_regret.py", "bandit_regret.png"),
    "phoenix-route-spans.png": ("tests/e2e/test_phoenix.py", "phoenix-route-spans.png"),
    "agent-gsm8k.png": ("benchmarks/_agent_docs.py", "agent-{w}.png"),
    "agent-bfcl.png": ("benchmarks/_agent_docs.py", "agent-{w}.png"),
}
PAGE_GENERATORS = {  # pages written whole by a script
    "benchmarks.md": "benchmarks/run_all.py",
    "dispatch-overhead.md": "benchmarks/dispatch_overhead.py",
    "telemetry-overhead.md": "benchmarks/telemetry_overhead.py",
    "call-path-overhead.md": "benchmarks/call_path.py",
    "capability-check.md": "benchmarks/capability_check.py",
    "lifecycle.md": "examples/lifecycle.py",
}


def test_every_figure_is_written_by_a_named_generator():
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for name in re.findall(r"<!-- ([\w-]+):start -->", text):
            script = MARKER_GENERATORS.get(name)
            if script is None:
                problems.append(f"{page.name}: <!-- {name}:start --> has no generator")
            elif f"<!-- {name}:start -->" not in (ROOT / script).read_text(encoding="utf-8"):
                problems.append(f"{page.name}: {script} does not write <!-- {name}:start -->")
            if f"<!-- {name}:end -->" not in text:
                problems.append(f"{page.name}: <!-- {name}:start --> is never closed")
        for image in re.findall(r"\]\((?:docs/)?images/([^)]+)\)", text):
            if not (ROOT / "docs" / "images" / image).exists():
                problems.append(f"{page.name}: images/{image} does not exist")
        if page.name in PAGE_GENERATORS:
            script = PAGE_GENERATORS[page.name]
            if not (ROOT / script).exists() or page.name not in (ROOT / script).read_text(encoding="utf-8"):
                problems.append(f"{page.name}: {script} does not write it")
            if f"`{script}`" not in text and "`make bench`" not in text:
                problems.append(f"{page.name} does not say it is generated by {script}")
    for image in sorted((ROOT / "docs" / "images").iterdir()):
        generator = IMAGE_GENERATORS.get(image.name)
        if generator is None:
            problems.append(f"images/{image.name} has no generator")
        elif generator[1] not in (ROOT / generator[0]).read_text(encoding="utf-8"):
            problems.append(f"images/{image.name}: {generator[0]} does not write it")
    assert not problems, problems


# -- claims made in words -------------------------------------------------------------------


def _block_starting(page: str, first: str) -> Block:
    (block,) = [b for b in BLOCKS if b.page == ROOT / page and b.text.startswith(first)]
    return block


def test_the_sample_error_is_the_error_steproute_gives():
    shown = _block_starting("docs/configuration.md", "invalid steproute configuration in").text
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig.from_dict({"tiers": {t: {"models": [BASE_MODELS[t]]} for t in ("fast", "standard", "advanced")},
                                "default": {"policy": "magic"}, "steps": {"plan": {"tier": "gold"}}},
                               source="steproute.yaml")
    assert sorted(str(excinfo.value).strip().splitlines()) == sorted(shown.strip().splitlines())


def test_steproute_check_prints_what_the_docs_show(pages: dict[Path, Page]):
    block = _block_starting("docs/configuration.md", "$ steproute check")
    page = pages[block.page]
    with _in_folder(page.folder):
        page.run(block)
    ((command, stdout),) = page.ran[block.id]
    assert block.text.strip().splitlines() == [f"$ {command}", *stdout.strip().splitlines()]


def test_values_from_the_environment_never_show(monkeypatch: pytest.MonkeyPatch):
    """configuration.md: "Values from the environment ... are held as SecretStr: they do not show
    in repr, logs or errors" -- also inside a mapping or a list (``extra_headers``)."""
    monkeypatch.setenv("DOCS_TOKEN", "tok-7f3c9a1b2d4e")
    config = RouterConfig.from_dict({"tiers": {"fast": {"models": [{
        "model": "openai/gpt-4o-mini", "extra_headers": {"Authorization": "Bearer ${DOCS_TOKEN}"},
        "metadata": {"tags": ["${DOCS_TOKEN}"], "team": "docs"}}]}}, "default": "fast"})
    for shown in (repr(config), str(config), config.model_dump_json(), repr(StepRouter(config))):
        assert "tok-7f3c9a1b2d4e" not in shown
    params = config.tiers["fast"].models[0].litellm_params()  # dispatch still gets the values
    assert params["extra_headers"] == {"Authorization": "Bearer tok-7f3c9a1b2d4e"}
    assert params["metadata"] == {"tags": ["tok-7f3c9a1b2d4e"], "team": "docs"}


def test_the_decision_log_wording_matches_its_default():
    """telemetry.md says the call never waits on the disk: true while ``max_wait_s`` is 0."""
    import inspect

    from steproute.decision_log import JsonlDecisionLog

    assert inspect.signature(JsonlDecisionLog).parameters["max_wait_s"].default == 0
    text = (ROOT / "docs" / "telemetry.md").read_text(encoding="utf-8")
    assert "never waits on the disk" not in text or "max_wait_s" in text.split("never waits on the disk")[1][:300]


def test_the_multi_agent_bill_is_what_the_example_prints():
    """integrations.md shows `python examples/multi_agent.py`'s per-agent bill (llmock, scripted)."""
    shown = _block_starting("docs/integrations.md", "step             calls").text.strip().splitlines()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "multi_agent.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [line.rstrip() for line in done.stdout.splitlines()]
    assert printed[-len(shown):] == shown
