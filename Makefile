# The commands in the README. Each target bootstraps uv and the virtualenv itself,
# so they work on a fresh clone of a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv/.synced

.PHONY: install system-packages demo bench test lint format clean uv

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

$(VENV): pyproject.toml uv.lock | uv
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)

system-packages:  ## Debian packages the tests need (PostgreSQL, Chromium); run as root
	bash scripts/system-packages.sh

demo: $(VENV)  ## generate the demo municipality and run the nightly flow on it
	$(UV) run --frozen lagesbild demo

bench: $(VENV)  ## benchmarks against the limit and pandas (scales: BENCH_ARGS="--pupils 10000 --years 3")
	$(UV) run --frozen lagesbild bench $(BENCH_ARGS)

test: $(VENV)  ## the whole test suite (unit, dbt, flows end to end)
	$(UV) run --frozen pytest

lint: $(VENV)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: $(VENV)
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

clean:  ## remove generated data and run output
	rm -rf data
