"""Engine, session factory and the declarative base shared by every ORM model."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Hashable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, Numeric, Select, String, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlalchemy.util.typing import TupleAny
from uuid_utils.compat import uuid7

from app.core.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def new_id() -> uuid.UUID:
    """A new row id: a version 7 UUID (RFC 9562), the creation millisecond then 74 random
    bits, increasing within a process. Ids made one after another land side by side in every
    index that leads with them (the primary keys, a result's (panel_id, position)), so an
    insert touches the index's newest page instead of a random one: random (version 4) ids
    cost each insert a page found anywhere in an index larger than the cache, and after every
    checkpoint a full-page image in the WAL (ADR 0011)."""
    return uuid7()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: COMMIT writes the log but fsyncs only at checkpoints, so a committed
    # panel survives a crash of the process, not necessarily a power loss (the durability, and
    # the floor's same choice, are spelled out in app.core.sqlite_inline).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # SQLite's busy handler would sleep the event loop (statements run on it): a statement
    # refused with SQLITE_BUSY is retried after an asyncio sleep instead (app.core.sqlite_inline).
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()
    # Checkpoints (copying the log into the database file, two fsyncs) would stall the event
    # loop for tens of milliseconds: a thread does them (app.core.sqlite_inline).
    dbapi_connection.checkpoint_in_background()


# Execution option carrying the audit chain's HMAC key (derived from the settings' secret) to
# app.audit.service on every connection of the engine; it never reaches the database.
AUDIT_KEY = "mineral_audit_key"


# And how many audit chains this engine's process may pick from (app.audit.chain_lock).
AUDIT_CHAINS = "mineral_audit_chains"


def _audit_key_option(settings: Settings) -> dict[str, Any]:
    from app.audit.chain import row_key

    return {
        AUDIT_KEY: row_key(settings.audit_key.get_secret_value()),
        AUDIT_CHAINS: settings.audit_chains,
    }


def make_engine(settings: Settings) -> AsyncEngine:
    # hide_parameters: a database error's message would otherwise carry the bound values
    # (identifiers, results) into the logs.
    url = settings.async_database_url
    if url.startswith("sqlite"):
        # One connection per process: SQLite has a single writer, and queueing for the pool is
        # an asyncio wait, whereas several connections contend inside SQLite's busy handler,
        # which sleeps in growing steps (seconds of tail latency under load). Requests take it
        # only after authentication (see app.core.deps), so none ever waits for a second one.
        # Statements run inline on the event loop, with no thread hop (issue 15, ADR 0008).
        from app.core.sqlite_inline import inline_url

        engine = create_async_engine(
            inline_url(url),
            execution_options=_audit_key_option(settings),
            hide_parameters=True,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_disable_pysqlite_begin)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    timeout = settings.database_timeout_seconds
    cache_size = settings.database_statement_cache_size
    engine = create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        # No request waits unboundedly for the database: a full pool, a connect that hangs
        # (a failover, a dropped route) or a statement that never returns all end in 503.
        pool_timeout=timeout,
        execution_options=_audit_key_option(settings),
        hide_parameters=True,
        # Every lock wait of this service is bounded (a retried Idempotency-Key waits this long
        # for the first attempt, then gets 409): set once per connection, not per request.
        connect_args={
            "timeout": timeout,
            # Prepared statements live in the server session: 0 turns both caches off (and
            # names each statement uniquely) for a pooler in transaction mode (PgBouncer),
            # where the next statement may reach another server connection.
            "statement_cache_size": cache_size,
            "prepared_statement_cache_size": cache_size,
            **({"prepared_statement_name_func": _unique_statement_name} if not cache_size else {}),
            # A statement may legitimately wait for a lock up to the idempotency wait.
            "command_timeout": timeout + settings.idempotency_wait_seconds,
            "server_settings": {
                "lock_timeout": f"{round(settings.idempotency_wait_seconds * 1000)}ms"
            },
        },
    )
    _ping_when_idle(engine, settings.database_ping_idle_seconds)
    return engine


def _unique_statement_name() -> str:
    return f"__mineral_{uuid.uuid4().hex}__"


_IDLE_SINCE = "mineral_idle_since"


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Check a pooled connection before use only if it sat idle `idle_seconds` or longer.

    pool_pre_ping pinged on every checkout: one extra round trip per request (per transaction)
    under load, where connections are back in use within milliseconds. A connection that
    answered moments ago is used as is; if the database restarted in that window, the request
    fails with 503 (never 500) and SQLAlchemy, seeing a disconnect, recycles the whole pool, so
    at most the requests already holding such connections fail. One that sat idle longer (a
    restart or failover while the service was quiet) is pinged and, when dead, replaced along
    with the rest of the pool before the request uses it. 0 pings on every checkout."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # a fresh connection, or one in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("pooled connection failed its ping") from exc

    event.listen(pool, "checkin", checked_in)
    event.listen(pool, "checkout", checked_out)


def _sqlite_disable_pysqlite_begin(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # SQLAlchemy's documented recipe: the driver must not emit BEGIN itself, we do it below.
    dbapi_connection.isolation_level = None


READ_ONLY = "mineral_read_only"


def _sqlite_begin(conn: Any) -> None:
    # A write transaction takes SQLite's write lock up front (BEGIN IMMEDIATE): a deferred
    # transaction that reads, then writes, fails with SQLITE_BUSY when another writer got in
    # between. Read-only sessions keep the cheap deferred BEGIN so reads never queue on writes.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session = one transaction: commit when the block ends, roll back on error."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def flush_in_order(session: AsyncSession, *groups: Iterable[Base]) -> None:
    """Add and flush each group of rows in turn, so a row is inserted before the rows of the
    next group that reference it."""
    for group in groups:
        session.add_all(group)
        await session.flush()


# Reads along (the same hot path): a read the request will need right after its first write
# (the panel's patient, after the Idempotency-Key claim) may be sent WITH that write, as one
# statement. The owner registers it (`read_along`); the carrier statement takes it
# (`take_read_along`), runs it and stores the row (`keep_read`); the reader asks for it by
# the same key (`read_kept`) and runs the query itself when nothing was kept (no carrier ran,
# or it did not carry the read). Forgotten when the transaction ends.
_READ_ALONG = "mineral_read_along"
_READ_KEPT = "mineral_reads_kept"


@dataclass(frozen=True, slots=True)
class ReadAlong:
    key: Hashable  # what was read, with its parameters: the reader asks by the same key
    statement: Select[*TupleAny]
    params: dict[str, Any]


def read_along(session: AsyncSession, read: ReadAlong) -> None:
    """PostgreSQL: send `read` with the session's next carrier statement, if one comes."""
    if session.get_bind().dialect.name == "postgresql":
        session.sync_session.info[_READ_ALONG] = read


def take_read_along(session: AsyncSession) -> ReadAlong | None:
    read: ReadAlong | None = session.sync_session.info.pop(_READ_ALONG, None)
    return read


def keep_read(session: AsyncSession, key: Hashable, row: tuple[Any, ...] | None) -> None:
    session.sync_session.info.setdefault(_READ_KEPT, {})[key] = row


def read_kept(session: AsyncSession, key: Hashable) -> tuple[bool, tuple[Any, ...] | None]:
    """(True, the row or None when the read found nothing) if `key` was read along; else
    (False, None). A kept read is used once."""
    kept: dict[Hashable, tuple[Any, ...] | None] = session.sync_session.info.get(_READ_KEPT, {})
    if key not in kept:
        return False, None
    return True, kept.pop(key)


@event.listens_for(Session, "after_transaction_end")
def _drop_reads_along(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_READ_ALONG, None)
        session.info.pop(_READ_KEPT, None)


class DecimalType(TypeDecorator[Decimal]):
    """Exact decimals on both backends: NUMERIC on PostgreSQL, text on SQLite (which would
    otherwise store binary floats and lose the digits a lab sent)."""

    impl = Numeric(24, 8)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(24, 8))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return normalize_decimal(Decimal(value))


def normalize_decimal(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (0.75000000 -> 0.75)."""
    normalized = value.normalize()
    if normalized.as_tuple().exponent > 0:  # type: ignore[operator]
        return normalized.quantize(Decimal(1))
    return normalized
