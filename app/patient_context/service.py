"""Patient context: record a new version, read the current one or any past one, and turn it
into the facts the plan rules read."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import new_id, utcnow
from app.core.errors import NotFoundError, UnprocessableError
from app.domain.plans.facts import PatientFacts
from app.kit.concurrency import PreconditionFailedError, version_etag
from app.kit.lookup import found
from app.models.patient import Patient
from app.models.patient_context import PatientContext
from app.patient_context import repository
from app.patient_context.schemas import (
    CodedOut,
    CodingOut,
    ConditionOut,
    EgfrOut,
    MedicationOut,
    PatientContextOut,
    PatientContextWrite,
)
from app.patient_context.vocabulary import Concept, default_vocabulary
from app.patients import service as patients_service


class ContextNotRecordedError(
    NotFoundError, slug="context-not-recorded", title="No clinical context recorded"
): ...


class ContextInconsistentError(
    UnprocessableError,
    slug="context-inconsistent",
    title="The context contradicts the patient record",
): ...


# Kept under this name for the context and timeline routes.
get_patient_or_raise = patients_service.get_plain_or_raise


def context_etag(context: PatientContext) -> str:
    return version_etag("context", context.patient_id, context.version)


async def current_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> PatientContext:
    return found(
        await repository.current(session, organization_id=organization_id, patient_id=patient_id),
        ContextNotRecordedError("No clinical context has been recorded for this patient."),
    )


async def version_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID, version: int
) -> PatientContext:
    return found(
        await repository.get_version(
            session, organization_id=organization_id, patient_id=patient_id, version=version
        ),
        NotFoundError("This patient has no context version with this number."),
    )


# Listing versions has no rule beyond the query (see patients.service.search).
versions = repository.versions


def check_consistent(patient: Patient, data: PatientContextWrite) -> None:
    """Refuse what the patient record rules out (pregnancy for a patient recorded as male)."""
    if data.pregnant and patient.sex == "male":
        raise ContextInconsistentError(
            "The patient is recorded as male, so pregnant cannot be true. Correct the "
            "patient's sex first if it is wrong.",
            errors=[
                {
                    "field": "body.pregnant",
                    "message": "must not be true for a patient recorded as male",
                    "code": "inconsistent_with_patient",
                }
            ],
        )


async def record(
    session: AsyncSession,
    *,
    patient: Patient,
    current: PatientContext | None,
    data: PatientContextWrite,
    recorded_by: str,
) -> PatientContext:
    """Append the next version after `current` (None for the first write).

    The (patient, version) unique constraint is the guard against a concurrent writer who read
    the same current version: the loser gets 412 and nothing is stored."""
    check_consistent(patient, data)
    context = PatientContext(
        id=new_id(),
        organization_id=patient.organization_id,
        patient_id=patient.id,
        version=(current.version + 1) if current is not None else 1,
        pregnant=data.pregnant,
        lactating=data.lactating,
        egfr=data.egfr.value if data.egfr is not None else None,
        egfr_measured_on=data.egfr.measured_on if data.egfr is not None else None,
        medications=[
            {
                "code": m.code,
                "name": m.name,
                "since": m.since.isoformat() if m.since else None,
            }
            for m in data.medications
        ],
        conditions=[
            {"code": c.code, "since": c.since.isoformat() if c.since else None}
            for c in data.conditions
        ],
        diet=data.diet,
        caffeine_servings_per_day=data.caffeine_servings_per_day,
        alcohol_drinks_per_week=data.alcohol_drinks_per_week,
        note=data.note,
        recorded_at=utcnow(),
        recorded_by=recorded_by,
    )
    try:
        async with session.begin_nested():
            await repository.add(session, context)
    except IntegrityError as exc:
        raise PreconditionFailedError(
            "Someone else recorded a new version of this context at the same time; read it "
            "again and reapply your change."
        ) from exc
    return context


# --- output -------------------------------------------------------------------------------


def _codings(concept: Concept) -> list[CodingOut]:
    return [CodingOut(system=c.system, code=c.code, display=c.display) for c in concept.coding]


def _coded(concept: Concept) -> CodedOut:
    return CodedOut(code=concept.code, display=concept.display, coding=_codings(concept))


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


# The columns the API shows unchanged (the coded ones are expanded from the vocabulary). Every
# field of the output model is required, so a misspelt name fails validation, not silently.
_SHOWN_AS_STORED = (
    "id",
    "patient_id",
    "version",
    "pregnant",
    "lactating",
    "caffeine_servings_per_day",
    "alcohol_drinks_per_week",
    "note",
    "recorded_at",
    "recorded_by",
)


def context_out(context: PatientContext) -> PatientContextOut:
    """The version with every coded entry expanded from the vocabulary."""
    vocabulary = default_vocabulary()
    egfr = None
    if context.egfr is not None and context.egfr_measured_on is not None:
        egfr = EgfrOut(
            value=context.egfr,
            unit=vocabulary.egfr_unit,
            measured_on=context.egfr_measured_on,
            coding=_codings(vocabulary.egfr),
        )
    medications = []
    for entry in context.medications:
        concept = vocabulary.medications[entry["code"]]
        medications.append(
            MedicationOut(
                **_coded(concept).model_dump(),
                name=entry.get("name"),
                since=_date(entry.get("since")),
            )
        )
    conditions = [
        ConditionOut(
            **_coded(vocabulary.conditions[entry["code"]]).model_dump(),
            since=_date(entry.get("since")),
        )
        for entry in context.conditions
    ]
    return PatientContextOut(
        **{name: getattr(context, name) for name in _SHOWN_AS_STORED},
        egfr=egfr,
        medications=medications,
        conditions=conditions,
        diet=_coded(vocabulary.diets[context.diet]) if context.diet else None,
    )


# --- what the plan rules read ---------------------------------------------------------------


def age_in_years(birth_date: date | None, *, today: date) -> int | None:
    """Whole years completed at `today`; None without a birth date (or one after `today`)."""
    if birth_date is None or birth_date > today:
        return None
    return (
        today.year
        - birth_date.year
        - ((today.month, today.day) < (birth_date.month, birth_date.day))
    )


def patient_facts(patient: Patient, context: PatientContext | None, *, today: date) -> PatientFacts:
    """The patient as the plan rules see it on `today`. Without a context the facts hold the
    defaults (not pregnant, not lactating, no eGFR, medications or conditions)."""
    age = age_in_years(patient.birth_date, today=today)
    if context is None:
        return PatientFacts(sex=patient.sex, age_years=age)
    return PatientFacts(
        sex=patient.sex,
        age_years=age,
        pregnant=bool(context.pregnant),
        lactating=bool(context.lactating),
        egfr=context.egfr,
        egfr_measured_on=context.egfr_measured_on,
        medications=frozenset(entry["code"] for entry in context.medications),
        conditions=frozenset(entry["code"] for entry in context.conditions),
        diet=context.diet,
        caffeine_servings_per_day=context.caffeine_servings_per_day,
        alcohol_drinks_per_week=context.alcohol_drinks_per_week,
    )
