"""The commands the README and the Dockerfile run, exercised as a user would run them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.core.config import Settings
from app.main import create_app
from tests.conftest import Database

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env.pop("MINERAL_DATABASE_URL", None)
    return env


def test_migrate_then_demo_data_is_idempotent(tmp_path: Path, cli_env: dict[str, str]) -> None:
    first = _run(["migrate"], tmp_path, cli_env)
    assert first.returncode == 0, first.stderr
    assert "default reference ranges loaded" in first.stdout
    again = _run(["migrate"], tmp_path, cli_env)
    assert again.returncode == 0, again.stderr
    assert "default reference ranges loaded" not in again.stdout

    demo = _run(["demo-data"], tmp_path, cli_env)
    assert demo.returncode == 0, demo.stderr
    assert "3 patient(s), 4 panel(s) and 3 sleep assessment(s) added" in demo.stdout
    rerun = _run(["demo-data"], tmp_path, cli_env)
    assert "0 patient(s), 0 panel(s) and 0 sleep assessment(s) added" in rerun.stdout

    # --org: the same demo set in a named organization (created if new), idempotent there too.
    clinic = _run(["demo-data", "--org", "Sunrise Sleep Clinic"], tmp_path, cli_env)
    assert clinic.returncode == 0, clinic.stderr
    assert "in 'Sunrise Sleep Clinic'" in clinic.stdout
    assert "3 patient(s), 4 panel(s) and 3 sleep assessment(s) added" in clinic.stdout
    again_clinic = _run(["demo-data", "--org", "Sunrise Sleep Clinic"], tmp_path, cli_env)
    assert "0 patient(s), 0 panel(s) and 0 sleep assessment(s) added" in again_clinic.stdout


def test_load_ranges_imports_a_yaml_set_and_activates_it(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    assert _run(["migrate"], tmp_path, cli_env).returncode == 0
    loaded = _run(
        ["load-ranges", str(ROOT / "app" / "data" / "reference_ranges" / "default.yaml")],
        tmp_path,
        cli_env,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "default v2" in loaded.stdout
    assert "stored as active" in loaded.stdout


def test_load_ranges_reports_a_broken_file_without_a_traceback(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    assert _run(["migrate"], tmp_path, cli_env).returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nsource: test\nrows:\n  - analyte: magnesium\n")
    result = _run(["load-ranges", str(broken)], tmp_path, cli_env)
    assert result.returncode == 1
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr


def test_serve_applies_migrations_and_answers_health_and_docs(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    # The README's order: migrate, create a key (its last line), then serve and call with it.
    assert _run(["migrate"], tmp_path, cli_env).returncode == 0
    created = _run(["create-api-key", "--org", "default", "--role", "admin"], tmp_path, cli_env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert ready is not None
        assert ready.status_code == 200
        url = f"http://127.0.0.1:{port}/api/v1/range-sets/active"
        anonymous = httpx.get(url, timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        active = httpx.get(url, headers={"X-API-Key": key}, timeout=5)
        assert active.status_code == 200, active.text
        assert active.json()["name"] == "default"
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5)
        assert docs.status_code == 200
        assert "/docs-assets/swagger-ui-bundle.js" in docs.text
        # An identifier in a query string must not reach the logs (access lines log the path).
        search = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/patients",
            params={"identifier": "urn:test:mrn|MRN-LOG-CANARY"},
            headers={"X-API-Key": key},
            timeout=5,
        )
        assert search.status_code == 403  # an admin reads no patients; still logged
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    log = output.decode(errors="replace")
    assert "GET /api/v1/patients 403" in log
    assert "MRN-LOG-CANARY" not in log


def test_key_audit_and_idempotency_commands(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """create-api-key prints a working key as its last line; revoke-api-key stops it;
    verify-audit checks the chain the requests wrote (exit 0 when intact); purge-idempotency
    deletes only records past their retention. (Refused roles, revoking by prefix and twice:
    tests/auth/test_cli.py, in process.)"""
    assert _run(["migrate"], tmp_path, cli_env).returncode == 0
    created = _run(
        ["create-api-key", "--org", "cli-clinic", "--role", "integration", "--name", "LIS"],
        tmp_path,
        cli_env,
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    key = lines[-1]
    assert key.startswith("mlk_")
    assert key not in "\n".join(lines[:-1])  # shown once, as the last line only
    assert "'cli-clinic'" in lines[0]
    assert "role integration" in created.stdout

    settings = Settings(database_url=cli_env["DATABASE_URL"], api_key_cache_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        body = {"identifiers": [{"system": "urn:test:mrn", "value": "CLI-1"}], "sex": "male"}
        posted = client.post(
            "/api/v1/patients",
            json=body,
            headers={"X-API-Key": key, "Idempotency-Key": "cli-test-1"},
        )
        assert posted.status_code == 201, posted.text
        assert client.get(posted.headers["Location"], headers={"X-API-Key": key}).status_code == 200

        verified = _run(["verify-audit"], tmp_path, cli_env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.strip() == "audit trail intact: 2 events verified"

        revoked = _run(["revoke-api-key", key], tmp_path, cli_env)
        assert revoked.returncode == 0, revoked.stderr
        assert revoked.stdout.strip().endswith("revoked")
        assert "LIS" in revoked.stdout
        assert client.get("/api/v1/patients", headers={"X-API-Key": key}).status_code == 401
        unknown = _run(["revoke-api-key", "mlk_doesnotexist"], tmp_path, cli_env)
        assert unknown.returncode == 1
        assert unknown.stderr.startswith("error:")

        kept = _run(["purge-idempotency"], tmp_path, cli_env)
        assert kept.returncode == 0, kept.stderr
        assert kept.stdout.strip() == "purged 0 expired idempotency records"
        Database(client).in_session(_expire_idempotency_records)
        purged = _run(["purge-idempotency"], tmp_path, cli_env)
        assert purged.stdout.strip() == "purged 1 expired idempotency record"
        assert Database(client).count("idempotency_record") == 0


async def _expire_idempotency_records(session: Any) -> None:
    await session.execute(
        text("UPDATE idempotency_record SET expires_at = :past"),
        {"past": datetime(2000, 1, 1, tzinfo=UTC)},
    )


def test_load_rules_imports_a_rule_set_and_reports_errors(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    migrated = _run(["migrate"], tmp_path, cli_env)
    assert "default plan rule set loaded" in migrated.stdout
    shipped = ROOT / "app" / "data" / "plan_rules" / "default.yaml"

    loaded = _run(["load-rules", str(shipped)], tmp_path, cli_env)

    assert loaded.returncode == 0, loaded.stderr
    assert "default v2" in loaded.stdout
    assert "stored as active" in loaded.stdout
    broken = tmp_path / "rules.yaml"
    broken.write_text("name: broken\nsource: test\nrules: [{id: x}]\n")
    failed = _run(["load-rules", str(broken)], tmp_path, cli_env)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error:")
    assert "Traceback" not in failed.stderr
