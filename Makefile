# socialcredit: `make run` runs the main job, `make test` the whole suite (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the package with its extras (a later `gpu` extra joins only where it installs).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

run: install
	$(BIN)/socialcredit score --policy taz-2018 --events examples/events.csv --out runs/sample-scores.csv
	$(BIN)/socialcredit explain --policy taz-2018 --events examples/events.csv --citizen c-0003

test: install
	$(BIN)/python -m pytest -q

# Speed measurements, never timed assertions: each script prints its own numbers.
bench: install
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist .pytest_cache
