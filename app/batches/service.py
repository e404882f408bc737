"""NDJSON panel batches: every line gets the outcome ``POST /api/v1/panels`` would give it.

Per chunk, the plain lines (a known patient, a new source + accession, accepted results) are
built in memory and inserted together (``app.batches.fast``, ``app.panels.bulk``: the same rows
and document as the single POST); every other line goes through the single POST's own path,
``corrections.ingest_or_correct``, one savepoint each.

Streamed both ways: lines are cut from the incoming byte chunks as they arrive (a line over the
cap is skipped without being buffered) and outcomes leave as soon as their chunk committed, so
memory stays flat for any batch size.

One transaction per chunk of ``CHUNK_LINES`` lines: the chunk's panels, its audit rows and the
batch's counts commit together, so after an interruption the batch record says exactly what
was stored, and re-sending the whole file stores nothing twice (source + accession dedupe:
each stored line answers ``unchanged``). A refused line rolls back only itself, never its
chunk.

Audit: one row per line (stored, unchanged or refused), not one per chunk: a row names one
patient, and the per-patient audit trail ("who saw or changed this patient's results") must
find a bulk-loaded panel exactly as it finds one posted alone. The rows are appended through
``app.audit.service.append`` in the chunk's transaction, so the chain stays one valid chain.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.audit.service import AuditEntry
from app.batches import fast, repository
from app.batches.models import PanelBatch
from app.batches.schemas import BatchOut, LineOutcome
from app.core.db import transaction
from app.core.errors import PROBLEM_BASE, AppError, NotFoundError, validation_errors
from app.domain.catalog import default_catalog
from app.domain.errors import DomainError
from app.panels import bulk, corrections
from app.panels.schemas import PanelCreate

CHUNK_LINES = 500


def _problem(status: int, slug: str, title: str, detail: str, **extensions: Any) -> dict[str, Any]:
    return {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail} | (
        extensions
    )


def _refused(line: int, problem: dict[str, Any]) -> LineOutcome:
    return LineOutcome(line=line, outcome="refused", status=problem["status"], problem=problem)


async def split_lines(
    chunks: AsyncIterator[bytes], max_line_bytes: int
) -> AsyncIterator[tuple[int, bytes | None]]:
    """(line number, bytes) per non-empty line; ``None`` for a line over the cap, whose bytes
    are dropped as they arrive (never held whole)."""
    buffer = b""
    number = 0
    skipping = False
    async for chunk in chunks:
        buffer += chunk
        start = 0  # cut lines by offset: re-slicing the rest per line would be quadratic
        while (end := buffer.find(b"\n", start)) >= 0:
            line, start = buffer[start:end], end + 1
            number += 1
            if skipping or len(line) > max_line_bytes:
                skipping = False
                yield number, None
            elif line.strip():
                yield number, line
        buffer = buffer[start:]
        if len(buffer) > max_line_bytes:
            skipping, buffer = True, b""
    if skipping or buffer.strip():
        yield number + 1, None if skipping else buffer


def _parse(line: int, raw: bytes | None, max_line_bytes: int) -> PanelCreate | LineOutcome:
    if raw is None:
        return _refused(
            line,
            _problem(413, "payload-too-large", "Line too long", f"Over {max_line_bytes} bytes."),
        )
    try:
        return PanelCreate.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        detail = "The line is not one JSON object."
        return _refused(line, _problem(400, "bad-request", "Bad request", detail))
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
        detail = "The panel is not valid."
        return _refused(
            line,
            _problem(422, "validation-error", "The request is not valid", detail, errors=errors),
        )


async def _ingest_line(
    session: AsyncSession, organization_id: uuid.UUID, line: int, data: PanelCreate
) -> tuple[LineOutcome, uuid.UUID | None]:
    try:
        async with session.begin_nested():
            outcome = await corrections.ingest_or_correct(
                session,
                organization_id=organization_id,
                data=data,
                source_format="json",
                via="a panel batch",
            )
    except AppError as exc:
        return _refused(line, _problem(exc.status, exc.type_slug, exc.title, exc.detail)), None
    except DomainError as exc:
        slug = "unprocessable"
        title = "The content cannot be processed"
        return _refused(line, _problem(422, slug, title, str(exc))), None
    stored = outcome.created or outcome.corrected
    answer = LineOutcome(
        line=line,
        outcome="stored" if stored else "unchanged",
        status=201 if outcome.created else 200,
        panel_id=outcome.panel.id,
        has_critical=outcome.panel.has_critical,
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
    )


def _audit_row(base: AuditEntry, outcome: LineOutcome, patient_id: uuid.UUID | None) -> AuditEntry:
    action = "create" if outcome.status == 201 else "update" if outcome.corrected else "read"
    return dataclasses.replace(
        base,
        action="create" if outcome.outcome == "refused" else action,
        resource_type="panel",
        resource_id=str(outcome.panel_id) if outcome.panel_id else f"line {outcome.line}",
        patient_id=patient_id,
        outcome="error" if outcome.outcome == "refused" else "success",
        status_code=outcome.status,
    )


async def _run_chunk(
    session: AsyncSession,
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    lines: list[tuple[int, bytes | None]],
    max_line_bytes: int,
) -> list[LineOutcome]:
    assert base.organization_id is not None
    parsed = [(number, _parse(number, raw, max_line_bytes)) for number, raw in lines]
    valid = [(number, data) for number, data in parsed if isinstance(data, PanelCreate)]
    planned = await fast.plan(
        session,
        organization_id=base.organization_id,
        lines=valid,
        source_format="json",
        catalog=default_catalog(),
    )
    inserted = await bulk.insert_new(session, list(planned.values()), source_format="json")
    outcomes: list[LineOutcome] = []
    rows: list[AuditEntry] = []
    for number, item in parsed:
        patient_id = None
        new = planned.get(number)
        if new is not None and new.id in inserted:
            item, patient_id = _stored_fast(number, new), new.values["patient_id"]
        elif isinstance(item, PanelCreate):
            item, patient_id = await _ingest_line(session, base.organization_id, number, item)
        outcomes.append(item)
        rows.append(_audit_row(base, item, patient_id))
    counts = {
        "lines": len(outcomes),
        **{kind: sum(o.outcome == kind for o in outcomes) for kind in ("stored", "unchanged")},
        "refused": sum(o.outcome == "refused" for o in outcomes),
    }
    await repository.add_counts(session, batch_id, counts, status=None)
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


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch_id: uuid.UUID,
    base: AuditEntry,
    lines: AsyncIterator[tuple[int, bytes | None]],
    max_line_bytes: int,
    chunk_lines: int = CHUNK_LINES,
) -> AsyncIterator[LineOutcome]:
    """Each line's outcome, a chunk at a time, once that chunk has committed."""
    chunk: list[tuple[int, bytes | None]] = []
    status = "failed"
    try:
        async for item in lines:
            chunk.append(item)
            if len(chunk) >= chunk_lines:
                for outcome in await _commit_chunk(
                    sessionmaker, batch_id, base, chunk, max_line_bytes
                ):
                    yield outcome
                chunk = []
        if chunk:
            for outcome in await _commit_chunk(sessionmaker, batch_id, base, chunk, max_line_bytes):
                yield outcome
        status = "completed"
    finally:
        async with transaction(sessionmaker) as session:
            await repository.add_counts(session, batch_id, {}, status=status)


async def _commit_chunk(
    sessionmaker: async_sessionmaker[AsyncSession],
    batch_id: uuid.UUID,
    base: AuditEntry,
    chunk: list[tuple[int, bytes | None]],
    max_line_bytes: int,
) -> list[LineOutcome]:
    async with transaction(sessionmaker) as session:
        return await _run_chunk(
            session, batch_id=batch_id, base=base, lines=chunk, max_line_bytes=max_line_bytes
        )


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, batch_id: uuid.UUID
) -> BatchOut:
    batch = await repository.get(session, organization_id=organization_id, batch_id=batch_id)
    if batch is None:
        raise NotFoundError("No such panel batch.")
    return BatchOut.model_validate(batch)
