# Two entry points, both working on a fresh machine: `make up` runs the stack, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: install test lint up chaos bench-streams
install: $(VENV)/.installed

up: $(VENV)/.installed
	$(VENV)/bin/flotilla up

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# Fault-injection scenarios under SDK load (whole stack as processes, ~4 min on 2 cores); renders
# the figures into docs/reliability.md.
chaos: $(VENV)/.installed
	$(PY) scripts/chaos_report.py

# The router holding many concurrent streams for a minute: RSS curve (CSV + PNG) and figures into
# docs/reliability.md.
bench-streams: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) scripts/bench/router_streams.py
