# Two entry points: `make demo` and `make test`. Both create .venv and install into it,
# with every package pinned by constraints.txt so installs never backtrack, then build
# llama.cpp's server and fetch the local models once per machine (~/.cache/steproute).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean local-models system-packages plain-install test-newest
PHOENIX_VENV := .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Debian packages, installed if missing: cmake and a C++ compiler build llama-server; the
# report page's test opens it in headless Chromium; the pin tests run a PostgreSQL server.
SUDO := $(shell command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo)
system-packages:
	@command -v cmake >/dev/null && command -v c++ >/dev/null && command -v chromium >/dev/null \
	  && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing cmake, g++, chromium and postgresql with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    cmake g++ ninja-build chromium postgresql \
	  && { $(SUDO) service postgresql stop >/dev/null 2>&1 || true; }; }
# (the tests run their own PostgreSQL server; the one the package may start is stopped)

# Build llama-server and fetch the weights (once per machine; a no-op when cached).
local-models: $(STAMP) system-packages
	$(BIN)/steproute local --prepare

demo: local-models
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python examples/quickstart.py

# Phoenix (the tracing backend of tests/e2e/test_phoenix.py) lives in its own venv, so its pins
# never constrain steproute's.
$(PHOENIX_STAMP): tests/e2e/phoenix-constraints.txt
	test -x $(PHOENIX_VENV)/bin/python || $(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet -c tests/e2e/phoenix-constraints.txt arize-phoenix
	touch $(PHOENIX_STAMP)

test: local-models $(PHOENIX_STAMP)
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
	rm -rf $(VENV) $(PHOENIX_VENV) build *.egg-info

bench: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/dispatch_overhead.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/telemetry_overhead.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/evaluation.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/cascade.py
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/run_all.py

# Mutation testing of the call path (router, fallback, cascade, pins, prices, guards, policies, the
# planner; [tool.mutmut] in pyproject.toml): each mutant against the unit tests that reach the
# mutated function. Not part of `make test` (the whole set takes hours on 2 cores). One module:
# `make mutate MUTANTS='steproute.pricing*'` (several: space-separated globs; a class's methods are
# named `steproute.pinning.xǁInMemoryPinStoreǁget__mutmut_1`). On a shared machine:
# `make mutate MUTMUT_CHILDREN=1`. Survivors: `.venv/bin/mutmut results`, one of them:
# `.venv/bin/mutmut show NAME`. Scores and the equivalent mutants: docs/architecture.md.
.PHONY: mutate
MUTANTS ?=
MUTMUT_CHILDREN ?= 2
mutate: $(STAMP)
	env -u PYTHONPATH LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS)
	$(BIN)/mutmut results
