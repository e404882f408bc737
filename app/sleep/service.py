"""Sleep assessments: score and record an ISI questionnaire, list them, and hand the latest to
the plan rules."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import new_id, utcnow
from app.core.errors import NotFoundError, UnprocessableError
from app.domain import isi
from app.domain.plans.facts import SleepFact
from app.kit.lookup import found
from app.kit.query_params import InvalidQueryError
from app.models.mixins import PatientKey
from app.models.patient import Patient
from app.models.sleep_assessment import SleepAssessment
from app.sleep import repository
from app.sleep.schemas import SleepAssessmentCreate, SleepAssessmentOut


class InvalidDateRangeError(InvalidQueryError):
    pass


class AssessedBeforeBirthError(
    UnprocessableError,
    slug="assessed-before-birth",
    title="Assessed before the patient's birth date",
): ...


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
        **data.model_dump(include={"instrument", "assessed_on", "items", "note"}),
        id=new_id(),
        organization_id=patient.organization_id,
        patient_id=patient.id,
        timeline_at=day_start(data.assessed_on),
        total=scored.total,
        category=scored.category,
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
    return found(
        await repository.get(
            session,
            organization_id=organization_id,
            patient_id=patient_id,
            assessment_id=assessment_id,
        ),
        NotFoundError("No sleep assessment with this id for this patient."),
    )


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
    key = PatientKey(organization_id, patient_id)
    return await repository.search(
        session, key, bounds=date_bounds(start, end), limit=limit, after=after
    )


# The columns the API shows unchanged. Every field of the output model is required, so a
# misspelt name fails validation, not silently.
_SHOWN_AS_STORED = (
    "id",
    "patient_id",
    "assessed_on",
    "total",
    "category",
    "note",
    "recorded_at",
    "recorded_by",
)


def assessment_out(assessment: SleepAssessment) -> SleepAssessmentOut:
    category = isi.default_instrument().category(assessment.total)
    return SleepAssessmentOut(
        **{name: getattr(assessment, name) for name in _SHOWN_AS_STORED},
        instrument="ISI",
        items=list(assessment.items),
        category_display=category.display,
    )


def sleep_fact(assessment: SleepAssessment) -> SleepFact:
    """What the plan rules read about sleep: the latest ISI total, category and date."""
    return SleepFact(
        total=assessment.total, category=assessment.category, assessed_on=assessment.assessed_on
    )
