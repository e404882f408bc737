#!/usr/bin/env bash
# Install the project with its development tools into .venv, then run every check:
# ruff (lint + format), mypy (strict), and pytest on SQLite AND PostgreSQL.
# Installs Debian's chromium and chromium-driver first when missing (the printable-plan tests
# render the page in headless Chromium); that needs root or sudo and access to the Debian mirror.
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

# The printable-plan tests look at the page in headless Chromium (tests/browser.py) and fail
# without it: install Debian's chromium and chromium-driver when either is missing.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "not root and no sudo: as root, run apt-get install chromium chromium-driver" >&2
        return 1
    fi
}
install_chromium() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || true
    local install=(env DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends chromium chromium-driver)
    if ! as_root "${install[@]}"; then
        echo "apt-get install failed; refreshing the package lists and retrying" >&2
        sleep 5
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root "${install[@]}"
    fi
}
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "== installing chromium and chromium-driver (apt-get)"
    install_chromium
fi

# An independent FHIR validator (Medplum's, from the npm registry) checks what the FHIR facade
# emits (tests/interop/fhir/test_independent_validation.py); pinned by its package-lock.json.
if [ ! -d tests/interop/fhir/medplum/node_modules/@medplum/core ]; then
    echo "== installing the FHIR validator (npm ci)"
    npm ci --prefix tests/interop/fhir/medplum --no-audit --no-fund --loglevel=error
fi

echo "== ruff"
.venv/bin/ruff check app tests bench migrations
.venv/bin/ruff format --check app tests bench migrations
echo "== mypy"
.venv/bin/mypy
echo "== pytest (databases: ${TEST_DATABASES:-sqlite,postgresql})"
.venv/bin/pytest -p no:cacheprovider "$@"
