"""Panel batches: every line (or entry) gets the outcome ``POST /api/v1/panels`` would give it.

Parsing is separate from running: ``run_parsed`` takes already parsed items
(``app.batches.ndjson.ParsedLine``: a ``PanelCreate`` to ingest, or a ``LineOutcome`` the
parser already refused) from any format; ``run`` feeds it NDJSON.

Per chunk, the plain lines (a known patient, a new source + accession, accepted results) are
built in memory and inserted together (``app.batches.fast``, ``app.panels.bulk``: the same rows
and document as the single POST); every other line goes through the single POST's own path,
``corrections.ingest_or_correct``, one savepoint each.

Streamed both ways: lines are parsed as they arrive (the parsed panels are held, and a
chunk's own lines' bytes, to keep its refused lines in the refused-input store: bounded by the
chunk's byte budget) and outcomes leave as soon as their chunk committed. A chunk is cut at
``CHUNK_LINES`` lines or ``CHUNK_BYTES`` bytes of input, whichever comes first, so memory is
bounded by the byte budget, whatever the lines' sizes.

Pipelined on PostgreSQL (``run_parsed_chunks``): while a chunk writes, the next one is read
and built on a second connection, and the input after it is parsed; chunks still write and
commit one at a time, in input order (a chunk's writes wait for the one before it to commit),
and at most ``PIPELINE_DEPTH`` chunks are in flight, so memory stays bounded. SQLite (one
writer, one connection) runs one chunk at a time.

One transaction per chunk: the chunk's panels, its audit rows and the batch's counts commit
together, so after an interruption the batch record says exactly what was stored, and
re-sending the whole file stores nothing twice (source + accession dedupe: each stored line
answers ``unchanged``). A refused line rolls back only itself, never its chunk.

Concurrent batches: a chunk takes its row locks in one order, whatever the order of its lines
(new panels inserted sorted by source + accession, then the per-line lines in that order, the
audit chain's lock last), so two batches sending the same panels in opposite orders wait for
each other instead of deadlocking. A chunk the database still aborts as a deadlock or a
serialization failure is one rolled-back transaction: it is run again (bounded, with jitter),
and if it keeps failing its lines are refused with a 503 (re-send them), never a 500.

Audit: one row per line (stored, unchanged or refused), not one per chunk: a row names one
patient, and the per-patient audit trail ("who saw or changed this patient's results") must
find a bulk-loaded panel exactly as it finds one posted alone. Each row carries the time its
line was decided. The rows are appended through ``app.audit.service.append`` in the chunk's
transaction, so the chain stays one valid chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.audit.service import AuditEntry
from app.batches import fast, repository
from app.batches.models import PanelBatch
from app.batches.ndjson import ParsedLine, json_limits_of, parse_lines, refused, split_lines
from app.batches.schemas import BatchOut, LineOutcome
from app.core.config import Settings
from app.core.db import transaction, utcnow
from app.core.errors import (
    AppError,
    NotFoundError,
    ServiceUnavailableError,
    UnprocessableError,
    app_error_problem,
)
from app.core.json_guard import JsonLimits
from app.domain.catalog import default_catalog
from app.domain.errors import DomainError
from app.panels import bulk, corrections
from app.panels.schemas import PanelCreate
from app.refused_inputs import service as refused_inputs

__all__ = [
    "ParsedLine",
    "get",
    "run",
    "run_ndjson",
    "run_ndjson_chunks",
    "run_parsed",
    "run_parsed_chunks",
    "split_lines",
    "start",
]

log = logging.getLogger("app.batches")

CHUNK_LINES = 500
CHUNK_BYTES = 8 * 1024 * 1024
# Chunks in flight on PostgreSQL: the next one reads and builds while the one before writes.
PIPELINE_DEPTH = 2
# A chunk aborted by the database as a deadlock or serialization failure is run again this
# many times, after a random pause of up to RETRY_PAUSE_SECONDS x 2^attempt.
CHUNK_RETRIES = 4
RETRY_PAUSE_SECONDS = 0.05
# deadlock_detected, serialization_failure: the transaction was rolled back, nothing written.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


async def _ingest_line(
    session: AsyncSession,
    organization_id: uuid.UUID,
    line: int,
    data: PanelCreate,
    *,
    source_format: str,
    via: str,
) -> tuple[LineOutcome, uuid.UUID | None]:
    try:
        async with session.begin_nested():
            outcome = await corrections.ingest_or_correct(
                session,
                organization_id=organization_id,
                data=data,
                source_format=source_format,
                via=via,
            )
    except AppError as exc:
        return refused(line, app_error_problem(exc)), None
    except DomainError as exc:
        return refused(line, app_error_problem(UnprocessableError(str(exc)))), None
    stored = outcome.created or outcome.corrected
    answer = LineOutcome(
        line=line,
        outcome="stored" if stored else "unchanged",
        status=201 if outcome.created else 200,
        panel_id=outcome.panel.id,
        has_critical=outcome.panel.has_critical,
        has_possible_critical=outcome.panel.has_possible_critical,
        corrected=outcome.corrected,
    )
    return answer, outcome.panel.patient_id


def _stored_fast(line: int, new: bulk.NewPanel) -> LineOutcome:
    """What ``_ingest_line`` answers for a panel it created."""
    return LineOutcome(
        line=line,
        outcome="stored",
        status=201,
        panel_id=new.id,
        has_critical=new.values["has_critical"],
        has_possible_critical=new.values["has_possible_critical"],
    )


def _audit_fields(base: AuditEntry) -> dict[str, Any]:
    """``base``'s fields, read once per chunk for its lines' rows (``_audit_row``)."""
    return {name: getattr(base, name) for name in AuditEntry.__dataclass_fields__}


def _audit_row(
    base: dict[str, Any],
    outcome: LineOutcome,
    patient_id: uuid.UUID | None,
    occurred_at: datetime,
) -> AuditEntry:
    """A line's row: ``base`` (``_audit_fields`` of the request's entry) with the line's
    outcome; built whole (``AuditEntry(**...)``, checked as any entry) rather than with
    ``dataclasses.replace``, which reads the fields again for every line."""
    action = "create" if outcome.status == 201 else "update" if outcome.corrected else "read"
    refused = outcome.outcome == "refused"
    return AuditEntry(
        **{
            **base,
            "occurred_at": occurred_at,
            "action": "create" if refused else action,
            "resource_type": "panel",
            "resource_id": str(outcome.panel_id) if outcome.panel_id else f"line {outcome.line}",
            "patient_id": patient_id,
            "outcome": "error" if refused else "success",
            "status_code": outcome.status,
        }
    )


def _natural_key(data: PanelCreate) -> tuple[str, str]:
    return data.source, data.accession


def _counts(outcomes: Sequence[LineOutcome]) -> dict[str, int]:
    """The batch record's increments for a chunk's outcomes. ``critical`` and
    ``possibly_critical`` count the stored or unchanged lines whose panel has such values, so
    a clinician-facing view can surface them from the batch record alone."""
    return {
        "lines": len(outcomes),
        **{
            kind: sum(o.outcome == kind for o in outcomes)
            for kind in ("stored", "unchanged", "refused")
        },
        "critical": sum(bool(o.has_critical) for o in outcomes),
        "possibly_critical": sum(bool(o.has_possible_critical) for o in outcomes),
    }


async def _keep_refused(
    session: AsyncSession,
    batch_id: uuid.UUID,
    base: AuditEntry,
    chunk: Sequence[ParsedLine],
    outcomes: Sequence[LineOutcome],
) -> None:
    """Each refused line kept in the refused-input store as a refused single
    ``POST /api/v1/panels`` is (``app.refused_inputs.capture``): its bytes, the problem, the
    status, with the batch and line in ``details``; in the chunk's transaction, so a retried
    chunk keeps nothing twice. A line whose bytes were not held (over the cap) is not kept."""
    assert base.organization_id is not None
    for parsed, outcome in zip(chunk, outcomes, strict=True):
        if outcome.outcome != "refused" or parsed.raw is None or outcome.problem is None:
            continue
        await refused_inputs.record(
            session,
            refused_inputs.Refusal(
                organization_id=base.organization_id,
                channel="json",
                content_type="application/json",
                payload=parsed.raw,
                reason=refused_inputs.reason_from_document(outcome.problem)
                or f"answered {outcome.status}",
                response_status=outcome.status,
                principal_id=base.principal_id,
                details={"batch_id": str(batch_id), "line": outcome.line},
            ),
        )


class _EarlierChunkFailedError(Exception):
    """The chunk before this one did not commit: this one must not write (its outcomes would
    follow lines that have none); the batch stops with the earlier chunk's error."""


