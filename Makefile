# Two entry points: `make demo` and `make test`. Both create .venv and install into it,
# with every package pinned by constraints.txt so installs never backtrack, then build
# llama.cpp's server and fetch the local models once per machine (~/.cache/steproute).
# `make demo` installs only what the demo needs (cmake and a C++ compiler; steproute with its
# demo extra), quietly: one line per phase, apt-get's and pip's output in build/setup.log.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
SETUP_LOG := build/setup.log

.PHONY: demo test lint bench clean local-models system-packages demo-system-packages plain-install test-newest bench-agent-deps
PHOENIX_VENV := .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed

# `$(QUIET) quiet "what" command...`: prints "==> what", appends the command's output to
# $(SETUP_LOG); on failure prints the log's path and its last lines, and fails.
QUIET = quiet() { what="$$1"; shift; echo "==> $$what"; mkdir -p $(dir $(SETUP_LOG)); \
  echo "==> $$what: $$*" >>$(SETUP_LOG); "$$@" >>$(SETUP_LOG) 2>&1 && return 0; status=$$?; \
  echo "make: $$what failed (exit $$status); its output is in $(CURDIR)/$(SETUP_LOG), which ends:" >&2; \
  tail -n 15 $(SETUP_LOG) | sed 's/^/    /' >&2; return $$status; };

# The demo's Python packages: steproute and its demo extra (llmock for `steproute demo`).
$(DEMO_STAMP): pyproject.toml constraints.txt
	@$(QUIET) test -x $(BIN)/python || quiet "creating $(VENV)" $(PYTHON) -m venv $(VENV)
	@$(QUIET) quiet "installing steproute and the demo's packages into $(VENV) (pip)" sh -c \
	  '$(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -c constraints.txt -e ".[demo]"'
	@touch $(DEMO_STAMP)

# Everything the tests need: the dev extra (every optional dependency, pytest, ruff, mypy).
$(STAMP): pyproject.toml constraints.txt
	@$(QUIET) test -x $(BIN)/python || quiet "creating $(VENV)" $(PYTHON) -m venv $(VENV)
	@$(QUIET) quiet "installing steproute and the test packages into $(VENV) (pip)" sh -c \
	  '$(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -c constraints.txt -e ".[dev]"'
	@touch $(STAMP) $(DEMO_STAMP)

# Debian packages, installed if missing (never upgraded). The demo needs cmake and a C++
# compiler to build llama-server; the tests also open the report page in headless Chromium and
# run a PostgreSQL server for the pin tests.
SUDO := $(shell command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-upgrade -q
demo-system-packages:
	@command -v cmake >/dev/null && command -v c++ >/dev/null || { $(QUIET) \
	  quiet "updating apt's package lists" $(SUDO) apt-get update -q \
	  && quiet "installing cmake and g++ (apt-get)" $(APT_INSTALL) cmake g++ ninja-build; }
system-packages: demo-system-packages
	@command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(QUIET) \
	  quiet "updating apt's package lists" $(SUDO) apt-get update -q \
	  && quiet "installing chromium and postgresql for the tests (apt-get)" $(APT_INSTALL) chromium postgresql \
	  && { $(SUDO) service postgresql stop >/dev/null 2>&1 || true; }; }
# (the tests run their own PostgreSQL server; the one the package may start is stopped)

# Build llama-server and fetch the weights (once per machine; a no-op when cached).
local-models: $(DEMO_STAMP) demo-system-packages
	@echo "==> building llama.cpp's server and fetching the models, once per machine (~/.cache/steproute)"
	@$(BIN)/steproute local --prepare

demo: local-models
	@echo "==> running examples/quickstart.py"
	@LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python examples/quickstart.py

