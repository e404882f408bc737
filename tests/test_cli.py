"""The commands the README and the Dockerfile run, exercised as a user would run them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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
    assert "3 patient(s) and 4 panel(s) added" in demo.stdout
    rerun = _run(["demo-data"], tmp_path, cli_env)
    assert "0 patient(s) and 0 panel(s) added" in rerun.stdout


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
        active = httpx.get(f"http://127.0.0.1:{port}/api/v1/range-sets/active", timeout=5)
        assert active.status_code == 200
        assert active.json()["name"] == "default"
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5)
        assert docs.status_code == 200
        assert "/docs-assets/swagger-ui-bundle.js" in docs.text
    finally:
        process.terminate()
        process.wait(timeout=20)
