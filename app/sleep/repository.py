"""All SQL for sleep assessments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.list_sql import Bounds, newest_first, within
from app.models.mixins import PatientKey, patient_rows
from app.models.sleep_assessment import SleepAssessment


async def add(session: AsyncSession, assessment: SleepAssessment) -> None:
    session.add(assessment)
    await session.flush()


async def get(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    assessment_id: uuid.UUID,
) -> SleepAssessment | None:
    return await session.scalar(
        patient_rows(SleepAssessment, organization_id, patient_id).where(
            SleepAssessment.id == assessment_id
        )
    )


async def latest(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> SleepAssessment | None:
    """The most recent assessment (by the day it was answered), or None."""
    return await session.scalar(
        patient_rows(SleepAssessment, organization_id, patient_id)
        .order_by(
            SleepAssessment.timeline_at.desc(),
            SleepAssessment.recorded_at.desc(),
            SleepAssessment.id.desc(),
        )
        .limit(1)
    )


async def search(
    session: AsyncSession,
    key: PatientKey,
    *,
    bounds: Bounds,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[SleepAssessment]:
    """Newest assessed_on first; `bounds` bound timeline_at (assessed_on at 00:00 UTC), both
    inclusive."""
    query = within(
        select(SleepAssessment).where(key.owns(SleepAssessment)),
        SleepAssessment.timeline_at,
        bounds,
    )
    query = newest_first(
        query, SleepAssessment.timeline_at, SleepAssessment.id, after=after, limit=limit
    )
    return (await session.scalars(query)).all()
