# The few verbs a contributor needs. `make test` is exactly the README's test command.
.PHONY: setup lint types test-fast test bench serve migrate

VENV ?= .venv
PY := $(VENV)/bin/python

setup:  ## install the project with its development tools into .venv
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'

lint:  ## ruff lint and format check
	$(VENV)/bin/ruff check app tests bench migrations
	$(VENV)/bin/ruff format --check app tests bench migrations

types:  ## mypy --strict over app, tests and bench
	$(VENV)/bin/mypy

test-fast:  ## the suite on SQLite only (no PostgreSQL needed)
	TEST_DATABASES=sqlite $(VENV)/bin/pytest -q -p no:cacheprovider

test:  ## what CI runs: install, ruff, mypy, pytest on SQLite and PostgreSQL
	bash scripts/test.sh

bench:  ## the benchmark harness against the floor service (see bench/README.md)
	$(PY) bench/run.py

serve:  ## run the service on the embedded SQLite default
	$(PY) -m app serve

migrate:  ## apply migrations to DATABASE_URL
	$(PY) -m app migrate
