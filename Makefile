# Parley — the newcomer contract:
#   make demo   installs what the demo runs (scripts/setup demo) and runs a whole simulated call
#   make test   installs the rest (scripts/setup test), starts the real servers, runs every test
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.parley-demo-installed
TEST_STAMP := $(VENV)/.parley-test-installed
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup setup-demo services services-stop demo test test-fast lint format schemas bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(TEST_STAMP)  ## Install everything for development and tests (idempotent)

setup-demo: $(DEMO_STAMP)  ## Install only what the demo runs (idempotent)

$(DEMO_STAMP): pyproject.toml requirements/lock.txt requirements/no-deps.txt scripts/setup
	VENV=$(VENV) scripts/setup demo
	@touch $@

# The test set includes the demo set, so it satisfies `make demo` too.
$(TEST_STAMP): pyproject.toml requirements/lock.txt requirements/no-deps.txt \
		requirements/test-lock.txt requirements/test-no-deps.txt scripts/setup
	VENV=$(VENV) scripts/setup test
	@touch $@ $(DEMO_STAMP)

services: setup  ## Start PostgreSQL, Redis and Kafka on loopback
	scripts/services start

services-stop:  ## Stop the local servers
	scripts/services stop

demo: setup-demo  ## Run a whole simulated phone call on embedded defaults
	scripts/services start postgres
	$(VENV)/bin/parley db migrate
	$(VENV)/bin/parley demo

test: setup  ## Run the whole test suite against real servers, plus lint and types
	scripts/services start
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider

test-fast: setup  ## Only the tests that need no server and no speech model
	$(VENV)/bin/pytest -q -m "not integration and not models"

lint:  ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format:  ## Format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: setup  ## Regenerate the JSON Schemas in events/schemas
	$(VENV)/bin/parley events schemas

clean:  ## Remove local state (servers' data, recordings, spool); keeps the venv
	scripts/services stop || true
	rm -rf .parley
