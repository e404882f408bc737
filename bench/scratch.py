"""Scratch databases: one PostgreSQL database or SQLite file per service, dropped at the end."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import (
    OUR_SOURCE,
    Db,
    HarnessError,
    Service,
    log,
)

# --------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str

    def url(self, database: str, driver: str = "") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"


_PG_ADMIN_SCRIPT = """
import json, sys
import psycopg
conninfo, statements = sys.argv[1], json.loads(sys.argv[2])
with psycopg.connect(conninfo, autocommit=True) as conn:
    for statement in statements:
        cursor = conn.execute(statement)
        if cursor.description is not None:
            print(json.dumps([list(r) for r in cursor.fetchall()], default=str))
"""


def pg_run(server: PgServer, database: str, statements: Sequence[str]) -> list[str]:
    """Run SQL through psycopg in a child interpreter (keeps this file stdlib + httpx only)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PG_ADMIN_SCRIPT,
            server.url(database),
            json.dumps(list(statements)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise HarnessError(f"PostgreSQL: {'; '.join(statements)} failed:\n{done.stderr.strip()}")
    return done.stdout.splitlines()


def pg_drop(server: PgServer, name: str) -> None:
    try:
        pg_run(server, "postgres", [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
    except HarnessError:  # PostgreSQL < 13 has no FORCE
        pg_run(server, "postgres", [f'DROP DATABASE IF EXISTS "{name}"'])
    log(f"dropped database {name}")


@dataclass(frozen=True)
class Scratch:
    """Where each service keeps its data for one database kind."""

    db: Db
    floor_url: str  # FLOOR_DB
    ours_url: str  # DATABASE_URL
    count_panels: Callable[[Service], int]
    # The maintenance the last load left pending, done now on both services' data (bench/
    # README.md, method): PostgreSQL VACUUM (ANALYZE) and CHECKPOINT, SQLite a WAL checkpoint.
    # Autovacuum and checkpoints set off by one service's load otherwise run in the next
    # load's window, often the other service's.
    settle: Callable[[], None]


def make_scratch(
    db: Db, token: str, stack: contextlib.ExitStack, args: argparse.Namespace
) -> Scratch:
    if db == "postgresql":
        server = PgServer(args.pg_host, args.pg_port, args.pg_user)
        names: dict[Service, str] = {"floor": f"bench_floor_{token}", "ours": f"bench_app_{token}"}
        for name in names.values():
            pg_run(server, "postgres", [f'CREATE DATABASE "{name}"'])
            stack.callback(_quietly, f"drop database {name}", pg_drop, server, name)
            log(f"created database {name}")

        def count_pg(service: Service) -> int:
            sql = "SELECT count(*) FROM panel"
            if service == "ours":
                sql += f" WHERE source = '{OUR_SOURCE}'"
            return int(json.loads(pg_run(server, names[service], [sql])[0])[0][0])

        def settle_pg() -> None:
            for name in names.values():
                pg_run(server, name, ["VACUUM (ANALYZE)"])
            pg_run(server, "postgres", ["CHECKPOINT"])

        return Scratch(
            db=db,
            floor_url=server.url(names["floor"], "psycopg"),
            ours_url=server.url(names["ours"]),
            count_panels=count_pg,
            settle=settle_pg,
        )

    folder = Path(tempfile.mkdtemp(prefix=f"bench_sqlite_{token}_"))
    stack.callback(_quietly, f"remove {folder}", shutil.rmtree, folder, True)
    files: dict[Service, Path] = {"floor": folder / "floor.db", "ours": folder / "app.db"}
    log(f"SQLite files in {folder}")

    def count_sqlite(service: Service) -> int:
        sql = "SELECT count(*) FROM panel"
        if service == "ours":
            sql += f" WHERE source = '{OUR_SOURCE}'"
        with contextlib.closing(sqlite3.connect(files[service], timeout=30)) as conn:
            return int(conn.execute(sql).fetchone()[0])

    def settle_sqlite() -> None:
        for path in files.values():
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    return Scratch(
        db=db,
        floor_url=f"sqlite:///{files['floor']}",
        ours_url=f"sqlite:///{files['ours']}",
        count_panels=count_sqlite,
        settle=settle_sqlite,
    )


def _quietly(what: str, fn: Callable[..., object], *fn_args: object) -> None:
    try:
        fn(*fn_args)
    except Exception as exc:  # cleanup must go on with the next item
        log(f"cleanup: {what} failed: {exc}")
