# Each target installs what it needs into .venv first, so a fresh machine needs only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench load cluster install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python scripts/bench/poll.py
	$(BIN)/python scripts/bench/predict.py
	$(BIN)/python scripts/bench/shadow_overhead.py
	$(BIN)/python scripts/bench/metrics_overhead.py
	$(BIN)/python scripts/bench/artifact_pull.py
	$(BIN)/python scripts/bench/convergence.py
	$(BIN)/python scripts/bench/drift.py

# PostgreSQL, three replicas and nginx with TLS on this machine, until Ctrl-C (docs/scale-out.md).
cluster: $(STAMP)
	$(BIN)/python -m scripts.cluster

load: $(STAMP)
	$(BIN)/python scripts/load/fleet.py --start-server --agents 2000 --duration 300

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tether-data tether-agent tether-cluster
