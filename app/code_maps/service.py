"""Managing an organization's code-map entries, and the code maps one HL7 message is read with."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.code_maps import repository
from app.core.errors import UnprocessableError
from app.domain.catalog import default_catalog
from app.domain.errors import DomainError
from app.interop.hl7.code_maps import CodeMaps
from app.models.code_map import ANY_FACILITY, CodeMapEntry


class UnknownAnalyteError(
    UnprocessableError, slug="unknown-analyte", title="The analyte is not one this service knows"
): ...


def normalize(value: str) -> str:
    """Facilities and codes are kept upper-case: they match case-insensitively."""
    return value.strip().upper()


def analyte_code(analyte: str) -> str:
    catalog = default_catalog()
    try:
        return catalog.get(analyte).code
    except DomainError as exc:
        known = ", ".join(sorted(catalog.codes()))
        message = f"{analyte!r} is not an analyte code; known analytes: {known}"
        raise UnknownAnalyteError(
            message, errors=[{"field": "body.analyte", "message": message}]
        ) from exc


async def put_entry(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    sending_facility: str,
    local_code: str,
    analyte: str,
    note: str | None,
) -> tuple[CodeMapEntry, bool]:
    """Creates or replaces the entry; True when it was created."""
    analyte = analyte_code(analyte)
    facility, code = normalize(sending_facility), normalize(local_code)
    for _ in range(2):
        entry = await repository.get(
            session, organization_id=organization_id, sending_facility=facility, local_code=code
        )
        if entry is not None:
            entry.analyte, entry.note = analyte, note
            await session.flush()
            return entry, False
        try:
            async with session.begin_nested():
                entry = CodeMapEntry(
                    organization_id=organization_id,
                    sending_facility=facility,
                    local_code=code,
                    analyte=analyte,
                    note=note,
                )
                await repository.add(session, entry)
            return entry, True
        except IntegrityError:
            continue  # a concurrent PUT created it first: replace that one
    raise RuntimeError("code-map entry neither found nor created")  # pragma: no cover


async def code_maps_for(
    session: AsyncSession, *, organization_id: uuid.UUID, sending_facility: str, base: CodeMaps
) -> CodeMaps:
    """``base`` with the organization's entries for this facility on top (one query):
    a facility's own entry beats a `*` entry, which beats the deployed defaults."""
    entries = await repository.for_facility(
        session, organization_id=organization_id, sending_facility=normalize(sending_facility)
    )
    if not entries:
        return base
    ranked = sorted(entries, key=lambda entry: entry.sending_facility != ANY_FACILITY)
    return base.with_codes(sending_facility, {entry.local_code: entry.analyte for entry in ranked})
