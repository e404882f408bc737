"""Sleep assessments: score and record an ISI questionnaire, list them, and hand the latest to
the plan rules."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.domain import isi
from app.domain.plans.facts import SleepFact
from app.errors import NotFoundError, UnprocessableError
from app.models.patient import Patient
from app.models.sleep_assessment import SleepAssessment
from app.query_params import InvalidQueryError
from app.sleep import repository
from app.sleep.schemas import SleepAssessmentCreate, SleepAssessmentOut


class InvalidDateRangeError(InvalidQueryError):
    pass


class AssessedBeforeBirthError(UnprocessableError):
    type_slug = "assessed-before-birth"
    title = "Assessed before the patient's birth date"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_end(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def date_bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """Inclusive `from`/`to` days as UTC instants (the whole `to` day included)."""
    if start is not None and end is not None and start > end:
        raise InvalidDateRangeError("`from` must not be after `to`.")
    return (
        day_start(start) if start is not None else None,
        day_end(end) if end is not None else None,
    )


async def create(
    session: AsyncSession, *, patient: Patient, data: SleepAssessmentCreate, recorded_by: str
) -> SleepAssessment:
    if patient.birth_date is not None and data.assessed_on < patient.birth_date:
        raise AssessedBeforeBirthError(
            "assessed_on is before the patient's birth date.",
            errors=[
                {
                    "field": "body.assessed_on",
                    "message": "must not be before the patient's birth date",
                    "code": "before_birth_date",
                }
            ],
        )
    scored = isi.score(data.items)
    assessment = SleepAssessment(
        id=uuid.uuid4(),
        organization_id=patient.organization_id,
        patient_id=patient.id,
        instrument=data.instrument,
        assessed_on=data.assessed_on,
        timeline_at=day_start(data.assessed_on),
        items=list(data.items),
        total=scored.total,
        category=scored.category,
        note=data.note,
        recorded_at=utcnow(),
        recorded_by=recorded_by,
    )
    await repository.add(session, assessment)
    return assessment


async def get_or_raise(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    assessment_id: uuid.UUID,
) -> SleepAssessment:
    assessment = await repository.get(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        assessment_id=assessment_id,
    )
    if assessment is None:
        raise NotFoundError("No sleep assessment with this id for this patient.")
    return assessment


async def search(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    start: date | None,
    end: date | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[SleepAssessment]:
    lower, upper = date_bounds(start, end)
    return await repository.search(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        start=lower,
        end=upper,
        limit=limit,
        after=after,
    )


def assessment_out(assessment: SleepAssessment) -> SleepAssessmentOut:
    category = isi.default_instrument().category(assessment.total)
    return SleepAssessmentOut(
        id=assessment.id,
        patient_id=assessment.patient_id,
        instrument="ISI",
        assessed_on=assessment.assessed_on,
        items=list(assessment.items),
        total=assessment.total,
        category=assessment.category,
        category_display=category.display,
        note=assessment.note,
        recorded_at=assessment.recorded_at,
        recorded_by=assessment.recorded_by,
    )


def sleep_fact(assessment: SleepAssessment) -> SleepFact:
    """What the plan rules read about sleep: the latest ISI total, category and date."""
    return SleepFact(
        total=assessment.total, category=assessment.category, assessed_on=assessment.assessed_on
    )
