"""`serve --workers N`: one listening socket per worker, the kernel spreading connections."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from app.ops import workers

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="SO_REUSEPORT is Linux/BSD only"
)


@contextmanager
def _reserved() -> Iterator[socket.socket]:
    listener = workers.reserve("127.0.0.1", 0)
    assert listener is not None
    with listener:
        yield listener


def test_worker_sockets_share_the_address_and_each_receives_connections() -> None:
    with _reserved() as shared, ExitStack() as stack:
        own = [stack.enter_context(workers.own_socket(shared)) for _ in range(2)]
        for sock in own:
            sock.listen(64)
            sock.setblocking(False)
        address = shared.getsockname()
        assert all(sock.getsockname() == address for sock in own)
        clients = [stack.enter_context(socket.create_connection(address)) for _ in range(32)]
        accepted = [0, 0]
        for _ in range(len(clients)):
            for index, sock in enumerate(own):
                try:
                    conn, _peer = sock.accept()
                except BlockingIOError:
                    continue
                conn.close()
                accepted[index] += 1
        # Each connection is hashed to one of the two: all 32 on one has odds of 2**-31.
        assert sum(accepted) == len(clients)
        assert min(accepted) > 0


def test_the_reserved_socket_takes_no_connection() -> None:
    with _reserved() as shared:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(shared.getsockname(), timeout=2).close()


def test_an_address_in_use_is_refused_not_shared() -> None:
    with _reserved() as shared:
        port = shared.getsockname()[1]
        # A second `serve --workers N` on the same port does not start...
        assert workers.reserve("127.0.0.1", port) is None
        # ... nor does anything else that binds it the ordinary way.
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert workers.reserve("127.0.0.1", busy.getsockname()[1]) is None


def test_the_worker_module_imports_only_uvicorn() -> None:
    # A new worker imports this module (unpickling its process class) before it answers the
    # supervisor's health pings: the application must not be imported there.
    code = (
        "import sys, app.ops.workers; "
        "print(sorted(m for m in sys.modules if m.startswith('app.') and m != 'app.ops.workers'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "['app.ops']"


def _listeners(port: int) -> int:
    """How many sockets listen on 127.0.0.1:`port` (/proc/net/tcp, state 0A)."""
    wanted = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == wanted and line.split()[3] == "0A")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp")
def test_serve_with_two_workers_listens_twice_and_refuses_a_second_server(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'workers.db'}")
    env.pop("MINERAL_DATABASE_URL", None)
    env["MINERAL_AUDIT_CHAINS"] = "64"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _listeners(port) < 2:
            assert server.poll() is None, server.communicate()[0].decode(errors="replace")
            time.sleep(0.3)
        assert _listeners(port) == 2  # one socket per worker
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert ready is not None
        assert ready.status_code == 200
        second = subprocess.run(
            [*command[:-2], "--workers", "2", "--no-migrate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 3
        assert "Address already in use" in second.stderr
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output.decode(errors="replace")
    assert _listeners(port) == 0
