"""One statement straight through asyncpg on a pooled connection (PostgreSQL; issue 15).

The panel hot paths send ONE statement per request. Through SQLAlchemy Core that statement
costs a Connection, an execution context, a compiled-cache lookup and a Result around the
driver call, several times the driver's own work (measured: ~350 us of CPU per GET's statement
against ~150 us here). Here the connection still comes from, and goes back to, the engine's
pool (its size, timeout, idle ping, metrics and reset-on-return all apply; the startup
parameters, lock_timeout included, are the pool's connections'), but the statement is sent
with asyncpg's ``fetchrow``:

- outside any transaction block, so each statement commits on its own (autocommit);
- through asyncpg's statement cache, whose size is the engine's
  (``MINERAL_DATABASE_STATEMENT_CACHE_SIZE``; 0: unnamed statements only, for PgBouncer in
  transaction mode);
- with errors translated as SQLAlchemy translates them: a database error is a
  ``sqlalchemy.exc.DBAPIError`` whose ``orig`` carries the SQLSTATE (and the RAISE's DETAIL),
  a lost connection invalidates the pool as SQLAlchemy's own disconnect handling does, so the
  problem+json handlers (503 for an outage) answer exactly as on the SQLAlchemy path.

``before_cursor_execute`` listeners on the engine (statement counters in tests and bench/)
still see every statement, with a cursor of the same connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import greenlet_spawn

# What asyncpg raises that SQLAlchemy's asyncpg dialect translates (a database error, a closed
# or misused connection); OSError and timeouts are raised as they are, as SQLAlchemy does.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class Driver:
    """A pooled connection's asyncpg driver, for ``async with``; back in the pool after."""

    __slots__ = ("_engine", "_raw", "_connection")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._raw: PoolProxiedConnection | None = None
        self._connection: asyncpg.Connection | None = None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def __aenter__(self) -> Driver:
        sync_engine = self._engine.sync_engine
        try:
            raw = await self._engine.raw_connection()
        except sync_engine.dialect.loaded_dbapi.Error as error:
            # What Engine.connect() does with the same failure (wrapped, pool invalidated
            # on a disconnect).
            Connection._handle_dbapi_exception_noconnection(error, sync_engine.dialect, sync_engine)
        self._raw, self._connection = raw, raw.driver_connection
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        raw, self._raw, self._connection = self._raw, None, None
        if raw is not None:
            # Also after a statement cut off by cancellation or command_timeout: asyncpg has
            # asked the server to cancel it, and the connection's next statement waits for
            # that to be done (as on the SQLAlchemy path, which hands it back the same way).
            # In a greenlet, as SQLAlchemy's AsyncConnection.close: a connection the pool has
            # no room for (an overflow one) or must reset is closed or rolled back with I/O.
            await greenlet_spawn(raw.close)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of `sql` (``$1``, ``$2``, ... bound to `args`), or None. One
        statement, committed on its own."""
        connection = self._connection
        assert connection is not None, "use the Driver in `async with`"
        if self._engine.sync_engine.dispatch.before_cursor_execute:
            await greenlet_spawn(self._announce, sql, args)
        try:
            row: asyncpg.Record | None = await connection.fetchrow(sql, *args)
        except _DRIVER_ERRORS as error:
            raise await self._translated(sql, error) from error
        except OSError:
            if connection.is_closed():
                await greenlet_spawn(
                    self._engine.sync_engine.pool._invalidate, self._raw_connection()
                )
            raise
        return row

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """BEGIN before the block's statements, COMMIT after them, ROLLBACK when it raises
        (for the rare append that must hold a lock across two statements). A rollback that
        cannot be sent (the connection broke, or the task was cancelled again) discards the
        connection: SQLAlchemy's reset-on-return does not know of this transaction."""
        connection = self._connection
        assert connection is not None, "use the Driver in `async with`"
        transaction = connection.transaction()
        try:
            await transaction.start()
        except _DRIVER_ERRORS as error:
            raise await self._translated("BEGIN", error) from error
        try:
            yield
        except BaseException:
            try:
                await transaction.rollback()
            except BaseException:
                await greenlet_spawn(self._raw_connection().invalidate)
                raise
            raise
        try:
            await transaction.commit()
        except _DRIVER_ERRORS as error:
            raise await self._translated("COMMIT", error) from error

    def _raw_connection(self) -> PoolProxiedConnection:
        raw = self._raw
        assert raw is not None, "use the Driver in `async with`"
        return raw

    async def _translated(self, sql: str, error: Exception) -> BaseException:
        """`error` as SQLAlchemy's Connection raises it (``dbapi_error_of``); a closed
        connection invalidates the pool's connections, as a disconnect does there."""
        raw = self._raw_connection()
        sync_engine = self._engine.sync_engine
        wrapped = dbapi_error_of(sync_engine.dialect, raw.dbapi_connection, sql, error)
        if isinstance(wrapped, DBAPIError) and wrapped.connection_invalidated:
            # closing the dead connection is I/O: in a greenlet
            await greenlet_spawn(sync_engine.pool._invalidate, raw, wrapped.orig)
        return wrapped

    def _announce(self, sql: str, args: tuple[Any, ...]) -> None:
        """Run the engine's ``before_cursor_execute`` listeners (in a greenlet: they may use
        the cursor). Autocommit meanwhile, so a listener's statement opens no transaction."""
        adapted: Any = self._raw_connection().dbapi_connection
        adapted.autocommit = True
        try:
            self._engine.sync_engine.dispatch.before_cursor_execute(
                None, adapted.cursor(), sql, args, None, False
            )
        finally:
            adapted.autocommit = False


def dbapi_error_of(dialect: Dialect, adapted: Any, sql: str, error: Exception) -> BaseException:
    """An error of the asyncpg connection under `adapted` (SQLAlchemy's adapted DBAPI
    connection) as SQLAlchemy's Connection raises it: a DBAPIError whose ``orig`` is the
    dialect's error (``sqlstate``, ``detail``; caused by the asyncpg error), with
    ``connection_invalidated`` set for a disconnect; an error the dialect does not translate,
    as it is. For statements sent on the driver beside SQLAlchemy (``Driver``, the bulk
    COPYs)."""
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        adapted._handle_exception(error)
    except dbapi_error as translated:
        orig: Any = translated
    except Exception as untranslated:  # not one the dialect translates: raised as it is
        return untranslated
    wrapped: BaseException = DBAPIError.instance(
        sql,
        None,
        orig,
        dbapi_error,
        hide_parameters=True,
        connection_invalidated=bool(dialect.is_disconnect(orig, adapted, None)),
        dialect=dialect,
    )
    return wrapped
