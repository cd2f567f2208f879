# socialcredit: `make run` runs the main job, `make test` the whole suite (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install services run test test-gpu mutate bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the package with every extra (dev: tests and lint; bench: Mesa for the comparison), then
# compiles the numba kernels into their caches (the first run would otherwise wait ~30 s for them).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python scripts/warm_kernels.py
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# The main job: simulate a town, write the report, load the run, serve the live system.
run: install
	$(BIN)/socialcredit demo

# Chromium and PostgreSQL, which the suite needs: installed or started, else a loud failure.
services:
	@scripts/services

# Hypothesis runs its derandomised `ci` profile (tests/conftest.py): the same examples every run.
test: install services
	$(BIN)/python -m pytest -q

# The GPU job: the gpu extra installed and the GPU tests run; on a machine without one they fail.
test-gpu: install
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,gpu]"
	SOCIALCREDIT_REQUIRE_GPU=1 $(BIN)/python -m pytest -q tests/simulation/test_gpu.py

# Mutation testing (mutmut, configured in pyproject.toml) over the engine and the service's
# ingest, access and look-up log code, with their fast tests; prints the score and the survivors.
mutate: install
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,mutate]"
	$(BIN)/python scripts/mutate.py

# Speed measurements, never timed assertions: each script prints its own numbers.
bench: install
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: install
	$(BIN)/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist .pytest_cache
