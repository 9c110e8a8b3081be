# Two commands matter: `make run` (the whole dev stack, foreground) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

define require_python
	@$(1) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: Python >= 3.11 is required; '$(1)' is $$($(1) --version 2>&1 || echo missing)." >&2; \
	  echo "       Install it, or run e.g. 'make PYTHON=python3.12 $(MAKECMDGOALS)' (and 'rm -rf $(VENV)' if it was made by an older one)." >&2; \
	  exit 1; }
endef

.PHONY: help venv install run test lint clean

help:
	@echo "make run      start the dev stack (PostgreSQL, Redis, Temporal, sandbox, worker, API) in the foreground"
	@echo "make test     run the test suite (it starts what it needs)"
	@echo "make lint     ruff check, ruff format --check, mypy"
	@echo "make install  create $(VENV) and install the project with its dev extras"
	@echo "make clean    remove .data/ (databases, logs, demo credentials)"

venv install: $(STAMP)

$(PY):
	$(call require_python,$(PYTHON))
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml is newer than the last install.
$(STAMP): pyproject.toml | $(PY)
	$(call require_python,$(PY))
	$(PY) -m pip install -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(PY) -m devstack

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf .data/