async def _committed(earlier: asyncio.Task[list[LineOutcome]] | None) -> None:
    """Wait until the chunk before this one committed (``asyncio.wait``: never cancels it)."""
    if earlier is None:
        return
    await asyncio.wait({earlier})
    if earlier.cancelled() or earlier.exception() is not None:
        raise _EarlierChunkFailedError


async def _run_chunk(
    session: AsyncSession,
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    chunk: Sequence[ParsedLine],
    source_format: str,
    via: str,
    after: asyncio.Task[list[LineOutcome]] | None = None,
) -> list[LineOutcome]:
    """The chunk in ``session``'s transaction. Its reads and the in-memory build of its new
    panels run at once (while the chunk before, ``after``, is still writing); its writes wait
    until that chunk committed, so chunks write (and take the audit chain's turn) one at a
    time, in order. The reads may miss what the earlier chunk stores: harmless, the writes
    re-check (a planned panel whose natural key was taken meanwhile is not inserted, and goes
    through the per-line path like any stored key)."""
    assert base.organization_id is not None
    started = utcnow()
    valid = [(parsed.line, parsed.item) for parsed in chunk if isinstance(parsed.item, PanelCreate)]
    planned = await fast.plan(
        session,
        organization_id=base.organization_id,
        lines=valid,
        source_format=source_format,
        catalog=default_catalog(),
    )
    await _committed(after)
    # Sorted by natural key inside (bulk.insert_new), as the per-line lines below.
    inserted = await bulk.insert_new(session, list(planned.values()), source_format=source_format)
    decided: dict[int, tuple[LineOutcome, uuid.UUID | None, datetime]] = {}
    fast_at = utcnow()
    for number, new in planned.items():
        if new.id in inserted:
            decided[number] = (_stored_fast(number, new), new.values["patient_id"], fast_at)
    # The built rows and documents are written: let them go before the per-line lines and
    # the audit rows (a pipelined chunk is being built meanwhile: this is what RSS peaks on).
    planned.clear()
    # Stable: lines with the same key keep their order (the second is decided against the
    # first, as two single POSTs would be).
    per_line = sorted(
        ((number, data) for number, data in valid if number not in decided),
        key=lambda pair: _natural_key(pair[1]),
    )
    for number, data in per_line:
        outcome, patient_id = await _ingest_line(
            session, base.organization_id, number, data, source_format=source_format, via=via
        )
        decided[number] = (outcome, patient_id, utcnow())
    outcomes: list[LineOutcome] = []
    rows: list[AuditEntry] = []
    fields = _audit_fields(base)
    for parsed in chunk:
        if isinstance(parsed.item, LineOutcome):
            outcome, patient_id, occurred_at = parsed.item, None, started
        else:
            outcome, patient_id, occurred_at = decided[parsed.line]
        outcomes.append(outcome)
        rows.append(_audit_row(fields, outcome, patient_id, occurred_at))
    await _keep_refused(session, batch_id, base, chunk, outcomes)
    await repository.add_counts(session, batch_id, _counts(outcomes), status=None)
    await audit.append(session, rows)  # last: it takes the chain's lock until the commit
    return outcomes


