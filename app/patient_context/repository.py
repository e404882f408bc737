"""All SQL for patient context versions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.models.mixins import patient_rows
from app.models.patient_context import PatientContext


async def current(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> PatientContext | None:
    """The patient's newest context version, or None when none was ever recorded."""
    return await session.scalar(
        patient_rows(PatientContext, organization_id, patient_id)
        .order_by(PatientContext.version.desc())
        .limit(1)
    )


async def get_version(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID, version: int
) -> PatientContext | None:
    return await session.scalar(
        patient_rows(PatientContext, organization_id, patient_id).where(
            PatientContext.version == version
        )
    )


async def versions(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    limit: int,
    before_version: int | None,
) -> Sequence[PatientContext]:
    """Newest first; `before_version` continues after the last version of the previous page."""
    query = patient_rows(PatientContext, organization_id, patient_id)
    if before_version is not None:
        query = query.where(PatientContext.version < before_version)
    query = query.order_by(PatientContext.version.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def add(session: AsyncSession, context: PatientContext) -> None:
    session.add(context)
    await session.flush()
