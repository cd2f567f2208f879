# socialcredit: `make run` runs the main job, `make test` the whole suite (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the package with every extra (dev: tests and lint; bench: Mesa for the comparison).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# The main job: simulate a town, write the report, load the run, serve the live system.
run: install
	$(BIN)/socialcredit demo

test: install
	$(BIN)/python -m pytest -q

# Speed measurements, never timed assertions: each script prints its own numbers.
bench: install
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist .pytest_cache
