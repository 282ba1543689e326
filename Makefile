# Two entry points: `make demo` and `make test`. Both create .venv and install into it,
# with every package pinned by constraints.txt so installs never backtrack.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/steproute demo

test: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check steproute tests examples
	$(BIN)/mypy steproute

clean:
	rm -rf $(VENV) build *.egg-info

bench: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python benchmarks/dispatch_overhead.py
