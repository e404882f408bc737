"""SQLite for the async engine with no thread hop: statements run inline on the event loop.

SQLAlchemy's ``sqlite+aiosqlite`` sends every statement, BEGIN and COMMIT to aiosqlite's worker
thread and back through the event loop, and that round trip cost more than the statements
themselves (a POST panel makes about ten). This dialect keeps everything else of it (the
asyncio pool, greenlet-driven sessions, SQLite's SQL and types) but calls the ``sqlite3``
connection directly, on the loop's own thread: ``make_engine`` uses it for the service's
engine (``sqlite+inline``).

The trade-off: a long SQLite statement (a large export, a slow scan) now holds the event loop
for as long as it runs, where it used to hold only the worker thread. With one connection per
process (app.core.db.make_engine) every request that needed the database already waited for
it; what changes is that requests which do not need the database (health checks, requests
refused before authentication, responses being streamed) wait too. The statements this
service runs take microseconds to a few milliseconds (docs/adr/0008-sqlite-inline.md).

Waiting for SQLite's lock never blocks the loop: SQLite's own busy handler sleeps the calling
thread, which is now the loop's, so while it slept nothing else in the process ran, including
the coroutine holding the lock in another engine on the same file (a deadlock until the
timeout). Connections here are opened with ``busy_timeout`` 0, and a statement refused with
SQLITE_BUSY is retried after an ``asyncio.sleep`` (1 ms, doubling up to 50 ms), for at most
BUSY_TIMEOUT_SECONDS in all, after which its OperationalError ("database is locked") is raised
as before (503). SQLite guarantees a statement refused with SQLITE_BUSY did not run, so a
retry never applies a change twice.

Checkpoints run on a thread of their own (``WalCheckpointer``). In WAL mode a commit appends
the transaction's pages to the -wal file; a checkpoint later copies them into the database file
and fsyncs both. SQLite runs it in the committing connection once the log passes 1000 pages
(its default autocheckpoint), and here that connection's thread is the event loop: every ~25
POSTs (one writes ~40 pages: four tables, sixteen indexes) the loop stood still 20-70 ms,
mostly in fsync (issue 15: 0.8 ms of each POST's loop time on average). So the engine's
connection hands the checkpoint to a second connection, on a thread, which copies the pages
while the loop writes on (SQLite's PASSIVE checkpoint takes no lock a writer needs; the GIL is
released while sqlite3 works), and its own autocheckpoint stays as a backstop at
``BACKSTOP_PAGES``: the background copy finishes behind a moving log, so under sustained writes
the log would never restart from its beginning; past the backstop the writer checkpoints the
few pages the thread has not copied yet, and the next transaction restarts the log.

Durability is unchanged, and it is SQLite's ``journal_mode=WAL`` + ``synchronous=NORMAL``
(the floor, ../shared/bench/floor_app.py, sets the same two pragmas): COMMIT returns once the
pages are written to the -wal file (in the OS's cache, not yet fsynced), so a committed panel
survives a crash or kill of the process: the operating system holds the write. A power loss or
kernel crash may lose the transactions committed since the log's last fsync (never corrupting
the database: WAL replays whole transactions only); the checkpoint thread fsyncs the log more
often (~PAUSE_SECONDS after a commit, where the 1000-page autocheckpoint waited for 1000
pages), so that window is shorter, not longer. Surviving power loss per commit takes
``synchronous=FULL`` (an fsync per COMMIT), which neither this service nor the floor pays.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any, Self, TypeVar

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import AdaptedConnection
from sqlalchemy.util import VersionInfo
from sqlalchemy.util.concurrency import await_, in_greenlet

# The total wait for SQLite's lock, as the busy_timeout of 10 s allowed before.
BUSY_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.001
LONGEST_RETRY_SECONDS = 0.05

# SQLITE_BUSY and SQLITE_BUSY_RECOVERY (another connection is recovering the WAL) pass once the
# other connection is done. SQLITE_BUSY_SNAPSHOT (a read transaction that may no longer write)
# never does: retrying it would only wait out the timeout, so it is raised at once, as SQLite's
# busy handler never waited for it either.
_RETRIED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_BUSY_RECOVERY})

# The writer's own autocheckpoint once the checkpoint thread falls behind or the log cannot
# restart under constant writes (pages, ~16 MB of log at SQLite's 4 KiB pages).
BACKSTOP_PAGES = 4000
# After a commit, the checkpoint thread waits this long before copying, so a checkpoint (two
# fsyncs) covers the commits of that time and a page many of them rewrote is copied once.
PAUSE_SECONDS = 0.05

T = TypeVar("T")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode in _RETRIED


class _NoWait:
    """An awaitable that is done at once. Awaited once per statement, it tells SQLAlchemy's
    AsyncConnection.execute (which refuses a driver that never awaits, AwaitRequired) that the
    statement went through the asyncio bridge; it costs two greenlet switches and no trip
    through the event loop."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_NO_WAIT = _NoWait()


