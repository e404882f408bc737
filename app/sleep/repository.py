"""All SQL for sleep assessments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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
        select(SleepAssessment).where(
            SleepAssessment.organization_id == organization_id,
            SleepAssessment.patient_id == patient_id,
            SleepAssessment.id == assessment_id,
        )
    )


async def latest(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> SleepAssessment | None:
    """The most recent assessment (by the day it was answered), or None."""
    return await session.scalar(
        select(SleepAssessment)
        .where(
            SleepAssessment.organization_id == organization_id,
            SleepAssessment.patient_id == patient_id,
        )
        .order_by(
            SleepAssessment.timeline_at.desc(),
            SleepAssessment.recorded_at.desc(),
            SleepAssessment.id.desc(),
        )
        .limit(1)
    )


async def search(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[SleepAssessment]:
    """Newest assessed_on first; `start`/`end` bound timeline_at (assessed_on at 00:00 UTC),
    both inclusive."""
    query = select(SleepAssessment).where(
        SleepAssessment.organization_id == organization_id,
        SleepAssessment.patient_id == patient_id,
    )
    if start is not None:
        query = query.where(SleepAssessment.timeline_at >= start)
    if end is not None:
        query = query.where(SleepAssessment.timeline_at <= end)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (SleepAssessment.timeline_at < moment)
            | ((SleepAssessment.timeline_at == moment) & (SleepAssessment.id < row_id))
        )
    query = query.order_by(SleepAssessment.timeline_at.desc(), SleepAssessment.id.desc())
    return (await session.scalars(query.limit(limit))).all()
