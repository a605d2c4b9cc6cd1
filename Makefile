# flowsight developer targets; CI calls `make test` (through .ci/run), the same target developers use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./flowsight-data

.DEFAULT_GOAL := help
.PHONY: help install system-deps run serve lint format typecheck test bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/flowsight: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/flowsight ## Create .venv and install flowsight with its development tools

system-deps: ## Install the Debian packages the end-to-end tests use (needs root or sudo)
	bash scripts/system-deps.sh

run: install ## Start flowsight with its demo, a simulated retailer, on the embedded database (chDB under DATA_DIR)
	$(BIN)/flowsight demo --data-dir $(DATA_DIR)

serve: install ## Start the service alone on the embedded database (chDB under DATA_DIR)
	$(BIN)/flowsight serve --data-dir $(DATA_DIR)

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install ## mypy over the flowsight package
	$(BIN)/mypy

test: system-deps install lint typecheck ## Install everything, then lint, type-check and run the whole suite
	$(BIN)/pytest

bench: install ## Every benchmark at 1M and 10M stored events: table, targets and cost curves (bench/README.md)
	$(BIN)/python bench/suite.py

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