def _through_the_bridge() -> None:
    if in_greenlet():  # always, but for a connection used outside SQLAlchemy's asyncio
        await_(_NO_WAIT)


def _until_not_busy(run: Callable[..., T], *args: Any, ran: Callable[[], bool] | None = None) -> T:
    """`run(*args)`, retried after an asyncio sleep while SQLite answers SQLITE_BUSY, unless
    `ran()` says part of it ran before the refusal."""
    try:
        return run(*args)
    except sqlite3.OperationalError as error:
        if not _is_busy(error) or not in_greenlet() or (ran is not None and ran()):
            raise
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    delay = FIRST_RETRY_SECONDS
    while True:
        await_(asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic()))))
        try:
            return run(*args)
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or time.monotonic() >= deadline or (ran is not None and ran()):
                raise
        delay = min(delay * 2, LONGEST_RETRY_SECONDS)


class StreamingCursor(sqlite3.Cursor):
    """sqlite3's cursor whose statements wait out SQLITE_BUSY on the event loop; rows are
    stepped as they are fetched (server-side cursors: ``stream()``, ``yield_per``). Only
    execute and executemany take locks: a row fetched later belongs to a statement that
    already holds its read snapshot."""

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        # None: no parameters, as other DBAPI adapters accept (sqlite3 refuses it).
        _until_not_busy(_execute, self, sql, () if parameters is None else parameters)
        _through_the_bridge()
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Self:
        # Each row is its own statement: a refusal after some rows ran (possible only outside
        # a write transaction) is raised, never retried, so no row is written twice.
        rows = list(seq_of_parameters)
        changes = self.connection.total_changes
        _until_not_busy(
            _executemany, self, sql, rows, ran=lambda: self.connection.total_changes != changes
        )
        _through_the_bridge()
        return self

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's asyncio results before they leave the greenlet: sqlite3's
        fetches need no await, so there is nothing to do."""


class InlineCursor(StreamingCursor):
    """The default cursor: a statement's rows are read as it executes (as aiosqlite's adapter
    did), so no statement stays open, holding a read snapshot, after its result is handed
    over; fetches come from that buffer."""

    _rows: deque[Any]

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        super().execute(sql, parameters)
        self._rows = deque(_fetchall(self) if self.description else ())
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Self:
        super().executemany(sql, seq_of_parameters)
        self._rows = deque()
        return self

    def fetchone(self) -> Any:
        rows = self._rows
        return rows.popleft() if rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        if self._rows:
            return self._rows.popleft()
        raise StopIteration


_execute = sqlite3.Cursor.execute
_executemany = sqlite3.Cursor.executemany
_fetchall = sqlite3.Cursor.fetchall


class WalCheckpointer:
    """Checkpoints one WAL database from a daemon thread with its own connection, woken by the
    commits of the engine's connection (see the module's docstring). PASSIVE: it never waits
    for a reader or the writer, and copies what it can; SQLITE_BUSY (another checkpoint is
    running, in this process or another) is skipped: the next commit wakes it again."""

    def __init__(self, database: str, *, uri: bool) -> None:
        self._database = database
        self._uri = uri
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        """Let the thread end (its connection closes there); the writer's backstop remains."""
        self._stopping = True
        self._wanted.set()

    def _run(self) -> None:
        # Off the loop, SQLite's own busy handler may sleep: opening reads the schema.
        connection = sqlite3.connect(
            self._database, uri=self._uri, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
        )
        try:
            while True:
                self._wanted.wait()
                time.sleep(PAUSE_SECONDS)
                self._wanted.clear()
                # Read after the clear: stop() sets the flag before the event, so a stop is
                # either seen here or wakes the next wait.
                if self._stopping:
                    return
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy, or the file is going away: the writer's backstop remains
        finally:
            connection.close()


