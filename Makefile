# Parley — the newcomer contract:
#   make demo   sets everything up and runs a whole simulated inbound phone call
#   make test   sets everything up, starts the real servers and runs the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.parley-installed
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup services services-stop demo test test-fast lint format schemas bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(STAMP)  ## Install system packages and the Python environment (idempotent)

$(STAMP): pyproject.toml requirements/lock.txt requirements/no-deps.txt scripts/setup
	scripts/setup
	@touch $@

services: setup  ## Start PostgreSQL, Redis and Kafka on loopback
	scripts/services start

services-stop:  ## Stop the local servers
	scripts/services stop

demo: setup  ## Run a whole simulated phone call on embedded defaults
	scripts/services start postgres
	$(VENV)/bin/parley db migrate
	$(VENV)/bin/parley demo

test: setup  ## Run the whole test suite against real servers, plus lint and types
	scripts/services start
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider

test-fast: setup  ## Only the tests that need no server
	$(VENV)/bin/pytest -q -m "not integration"

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