# Phoenix (the tracing backend of tests/e2e/test_phoenix.py) lives in its own venv, so its pins
# never constrain steproute's.
$(PHOENIX_STAMP): tests/e2e/phoenix-constraints.txt
	test -x $(PHOENIX_VENV)/bin/python || $(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet -c tests/e2e/phoenix-constraints.txt arize-phoenix
	touch $(PHOENIX_STAMP)

# The BFCL workload of benchmarks/agent.py (benchmarks/_agent_bfcl*.py): bfcl-eval, Apache-2.0, whose
# wheel holds the questions, possible answers, executable multi-turn environments and checkers. It
# is installed without its declared requirements, which name every provider SDK it can benchmark
# (anthropic, cohere, google-genai, qwen-agent, boto3, sentence-transformers, faiss, numpy==1.26.4,
# ...); the parts used here need only mpmath, filelock and langchain, pinned by constraints.txt.
BFCL_EVAL := bfcl-eval==2026.3.23
BENCH_AGENT_STAMP := $(VENV)/.installed-bench-agent
BENCH_AGENT_PIP = $(1) -m pip install -qq -c constraints.txt mpmath filelock langchain \
  && $(1) -m pip install -qq --no-deps $(BFCL_EVAL)
$(BENCH_AGENT_STAMP): $(DEMO_STAMP) Makefile
	@$(QUIET) quiet "installing bfcl-eval (the BFCL workload's data and checkers) into $(VENV) (pip, --no-deps)" \
	  sh -c '$(call BENCH_AGENT_PIP,$(BIN)/python)'
	@touch $(BENCH_AGENT_STAMP)
bench-agent-deps: $(BENCH_AGENT_STAMP)

test: $(STAMP) bench-agent-deps system-packages local-models $(PHOENIX_STAMP)
	$(MAKE) --no-print-directory plain-install
	LITELLM_LOCAL_MODEL_COST_MAP=True STEPROUTE_PHOENIX_PYTHON=$(CURDIR)/$(PHOENIX_VENV)/bin/python $(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-newest

# `pip install steproute` without extras, in a throwaway venv, from a copy of the sources (no
# stale build/): it must import, route fixed/rules/cascade calls and a tool call with LiteLLM's
# mock_response, name the 'learn' extra for learned policies, have no numpy, and open no socket.
PLAIN_DIR := /tmp/steproute-plain-install
plain-install:
	@rm -rf $(PLAIN_DIR) && mkdir -p $(PLAIN_DIR)/src && cp -r pyproject.toml README.md steproute $(PLAIN_DIR)/src/
	@$(PYTHON) -m venv $(PLAIN_DIR)/venv
	@$(PLAIN_DIR)/venv/bin/python -m pip install -qq -c constraints.txt $(PLAIN_DIR)/src
	@cd $(PLAIN_DIR) && env -u LITELLM_LOCAL_MODEL_COST_MAP $(PLAIN_DIR)/venv/bin/python $(CURDIR)/tests/unit/test_plain_install.py
	@rm -rf $(PLAIN_DIR)

# The unit and llmock suites against the newest release of every dependency the index serves (no
# constraints), so the declared ranges are tested at both ends (`make test` pins the lower one).
# Leaves out the local-model tests (tests/e2e), the PostgreSQL and load tests (they test the
# server and the machine, not the dependencies' versions) and the screenshot in Chromium.
NEWEST_VENV := /tmp/steproute-newest-venv
test-newest: system-packages
	@rm -rf $(NEWEST_VENV) && $(PYTHON) -m venv $(NEWEST_VENV)
	@$(NEWEST_VENV)/bin/python -m pip install -qq --upgrade pip
	@$(NEWEST_VENV)/bin/python -m pip install -qq --upgrade --upgrade-strategy eager -e '.[test]'
	@$(NEWEST_VENV)/bin/python -m pip install -qq --no-deps $(BFCL_EVAL)
	@echo "newest: $$($(NEWEST_VENV)/bin/python -m pip list --format=freeze 2>/dev/null \
	  | grep -i -E '^(litellm|langchain-core|langchain|langgraph|openai|pydantic|mcp|opentelemetry-sdk)==' | tr '\n' ' ')"
	LITELLM_LOCAL_MODEL_COST_MAP=True STEPROUTE_KEEP_DOCS=1 $(NEWEST_VENV)/bin/python -m pytest -q -m 'not e2e' tests/unit tests/integration steproute \
	  --ignore tests/integration/test_budgets_postgres.py --ignore tests/integration/test_pins_postgres.py \
	  --ignore tests/integration/test_load.py \
	  --deselect tests/integration/test_telemetry_report.py::test_report_page_renders_in_chromium_without_console_errors
	@rm -rf $(NEWEST_VENV)

lint: $(STAMP)
	$(BIN)/ruff check steproute tests examples
	$(BIN)/mypy steproute

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) build *.egg-info .agent-cache

# call_path.py: the call path's overhead and throughput, this tree against the revision before the
# tier-walk refactor (default e650c38; another one: `make bench AGAINST=REV`), both in the same run.
bench: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/dispatch_overhead.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/call_path.py $(if $(AGAINST),--against $(AGAINST))
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/latency_check.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/telemetry_overhead.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/capability_check.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/evaluation.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/cascade.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/bandit_regret.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/learned_speed.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/knn_speed.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/run_all.py

# The agent benchmark (docs/agent-benchmark.md): per-step against per-request routing on three local
# models (the 1.5B one fetched here), GSM8K pipeline and BFCL tool calling. Measured: a GSM8K task
# takes about 250 s through every configuration with llama.cpp on one thread while other jobs shared
# the 2 cores (AGENT_THREADS=1); an idle machine is faster. Lower AGENT_*_TASKS for a shorter run.
# A quick run: `python benchmarks/agent.py --workload gsm8k --tasks 5 --json`.
.PHONY: bench-agent
AGENT_GSM8K_TASKS ?= 4
AGENT_BFCL_TASKS ?= 10
AGENT_THREADS ?= 2
# model answers kept across runs (a stopped run resumes; `make clean` or deleting it starts afresh)
AGENT_CACHE ?= .agent-cache/answers.jsonl
bench-agent: $(STAMP) bench-agent-deps local-models
	@$(BIN)/python -c "from steproute.local import ensure_weights; ensure_weights('qwen2.5-coder-1.5b')"
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/agent.py --workload gsm8k --tasks $(AGENT_GSM8K_TASKS) --threads $(AGENT_THREADS) --cache $(AGENT_CACHE) --write-docs
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/agent.py --workload bfcl --tasks $(AGENT_BFCL_TASKS) --threads $(AGENT_THREADS) --cache $(AGENT_CACHE) --write-docs

# Mutation testing of the call path (router, fallback, cascade, pins, prices, guards, policies, the
# planner; [tool.mutmut] in pyproject.toml): each mutant against the unit tests that reach the
# mutated function. Not part of `make test` (the whole set takes hours on 2 cores). One module:
# `make mutate MUTANTS='steproute.pricing*'` (several: space-separated globs; a class's methods are
# named `steproute.pinning.xǁInMemoryPinStoreǁget__mutmut_1`). On a shared machine:
# `make mutate MUTMUT_CHILDREN=1`. Survivors: `.venv/bin/mutmut results`, one of them:
# `.venv/bin/mutmut show NAME`. Scores and the equivalent mutants: docs/architecture.md.
# OMP_NUM_THREADS=1: torch (the MiniLM tests) run with OpenMP threads in mutmut's parent leaves each
# forked mutant that runs torch again waiting on a lock forever (until mutmut's timeout calls it killed).
.PHONY: mutate
MUTANTS ?=
MUTMUT_CHILDREN ?= 2
mutate: $(STAMP)
	env -u PYTHONPATH LITELLM_LOCAL_MODEL_COST_MAP=True OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS)
	$(BIN)/mutmut results
