# The commands in the README. Each target bootstraps uv and the virtualenv itself,
# so they work on a fresh clone of a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv/.synced

.PHONY: install system-packages demo bench bench-scale-out test test-fast test-flow test-scenarios test-spark test-all lint format clean uv

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

$(VENV): pyproject.toml uv.lock | uv
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)

system-packages:  ## Debian packages the tests need (PostgreSQL, Chromium): installs what is missing (root)
	bash scripts/system-packages.sh

demo: $(VENV)  ## generate the demo municipality and run the nightly flow on it
	$(UV) run --frozen lagesbild demo

bench: $(VENV)  ## benchmarks against the limit and pandas (scales: BENCH_ARGS="--pupils 10000 --years 3")
	$(UV) run --frozen lagesbild bench $(BENCH_ARGS)

bench-scale-out: $(VENV)  ## the bench with the Spark + Dask path beside the default one (extra `spark`, Java 17)
	bash scripts/java.sh
	$(UV) run --frozen --extra spark lagesbild bench --scale-out $(BENCH_ARGS)

test: $(VENV)  ## the dev loop (under 5 min): unit, dbt, connector and the core end-to-end tests, 2 workers
	$(UV) run --frozen pytest -n 2 --dist loadgroup -m "not spark and not scenario" $(PYTEST_ARGS)

test-fast: $(VENV)  ## everything but the end-to-end flow tests (no Prefect), under a minute
	$(UV) run --frozen pytest -m "not flow and not spark" $(PYTEST_ARGS)

test-flow: $(VENV) system-packages  ## only the end-to-end flow tests, both tiers (they start Prefect)
	$(UV) run --frozen pytest -n 2 --dist loadgroup -m "flow and not spark" $(PYTEST_ARGS)

test-scenarios: $(VENV) system-packages  ## the long end-to-end scenarios (every kill point, each source over nights, Prefect server and workers, region, BI clients)
	$(UV) run --frozen pytest -n 2 --dist loadgroup -m "scenario and not spark" $(PYTEST_ARGS)

test-spark: $(VENV)  ## the scale-out tests (Spark warehouse, Dask clean): installs the extra `spark`, needs Java 17
	bash scripts/java.sh
	$(UV) run --frozen --extra spark pytest -m spark $(PYTEST_ARGS)

test-all: test test-scenarios test-spark  ## every test, as CI runs them

lint: $(VENV)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: $(VENV)
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

clean:  ## remove generated data and run output
	rm -rf data
