# ModStack: `make help` lists the targets. Every target creates .venv first when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODSTACK := $(VENV)/bin/modstack
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: help setup demo demo-rollback test test-unit test-integration lint format data up down status train loadtest bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@# compiled bytecode: this machine sets PYTHONDONTWRITEBYTECODE, and feast/evidently imports take 2-3x longer without it
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -r requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode --no-deps -e .
	@$(PY) -m modstack.system_deps
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install everything (pinned by requirements.lock), plus system packages
