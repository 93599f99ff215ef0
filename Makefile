# `make run` and `make test` set everything up first (a virtualenv in .venv/ with the
# project installed in it), so a fresh clone needs nothing else by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint bench openapi clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --editable '.[dev,ops]'
	@touch $(STAMP)

## The embedded deployment: SQLite, a local broker folder, one worker, the API on :8000.
run: install
	$(BIN)/importer serve

## The whole suite; the integration layer needs PostgreSQL and Redis (else it skips).
test: install
	$(BIN)/pytest --durations=15

## The fast layer only (SQLite, fakeredis).
test-fast: install
	$(BIN)/pytest -m "not integration"

## The benchmarks of docs/benchmarks.md (needs PostgreSQL and Redis; ~20 minutes).
bench: install
	$(BIN)/python -m bench.e2e
	$(BIN)/python -m bench.small_batches
	$(BIN)/python -m bench.mixed
	$(BIN)/python -m bench.push
	$(BIN)/python -m bench.waiting
	$(BIN)/python -m bench.growth

## docs/openapi.json, the API's document (tests/app/test_openapi.py checks it is current).
openapi: install
	$(BIN)/python -m app.openapi > docs/openapi.json

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
