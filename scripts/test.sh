#!/usr/bin/env bash
# Install the project with its development tools into .venv, then run every check:
# ruff (lint + format), mypy (strict), and pytest on SQLite AND PostgreSQL.
#
# PostgreSQL: TEST_POSTGRES_URL (default postgresql://root@127.0.0.1:5432/test); the suite creates
# and drops its own scratch databases on that server. Without a reachable server the PostgreSQL
# tests FAIL; to run on SQLite only, say so explicitly with TEST_DATABASES=sqlite.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check app tests bench migrations
.venv/bin/ruff format --check app tests bench migrations
echo "== mypy"
.venv/bin/mypy
echo "== pytest (databases: ${TEST_DATABASES:-sqlite,postgresql})"
.venv/bin/pytest -p no:cacheprovider "$@"
