# Two entry points, both working on a fresh machine: `make up` runs the stack, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: install test lint
install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# Peer benchmark (docs/benchmarks.md): the peers go into their own virtualenv, never this one.
PEERS_VENV ?= /work/peers-venv
.PHONY: bench-peers-deps bench-peers
bench-peers-deps:
	scripts/bench/install_peers.sh $(PEERS_VENV)

bench-peers: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) scripts/bench/peers.py --peers-venv $(PEERS_VENV) --out docs/bench
