"""Graceful shutdown on SIGTERM: a real uvicorn (and a real MLLP listener) finish the request
or frame in flight; new work is refused; while draining the app answers 503."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.auth.cli import create_api_key_command
from app.core.config import Settings
from app.interop.hl7.mllp import END_BLOCK, START_BLOCK
from app.main import create_app
from app.ops.draining import Drain, chain_signal_handlers
from tests.conftest import DEFAULT_ORGANIZATION, Database
from tests.interop.hl7.messages import magnesium_mmol, next_id, oru, segment

ROOT = Path(__file__).resolve().parent.parent
Keys = dict[str, dict[str, str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def refuses_connections(port: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while chunk := sock.recv(65536):  # the server closes after answering
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def service_env(settings: Settings) -> dict[str, str]:
    """The test settings, for a child process (the same audit key, so its audit rows chain)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINERAL_")}
    env.update(
        DATABASE_URL=settings.database_url,
        MINERAL_ENVIRONMENT=settings.environment,
        MINERAL_AUDIT_KEY=settings.audit_key.get_secret_value(),
        MINERAL_LOG_LEVEL="WARNING",
        MINERAL_SHUTDOWN_GRACE_SECONDS="20",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def stop_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_sigterm_lets_an_in_flight_http_request_finish_and_refuses_new_connections(
    db: Database,
    api_keys: Keys,
    service_env: dict[str, str],
    stop_process: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--no-migrate", "--port", str(port)],
        cwd=ROOT,
        env=service_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stop_process.append(process)
    wait_for_port(port, process)
    body = json.dumps(
        {
            "identifiers": [{"system": "urn:test:mrn", "value": next_id("MRN-SHUTDOWN")}],
            "sex": "female",
            "birth_date": "1981-04-12",
        }
    ).encode()
    head = (
        f"POST /api/v1/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {api_keys[DEFAULT_ORGANIZATION]['integration']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        slow.sendall(head + body[:10])  # a slow client: the request is in flight
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert refuses_connections(port)  # stopped accepting...
        assert process.poll() is None  # ...but still waiting for the request in flight
        slow.sendall(body[10:])
        status, headers, answer = read_http_response(slow)
    assert status == 201, answer
    assert headers.get("connection") == "close"
    assert process.wait(20) in (0, -signal.SIGTERM)
    assert db.count("patient") == 1


def test_sigterm_lets_the_mllp_listener_finish_the_frame_in_hand(
    db: Database,
    settings: Settings,
    service_env: dict[str, str],
    stop_process: list[subprocess.Popen[bytes]],
) -> None:
    key = create_api_key_command(
        settings, org=DEFAULT_ORGANIZATION, role="integration", name="mllp shutdown"
    ).splitlines()[-1]
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "mllp", "--port", str(port)],
        cwd=ROOT,
        env={**service_env, "MINERAL_MLLP_API_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stop_process.append(process)
    wait_for_port(port, process)
    message = oru([magnesium_mmol()], control_id="SIGTERM-1", mrn=next_id("MRN")).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sender:
        sender.sendall(START_BLOCK + message[:40])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert refuses_connections(port)
        sender.sendall(message[40:] + END_BLOCK)
        data = b""
        while chunk := sender.recv(65536):  # the ACK, then the listener closes
            data += chunk
    assert data.startswith(START_BLOCK)
    assert data.endswith(END_BLOCK)
    assert segment(data[1:-2].decode(), "MSA")[1:3] == ["AA", "SIGTERM-1"]
    assert process.wait(20) == 0
    assert db.count("panel") == 1


def test_a_draining_app_answers_503_with_retry_after_but_stays_live(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 200
        app.state.drain.start()
        response = client.get("/api/v1/patients")
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.headers["connection"] == "close"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("shutting-down")
        assert "x-request-id" in response.headers
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/live").status_code == 200


def test_sigterm_starts_draining_before_the_server_handler_runs() -> None:
    calls: list[int] = []
    original = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        drain = Drain()
        chain_signal_handlers(drain)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        assert drain.draining
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, original)
