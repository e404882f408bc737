"""Prometheus metrics of this process (``prometheus-client``).

Labels carry only bounded, non-identifying values: HTTP method, the *route template*
(``/api/v1/patients/{patient_id}``, never the raw path), status code, source format, HL7 ACK
code, transport. Never a patient id, identifier, MRN, key or request id.

Each process has its own registry. With several uvicorn workers, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable directory: every worker then writes its
values there and ``/metrics`` (served by whichever worker answers) reports the sum over the
live workers (``python -m app serve`` empties the directory before starting them).

This module imports nothing from the application, so any layer may count into it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_REQUESTS = Counter(
    "mineral_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "mineral_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by method and route template.",
    ["method", "route"],
)
HTTP_IN_FLIGHT = Gauge(
    "mineral_http_requests_in_flight",
    "HTTP requests being handled now.",
    multiprocess_mode="livesum",
)
DB_POOL_IN_USE = Gauge(
    "mineral_db_pool_connections_in_use",
    "Database connections checked out of the pool now.",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "mineral_db_pool_capacity",
    "Connections the pool may open (pool size + overflow) in this process.",
    multiprocess_mode="livesum",
)
PANELS_INGESTED = Counter(
    "mineral_panels_ingested",
    "Panels stored (committed), by the format they arrived in.",
    ["source_format"],
)
RESULTS_INGESTED = Counter(
    "mineral_results_ingested",
    "Results stored (committed) with those panels, by source format.",
    ["source_format"],
)
HL7_ACKS = Counter(
    "mineral_hl7_acks",
    "HL7 v2 acknowledgements sent, by transport (http, mllp) and MSA-1 code (AA, AE, AR).",
    ["transport", "code"],
)
AUDIT_APPEND = Histogram(
    "mineral_audit_append_duration_seconds",
    "Time to append a transaction's audit rows (includes waiting for the chain's lock).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
MLLP_CONNECTIONS = Gauge(
    "mineral_mllp_connections",
    "Open MLLP connections.",
    multiprocess_mode="livesum",
)
MLLP_CONNECTIONS_REFUSED = Counter(
    "mineral_mllp_connections_refused",
    "MLLP connections closed on arrival, by reason (capacity, shutdown).",
    ["reason"],
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})


def render() -> bytes:
    """The text exposition of this process (or, in multiprocess mode, of every live worker)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def prepare_multiprocess_dir() -> None:
    """Empty ``PROMETHEUS_MULTIPROC_DIR`` (if set) before workers start: values left by an
    earlier run would otherwise be added to this one's."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def process_exiting() -> None:
    """A worker ends: in multiprocess mode its live gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def count_acks(transport: str, codes: Iterable[str]) -> None:
    for code in codes:
        HL7_ACKS.labels(transport, code if code in _ACK_CODES else "other").inc()


def time_audit_append() -> Any:
    """``with time_audit_append(): ...`` observes the block's duration."""
    return AUDIT_APPEND.time()


# --- the database pool ----------------------------------------------------------------------


def instrument_engine(engine: AsyncEngine) -> None:
    """Count the engine's checked-out connections (pool events: works in multiprocess mode)."""
    pool = engine.sync_engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    if callable(size):
        DB_POOL_CAPACITY.set(size() + max(overflow, 0))
    event.listen(pool, "checkout", _checked_out)
    event.listen(pool, "checkin", _checked_in)


def _checked_out(*_args: Any) -> None:
    DB_POOL_IN_USE.inc()


def _checked_in(*_args: Any) -> None:
    DB_POOL_IN_USE.dec()


# --- ingestion, counted on commit -----------------------------------------------------------

_PENDING = "metrics_pending_ingest"


def count_ingested(session: AsyncSession, *, source_format: str, results: int) -> None:
    """A panel was written in ``session``'s transaction: counted when (and if) it commits. A
    panel written inside a savepoint that is rolled back (a refused HL7 message) is not."""
    sync = session.sync_session
    transaction = sync.get_nested_transaction() or sync.get_transaction()
    sync.info.setdefault(_PENDING, []).append((transaction, source_format, results))


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        session.info[_PENDING] = [
            entry for entry in pending if not _within(entry[0], previous_transaction)
        ]


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    for _transaction, source_format, results in pending or ():
        PANELS_INGESTED.labels(source_format).inc()
        RESULTS_INGESTED.labels(source_format).inc(results)


# --- HTTP requests --------------------------------------------------------------------------


def route_label(scope: Scope) -> str:
    """The matched route's template; ``unmatched`` for paths no route knows (their raw text
    could hold anything, including identifiers)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it answers, the server sends a 500

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_counting)
        finally:
            HTTP_IN_FLIGHT.dec()
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "other"
            counted, timed = _http_children(method, route_label(scope), status)
            counted.inc()
            timed.observe(time.perf_counter() - started)


# The labelled children by (method, route template, status): `labels()` takes a lock and builds
# its key on every call. Bounded: methods, route templates and statuses are all few.
_HTTP_CHILDREN: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _http_children(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    key = (method, route, status)
    children = _HTTP_CHILDREN.get(key)
    if children is None:
        children = _HTTP_CHILDREN[key] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_LATENCY.labels(method, route),
        )
    return children
