"""A PostgreSQL server of the test's own, which the test may stop and start at will.

Never the shared server at 5432: `initdb` a cluster into a temporary folder, run it on a free
port with `pg_ctl`, as an unprivileged user (PostgreSQL refuses to run as root; the tests do
run as root, so the server runs as `nobody` through `runuser`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
UNPRIVILEGED_USER = "nobody"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrivateServer:
    """One throw-away PostgreSQL cluster: `url` reaches its `mineral` database."""

    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/mineral"

    def _run(self, *args: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", UNPRIVILEGED_USER, "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c max_connections=60"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every session at once (a restart or failover); `immediate` is a
        crash."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        self._run(
            str(PG_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "mineral",
        )


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateServer]:
    if not (PG_BIN / "pg_ctl").exists():
        pytest.fail(f"PostgreSQL server binaries not found in {PG_BIN} (set TEST_PG_BIN)")
    root = Path(tempfile.mkdtemp(prefix="mineral-outage-"))
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam(UNPRIVILEGED_USER).pw_uid, -1)
    server = PrivateServer(root=root, port=free_port())
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        try:
            server.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)
