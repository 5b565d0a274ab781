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

# Peer benchmark (docs/benchmarks.md): the peers go into their own virtualenv, never this one.
PEERS_VENV ?= /work/peers-venv
.PHONY: bench-peers-deps bench-peers
bench-peers-deps:
	scripts/bench/install_peers.sh $(PEERS_VENV)

bench-peers: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) scripts/bench/peers.py --peers-venv $(PEERS_VENV) --out docs/bench