async def start(sessionmaker: async_sessionmaker[AsyncSession], base: AuditEntry) -> PanelBatch:
    """The batch record and its own audit row, committed before any line is read."""
    assert base.organization_id is not None
    async with transaction(sessionmaker) as session:
        batch = await repository.create(
            session, organization_id=base.organization_id, principal_id=base.principal_id
        )
        await audit.append(
            session,
            [dataclasses.replace(base, resource_type="panel-batch", resource_id=str(batch.id))],
        )
    return batch


def _pipeline_depth(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Chunks started and not yet answered: two on PostgreSQL (one writing, the next reading
    and building meanwhile on a second connection); one on SQLite (one writer, one pooled
    connection)."""
    bind = sessionmaker.kw.get("bind")
    dialect = getattr(bind, "dialect", None)
    return PIPELINE_DEPTH if getattr(dialect, "name", None) == "postgresql" else 1


_END = object()


async def run_parsed_chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    items: AsyncIterator[ParsedLine],
    source_format: str,
    via: str,
    chunk_lines: int | None = None,
    chunk_bytes: int | None = None,
) -> AsyncGenerator[list[LineOutcome], None]:
    """``run_parsed``, a committed chunk's outcomes at a time (a list, in input order).

    Pipelined: a producer task reads and parses the items and starts each chunk's task as
    soon as the chunk is cut; at most ``_pipeline_depth`` chunk tasks are started and not yet
    answered, plus the chunk being read, so memory stays bounded by a few chunks' byte
    budgets. Each chunk commits in its own transaction, after the one before it
    (``_run_chunk``), and its outcomes are answered as soon as it committed, even while the
    next input has not arrived."""
    max_lines = chunk_lines or CHUNK_LINES
    max_bytes = chunk_bytes or CHUNK_BYTES
    depth = _pipeline_depth(sessionmaker)
    slots = asyncio.Semaphore(depth)
    # Chunk tasks in input order, then _END, or the exception that stopped the input.
    started: asyncio.Queue[asyncio.Task[list[LineOutcome]] | BaseException | object] = (
        asyncio.Queue()
    )
    tasks: list[asyncio.Task[list[LineOutcome]]] = []

    async def cut(chunk: list[ParsedLine]) -> None:
        await slots.acquire()
        earlier = tasks[-1] if tasks else None
        task = asyncio.create_task(
            _commit_chunk(sessionmaker, batch_id, base, chunk, source_format, via, earlier)
        )
        tasks.append(task)
        started.put_nowait(task)

    async def produce() -> None:
        chunk: list[ParsedLine] = []
        held = 0
        try:
            async for parsed in items:
                chunk.append(parsed)
                held += parsed.size
                if len(chunk) >= max_lines or held >= max_bytes:
                    await cut(chunk)
                    chunk, held = [], 0
            if chunk:
                await cut(chunk)
        except BaseException as exc:  # answered after the chunks cut before it
            started.put_nowait(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            started.put_nowait(_END)

    producer = asyncio.create_task(produce())
    status = "failed"
    try:
        while (entry := await started.get()) is not _END:
            if isinstance(entry, BaseException):
                raise entry
            assert isinstance(entry, asyncio.Task)
            outcomes: list[LineOutcome] = await entry
            tasks.remove(entry)
            slots.release()
            yield outcomes
        status = "completed"
    finally:
        # Shielded: a client that hangs up cancels this task, and the cancellation would
        # otherwise cancel this last write too, leaving the batch `running` forever. The
        # chunks still running are cancelled and waited for first (their transactions roll
        # back), so nothing of the batch is written after its final status.
        with anyio.CancelScope(shield=True):
            for task in (producer, *tasks):
                task.cancel()
            await asyncio.gather(producer, *tasks, return_exceptions=True)
            async with transaction(sessionmaker) as session:
                await repository.add_counts(session, batch_id, {}, status=status)


async def run_parsed(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    items: AsyncIterator[ParsedLine],
    source_format: str,
    via: str,
    chunk_lines: int | None = None,
    chunk_bytes: int | None = None,
) -> AsyncGenerator[LineOutcome, None]:
    """Run parsed items through the batch ``batch_id`` (from ``start``): each item's outcome,
    in input order, a chunk at a time once that chunk has committed.

    ``items``: ``ParsedLine(line, item, size)`` in input order, ``line`` unique within the
    batch (the number the outcome and the audit row name); ``item`` is a ``PanelCreate``
    to ingest as ``POST /api/v1/panels`` would, or a ``LineOutcome`` the parser already refused
    (passed through, audited and counted). ``base``: the audit row of the request or command
    (its principal, organization, request id); each line's row is derived from it.
    ``source_format`` / ``via``: stored with each panel and named in its history, as the
    single ingestion of that format does (``"json"``, ``"a panel batch"``). A chunk is cut at
    ``chunk_lines`` items (default ``CHUNK_LINES``) or once the items' ``size`` reaches
    ``chunk_bytes`` (default ``CHUNK_BYTES``). The batch is marked completed at the end, or
    failed if the iteration stops early (an error, a client gone)."""
    chunks = run_parsed_chunks(
        sessionmaker,
        batch_id=batch_id,
        base=base,
        items=items,
        source_format=source_format,
        via=via,
        chunk_lines=chunk_lines,
        chunk_bytes=chunk_bytes,
    )
    async with contextlib.aclosing(chunks):
        async for outcomes in chunks:
            for outcome in outcomes:
                yield outcome


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    lines: AsyncIterator[tuple[int, bytes | None]],
    max_line_bytes: int,
    json_limits: JsonLimits | None = None,
    chunk_lines: int | None = None,
    chunk_bytes: int | None = None,
) -> AsyncIterator[LineOutcome]:
    """``run_parsed`` over NDJSON lines (``split_lines`` output), parsed as they arrive."""
    items = parse_lines(
        lines, max_line_bytes=max_line_bytes, json_limits=json_limits or JsonLimits()
    )
    async for outcome in run_parsed(
        sessionmaker,
        batch_id=batch_id,
        base=base,
        items=items,
        source_format="json",
        via="a panel batch",
        chunk_lines=chunk_lines,
        chunk_bytes=chunk_bytes,
    ):
        yield outcome


def run_ndjson(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    chunks: AsyncIterator[bytes],
    settings: Settings,
) -> AsyncIterator[LineOutcome]:
    """``run`` over raw NDJSON bytes as they arrive, with the settings' line cap and JSON
    limits: what ``python -m app import`` runs."""
    return run(
        sessionmaker,
        batch_id=batch_id,
        base=base,
        lines=split_lines(chunks, settings.max_body_bytes),
        max_line_bytes=settings.max_body_bytes,
        json_limits=json_limits_of(settings),
    )


def run_ndjson_chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    chunks: AsyncIterator[bytes],
    settings: Settings,
) -> AsyncGenerator[list[LineOutcome], None]:
    """``run_ndjson``, a committed chunk's outcomes at a time: what the HTTP route runs (one
    write of the response per chunk, not per line)."""
    items = parse_lines(
        split_lines(chunks, settings.max_body_bytes),
        max_line_bytes=settings.max_body_bytes,
        json_limits=json_limits_of(settings),
    )
    return run_parsed_chunks(
        sessionmaker,
        batch_id=batch_id,
        base=base,
        items=items,
        source_format="json",
        via="a panel batch",
    )


async def _commit_chunk(
    sessionmaker: async_sessionmaker[AsyncSession],
    batch_id: uuid.UUID,
    base: AuditEntry,
    chunk: Sequence[ParsedLine],
    source_format: str,
    via: str,
    after: asyncio.Task[list[LineOutcome]] | None = None,
) -> list[LineOutcome]:
    """The chunk in one transaction (written once ``after``, the chunk before, committed), run
    again if the database aborted it as a deadlock or a serialization failure (nothing of it
    was written); refused with a 503 if that persists."""
    for attempt in range(CHUNK_RETRIES + 1):
        try:
            async with transaction(sessionmaker) as session:
                return await _run_chunk(
                    session,
                    batch_id=batch_id,
                    base=base,
                    chunk=chunk,
                    source_format=source_format,
                    via=via,
                    after=after,
                )
        except DBAPIError as exc:
            if not _retryable(exc):
                raise
            log.warning(
                "panel batch %s: chunk aborted by a concurrent transaction (attempt %d)",
                batch_id,
                attempt + 1,
            )
            if attempt < CHUNK_RETRIES:
                await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * 2**attempt))
    await _committed(after)
    return await _refuse_chunk(sessionmaker, batch_id, base, chunk)


async def _refuse_chunk(
    sessionmaker: async_sessionmaker[AsyncSession],
    batch_id: uuid.UUID,
    base: AuditEntry,
    chunk: Sequence[ParsedLine],
) -> list[LineOutcome]:
    busy = app_error_problem(
        ServiceUnavailableError(
            "The database kept aborting this part of the batch because of concurrent writes "
            "(deadlock or serialization failure); nothing of it was stored. Re-send these "
            "lines: what another sender stored meanwhile answers unchanged."
        )
    )
    at = utcnow()
    outcomes = [
        parsed.item if isinstance(parsed.item, LineOutcome) else refused(parsed.line, busy)
        for parsed in chunk
    ]
    async with transaction(sessionmaker) as session:
        await _keep_refused(session, batch_id, base, chunk, outcomes)
        await repository.add_counts(session, batch_id, _counts(outcomes), status=None)
        fields = _audit_fields(base)
        await audit.append(session, [_audit_row(fields, o, None, at) for o in outcomes])
    return outcomes


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, batch_id: uuid.UUID
) -> BatchOut:
    batch = await repository.get(session, organization_id=organization_id, batch_id=batch_id)
    if batch is None:
        raise NotFoundError("No such panel batch.")
    return BatchOut.model_validate(batch)
