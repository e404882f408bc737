"""What the HTTP route and the MLLP listener both do with a body: count its segments before
parsing, receive it (large bodies parsed off the event loop) and keep what was refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.audit.service import AuditEntry
from app.auth.principal import Principal
from app.interop.chunks import Chunks
from app.interop.hl7 import service
from app.interop.hl7.service import MessageOutcome
from app.refused_inputs import service as refused_inputs

_T = TypeVar("_T")


async def in_thread(work: Callable[[], _T], /) -> _T:
    return await asyncio.to_thread(work)


def segment_count(text: str) -> int:
    """Segments of a body, counted before anything is parsed: a 10,000-OBX body costs one
    scan, not a parse (CR, LF and CRLF each end one)."""
    return text.count("\r") + text.count("\n") - text.count("\r\n") + 1


@dataclass(frozen=True, slots=True)
class Received:
    """Every message's outcome, in order (the answer), and those of the last chunk, whose
    audit rows the caller writes before its own commit (the earlier chunks of a large batch
    committed with theirs)."""

    outcomes: list[MessageOutcome]
    unaudited: Sequence[MessageOutcome]


async def receive_and_keep(
    session: AsyncSession,
    principal: Principal,
    *,
    text: str,
    channel: str,
    offload_bytes: int,
    audit_rows: Callable[[Sequence[MessageOutcome]], list[AuditEntry]],
    retention_days: int | None = None,
) -> Received:
    """Receive the body's messages into the caller's transaction; every AE / AR message is
    kept for re-processing (GET /api/v1/refused-inputs). A large batch commits in chunks
    (``app.interop.chunks``): each with its refused messages and its ``audit_rows``."""

    async def keep_refused(outcomes: Sequence[MessageOutcome]) -> None:
        await refused_inputs.record_hl7(
            session,
            outcomes,
            organization_id=principal.organization_id,
            principal_id=principal.id,
            channel=channel,
            body=text,
            retention_days=retention_days,
        )

    async def keep(outcomes: Sequence[MessageOutcome]) -> None:
        await keep_refused(outcomes)
        await audit.append(session, audit_rows(outcomes))

    chunks = Chunks(session, keep)
    outcomes = await service.receive(
        session,
        organization_id=principal.organization_id,
        text=text,
        offload=in_thread if len(text) >= offload_bytes else None,
        chunks=chunks,
    )
    await keep_refused(chunks.pending)
    return Received(outcomes, chunks.pending)
