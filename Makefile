# make run: set up and start the embedded service; make test: the test suite;
# make bench: the benchmarks (not part of make test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/image-tagger serve  # applies migrations, then serves

# The second pass runs the database tests again on PostgreSQL, with the
# scaled-out tests (Celery on Redis); they skip, saying why, if a server is down.
# Tests spend much of their time waiting on jobs, so they run in parallel.
PARALLEL ?= -n auto --maxprocesses=4

test: $(STAMP)
	$(BIN)/pytest -q $(PARALLEL) -rs
	$(BIN)/pytest -q $(PARALLEL) -rs --db=postgresql --ignore=tests/cockpit  # the page's tests need no second database

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench

clean:
	rm -rf $(VENV) build *.egg-info