class InlineConnection(AdaptedConnection):
    """The DBAPI connection SQLAlchemy's async engine drives, over a plain sqlite3 one."""

    __slots__ = ("__weakref__", "_changes", "_checkpointer", "_connect_args", "dbapi")

    _connection: sqlite3.Connection  # type: ignore[assignment]

    def __init__(
        self, dbapi: InlineDBAPI, connection: sqlite3.Connection, connect_args: tuple[str, bool]
    ) -> None:
        self.dbapi = dbapi
        self._connection = connection
        self._connect_args = connect_args
        self._checkpointer: WalCheckpointer | None = None
        self._changes = 0

    def checkpoint_in_background(self) -> None:
        """Hand this WAL database's checkpoints to a thread (module docstring); the connection's
        own autocheckpoint becomes the backstop. A database not in WAL mode (in memory) keeps
        SQLite's behaviour."""
        if self._checkpointer is not None:
            return
        (mode,) = self._connection.execute("PRAGMA journal_mode").fetchone()
        if mode != "wal":
            return
        self._connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        database, uri = self._connect_args
        self._checkpointer = WalCheckpointer(database, uri=uri)
        # A connection dropped without close() (a pool discarding it after an error, say)
        # still lets its thread end, instead of leaving it parked for the process's life.
        weakref.finalize(self, self._checkpointer.stop)

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:  # None: the driver never emits BEGIN
        self._connection.isolation_level = value

    def cursor(self, server_side: bool = False) -> StreamingCursor:
        return self._connection.cursor(StreamingCursor if server_side else InlineCursor)

    def execute(self, operation: str, parameters: Any = None) -> StreamingCursor:
        return self.cursor().execute(operation, parameters)

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._connection.create_function(*args, **kwargs)

    def commit(self) -> None:
        # A COMMIT refused with SQLITE_BUSY leaves the transaction open: it is retried as is.
        _until_not_busy(self._connection.commit)
        self.committed()

    def committed(self) -> None:
        """After a COMMIT: wake the checkpoint thread if it wrote anything."""
        if self._checkpointer is not None:
            changes = self._connection.total_changes
            if changes != self._changes:  # a read-only transaction leaves nothing to copy
                self._changes = changes
                self._checkpointer.committed()

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        self._stop_checkpoints()
        self._connection.close()

    def terminate(self) -> None:
        self._stop_checkpoints()
        self._connection.close()

    def _stop_checkpoints(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None


class InlineDBAPI:
    """The DBAPI module SQLAlchemy sees: sqlite3's, with connections made for the loop."""

    paramstyle = "qmark"
    has_stop = True  # SQLiteDialect_aiosqlite: terminate() is supported
    Binary = sqlite3.Binary
    DatabaseError = sqlite3.DatabaseError
    DataError = sqlite3.DataError
    Error = sqlite3.Error
    IntegrityError = sqlite3.IntegrityError
    InterfaceError = sqlite3.InterfaceError
    InternalError = sqlite3.InternalError
    NotSupportedError = sqlite3.NotSupportedError
    OperationalError = sqlite3.OperationalError
    ProgrammingError = sqlite3.ProgrammingError
    Warning = sqlite3.Warning
    PARSE_COLNAMES = sqlite3.PARSE_COLNAMES
    PARSE_DECLTYPES = sqlite3.PARSE_DECLTYPES
    sqlite_version = sqlite3.sqlite_version
    sqlite_version_info = sqlite3.sqlite_version_info

    def connect(self, database: str, **kwargs: Any) -> InlineConnection:
        # SQLite's busy handler would sleep the event loop: SQLITE_BUSY is waited out in
        # InlineCursor instead. BEGIN is emitted by app.core.db, never by the driver.
        kwargs.update(timeout=0, isolation_level=None)
        connect_args = (database, bool(kwargs.get("uri", False)))
        return InlineConnection(self, sqlite3.connect(database, **kwargs), connect_args)


class SQLiteDialect_inline(SQLiteDialect_aiosqlite):  # noqa: N801 (SQLAlchemy's naming)
    driver = "inline"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return InlineDBAPI()

    def retrieve_dbapi_version(self, dbapi: Any) -> VersionInfo:
        # sqlite3 ships with CPython and has no version of its own (as pysqlite reports it).
        import sys

        return VersionInfo(sys.version_info[:3])


registry.register("sqlite.inline", __name__, "SQLiteDialect_inline")


def inline_url(url: str) -> str:
    """`url` (sqlite:// or sqlite+<driver>://) with this module's driver."""
    _, sep, rest = url.partition("://")
    return f"sqlite+inline{sep}{rest}"
