"""SQLite's hot writes without SQLAlchemy's per-statement machinery (issue 15).

On the SQLite one-transaction POST (app.panels.sqlite_once) SQLAlchemy's execution path (per
statement: the cache-key walk, ``construct_params``, the processor list, the execution context,
the result object, a greenlet hop) cost more CPU than SQLite's own work. Here a statement is
compiled once (``Precompiled``: SQLAlchemy's own SQL and bind processors, so the values sent
are the ones ``connection.execute`` would send) and handed to the ``sqlite3`` connection of
app.core.sqlite_inline directly inside ``write_transaction``, or through ``exec_driver_sql``
elsewhere. Engine ``before_cursor_execute`` listeners still see every statement.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from app.core import sqlite_inline
from app.core.sqlite_inline import InlineConnection

T = TypeVar("T")


class Precompiled:
    """A Core statement compiled once, for SQLite and one set of parameter names: its SQL text,
    and for each ``?`` in it the parameter (or the statement's own literal) and the bind
    processor SQLAlchemy applies to it, so the values sent are exactly those
    ``connection.execute(statement, parameters)`` would send.

    Why: on the SQLite one-transaction POST SQLAlchemy's compiled-statement path (the cache
    key walk, ``construct_params``, the processor list, the execution context) cost more CPU
    than SQLite's own work (issue 15: ~1.5 ms of a ~2.5 ms write transaction). The text goes
    through ``exec_driver_sql``, so engine events still see every statement."""

    __slots__ = (
        "_all_given",
        "_binds",
        "_get",
        "_processors",
        "_results",
        "keys",
        "sql",
        "statement",
    )

    statement: Executable

    def __init__(self, statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> None:
        self.statement = statement  # held: the cache is keyed by its id
        self.keys = keys
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)
        assert isinstance(compiled, SQLCompiler)
        if (
            not compiled.positional
            or compiled.positiontup is None
            or compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.literal_execute_params
            or compiled.post_compile_params
        ):
            # Defaults SQLAlchemy computes per execution, or SQL rendered per execution:
            # this statement keeps the ordinary path.
            raise NotPrecompilable(str(compiled))
        self.sql = compiled.string
        binds: list[tuple[str | None, Any, Callable[[Any], Any] | None]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in keys:
                binds.append((name, None, processor))
            else:
                if bind.required:
                    raise NotPrecompilable(f"parameter {name!r} is not given")
                value = bind.effective_value
                binds.append((None, processor(value) if processor else value, None))
        self._binds = tuple(binds)
        # The common shape (every ``?`` a parameter, as in an INSERT): one C-level lookup of
        # all the values, then only the processors that exist.
        self._all_given = len(binds) > 1 and all(name is not None for name, _, _ in binds)
        self._get = itemgetter(*(name for name, _, _ in binds)) if self._all_given else None
        self._processors = tuple(
            (position, processor)
            for position, (_, _, processor) in enumerate(binds)
            if processor is not None
        )
        self._results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in compiled._result_columns
        )

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        if self._get is not None:
            bound = list(self._get(values))
            for position, processor in self._processors:
                bound[position] = processor(bound[position])
            return tuple(bound)
        return tuple(
            [
                literal if name is None else processor(values[name]) if processor else values[name]
                for name, literal, processor in self._binds
            ]
        )

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if processor is None or value is None else processor(value)
            for value, processor in zip(raw, self._results, strict=True)
        )


class NotPrecompilable(ValueError):
    pass


_PRECOMPILED: dict[tuple[int, tuple[str, ...]], Precompiled | None] = {}


def _precompiled(
    statement: Executable, dialect: Dialect, keys: tuple[str, ...]
) -> Precompiled | None:
    """The statement's ``Precompiled`` for these parameter names (None: it cannot be), cached.
    The cache holds module-level statements of one SQLite dialect configuration (make_engine's):
    a handful of entries, keyed by the statement's id (the entry holds the statement, so the id
    cannot be reused while it is cached)."""
    cache_key = (id(statement), keys)
    if cache_key in _PRECOMPILED:
        found = _PRECOMPILED[cache_key]
        if found is None or found.statement is statement:
            return found
    try:
        found = Precompiled(statement, dialect, keys)
    except NotPrecompilable:
        found = None
    if len(_PRECOMPILED) < 256:
        _PRECOMPILED[cache_key] = found
    return found


async def execute_precompiled(
    connection: AsyncConnection,
    statement: Executable,
    parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> list[tuple[Any, ...]]:
    """``connection.execute(statement, parameters)`` on SQLite, sent as ``Precompiled`` text:
    the same SQL and the same values, the rows (if any) read and type-processed. Several
    parameter sets are one executemany, as SQLAlchemy sends them. Inside ``write_transaction``
    it goes straight to the sqlite3 connection; otherwise through ``exec_driver_sql``, and a
    statement that cannot be precompiled takes the ordinary path."""
    sets = [parameters] if isinstance(parameters, Mapping) else list(parameters)
    keys = tuple(sets[0]) if sets else ()
    sqlite = connection.dialect.name == "sqlite"
    plan = _precompiled(statement, connection.dialect, keys) if sets and sqlite else None
    if plan is not None and any(tuple(values) != keys for values in sets[1:]):
        plan = None
    writer: RawWrite | None = connection.info.get(_RAW_WRITE)
    if writer is not None:
        if plan is None:  # SQLAlchemy would open a transaction of its own: never mixed
            raise NotPrecompilable(f"not precompilable inside write_transaction: {statement}")
        return await writer.execute(plan, sets)
    if plan is None:
        result = await connection.execute(statement, parameters)
        return [tuple(row) for row in result] if result.returns_rows else []
    if len(sets) > 1:
        await connection.exec_driver_sql(plan.sql, [plan.parameters(values) for values in sets])
        return []
    result = await connection.exec_driver_sql(plan.sql, plan.parameters(sets[0]))
    return [plan.row(row) for row in result.fetchall()] if result.returns_rows else []


# --------------------------------------------------------------------------- raw writes

_RAW_WRITE = "mineral_sqlite_raw_write"


class RawWrite:
    """A write transaction sent to the pooled sqlite3 connection itself (``write_transaction``).

    Why: SQLAlchemy's execution machinery (greenlet hop, execution context, result object, per
    statement) cost the SQLite one-transaction POST more CPU than SQLite's own work. Here a
    statement is its ``Precompiled`` text and values handed to sqlite3, nothing more. Kept from
    the SQLAlchemy path: the engine's ``before_cursor_execute`` listeners see every statement
    (as app.core.driver announces its own), a DBAPI error is raised as SQLAlchemy's
    ``DBAPIError`` (so a locked database still answers 503), and SQLITE_BUSY is waited out with
    an asyncio sleep, never on the loop (the same bound as ``InlineCursor``)."""

    __slots__ = ("_adapted", "_dialect", "_dispatch")

    def __init__(self, connection: AsyncConnection, adapted: InlineConnection) -> None:
        sync_engine = connection.sync_engine
        self._adapted = adapted
        self._dialect = sync_engine.dialect
        self._dispatch = sync_engine.dispatch.before_cursor_execute

    async def execute(
        self, plan: Precompiled, sets: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        if len(sets) > 1:
            await self._run(plan.sql, [plan.parameters(values) for values in sets], many=True)
            return []
        rows = await self._run(plan.sql, plan.parameters(sets[0]), many=False)
        return [plan.row(row) for row in rows]

    async def begin(self) -> None:
        await self._run("BEGIN IMMEDIATE", (), many=False)

    async def commit(self) -> None:
        connection = self._adapted._connection
        try:
            await _until_free(connection.commit)
        except sqlite3.Error as error:
            raise self._wrapped("COMMIT", error) from error
        self._adapted.committed()

    def rollback(self) -> None:
        self._adapted._connection.rollback()

    async def _run(self, sql: str, parameters: Any, *, many: bool) -> list[Any]:
        cursor = self._adapted._connection.cursor()
        if self._dispatch:
            self._dispatch(None, cursor, sql, parameters, None, many)
        try:
            if many:
                changes = cursor.connection.total_changes
                await _until_free(
                    sqlite_inline._executemany,
                    cursor,
                    sql,
                    parameters,
                    ran=lambda: cursor.connection.total_changes != changes,
                )
                return []
            await _until_free(sqlite_inline._execute, cursor, sql, parameters)
            return sqlite_inline._fetchall(cursor) if cursor.description else []
        except sqlite3.Error as error:
            raise self._wrapped(sql, error) from error
        finally:
            cursor.close()

    def _wrapped(self, sql: str, error: sqlite3.Error) -> BaseException:
        return DBAPIError.instance(
            sql, None, error, sqlite3.Error, hide_parameters=True, dialect=self._dialect
        )


async def _until_free(
    run: Callable[..., T], *args: Any, ran: Callable[[], bool] | None = None
) -> T:
    """``_until_not_busy`` for code outside a greenlet: the same retries, awaited directly."""
    try:
        return run(*args)
    except sqlite3.OperationalError as error:
        if not sqlite_inline._is_busy(error) or (ran is not None and ran()):
            raise
    deadline = time.monotonic() + sqlite_inline.BUSY_TIMEOUT_SECONDS
    delay = sqlite_inline.FIRST_RETRY_SECONDS
    while True:
        await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        try:
            return run(*args)
        except sqlite3.OperationalError as error:
            if (
                not sqlite_inline._is_busy(error)
                or time.monotonic() >= deadline
                or (ran is not None and ran())
            ):
                raise
        delay = min(delay * 2, sqlite_inline.LONGEST_RETRY_SECONDS)


@asynccontextmanager
async def write_transaction(connection: AsyncConnection) -> AsyncIterator[RawWrite]:
    """BEGIN IMMEDIATE on `connection`'s sqlite3 connection, the block's ``execute_precompiled``
    statements on it directly (``RawWrite``), COMMIT when the block ends and ROLLBACK when it
    raises. `connection` must not be in a transaction of SQLAlchemy's; it is left in none, so
    its reset-on-return rollback finds nothing to undo."""
    if connection.in_transaction():
        raise RuntimeError("write_transaction on a connection already in a transaction")
    adapted = (await connection.get_raw_connection()).dbapi_connection
    assert isinstance(adapted, InlineConnection), "write_transaction is for sqlite+inline"
    writer = RawWrite(connection, adapted)
    await writer.begin()
    connection.info[_RAW_WRITE] = writer
    try:
        yield writer
    except BaseException:
        writer.rollback()
        raise
    finally:
        del connection.info[_RAW_WRITE]
    await writer.commit()
