# fedcompute developer entry points. `make demo` and `make test` do all their own setup.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv binaries lint typecheck unit integration test demo demo-down crds clean bench

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP) ## Create the virtual environment with the package and dev tools

binaries: $(STAMP) ## Build or fetch kube-apiserver, etcd, kwok, kubectl and helm (cached)
	$(BIN)/fedcompute local binaries --link-into $(BIN)

lint: $(STAMP) ## ruff, mypy --strict and the import contracts (pyproject.toml)
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/ruff format --check operator tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP) ## Fast tests of pure logic (no cluster, helm, kubectl or wheel build)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

integration: binaries ## Tests against real local control planes
	$(BIN)/pytest tests/integration -q $(PYTEST_ARGS)

test: binaries lint ## Everything CI runs: lint, types, unit and integration tests
	$(BIN)/pytest tests -q -p no:cacheprovider $(PYTEST_ARGS)

demo: binaries ## Local host and member clusters with simulated GPU nodes
	$(BIN)/python hack/demo.py

demo-down: $(STAMP) ## Stop the demo's operator and clusters
	$(BIN)/python hack/demo.py down

crds: $(STAMP) ## Regenerate crds/ from the API models
	$(BIN)/fedcompute crds --output-dir crds

clean: ## Remove the virtual environment (cached binaries stay in ~/.cache/fedcompute)
	rm -rf $(VENV) build *.egg-info operator/*.egg-info
