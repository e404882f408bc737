"""Patients: create with unique identifiers, read, search."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.concurrency import PreconditionFailedError, etag
from app.db import utcnow
from app.errors import ConflictError, NotFoundError
from app.models.patient import Patient, PatientIdentifier
from app.patients import repository
from app.patients.schemas import PatientCreate, PatientUpdate


class IdentifierInUseError(ConflictError):
    type_slug = "identifier-in-use"
    title = "Identifier already in use"


async def create(
    session: AsyncSession, *, organization_id: uuid.UUID, data: PatientCreate
) -> Patient:
    pairs = [(i.system, i.value) for i in data.identifiers]
    taken = await repository.identifier_taken(session, organization_id=organization_id, pairs=pairs)
    if taken is not None:
        raise IdentifierInUseError(
            f"Another patient already has an identifier in system {taken!r}.", system=taken
        )
    now = utcnow()
    patient = Patient(
        id=uuid.uuid4(),
        organization_id=organization_id,
        sex=data.sex.value,
        birth_date=data.birth_date,
        version=1,
        created_at=now,
        updated_at=now,
    )
    identifiers = [
        PatientIdentifier(
            organization_id=organization_id,
            patient_id=patient.id,
            system=system,
            value=value,
            position=position,
        )
        for position, (system, value) in enumerate(pairs)
    ]
    try:
        # The unique constraint is the real guard: a concurrent create loses here.
        async with session.begin_nested():
            await repository.add(session, patient, identifiers)
    except IntegrityError as exc:
        raise IdentifierInUseError("Another patient already has one of these identifiers.") from exc
    set_committed_value(patient, "identifiers", identifiers)
    return patient


async def get_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> Patient:
    patient = await repository.get(session, organization_id=organization_id, patient_id=patient_id)
    if patient is None:
        raise NotFoundError("No patient with this id.")
    return patient


async def search(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    identifier: tuple[str, str | None] | None,
    sex: str | None,
    birth_date: date | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[Patient]:
    return await repository.search(
        session,
        organization_id=organization_id,
        identifier=identifier,
        sex=sex,
        birth_date=birth_date,
        limit=limit,
        after=after,
    )


async def update(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    expected_version: int,
    data: PatientUpdate,
) -> Patient:
    """Apply a correction if nobody changed the patient since `expected_version` was read.

    Stored panels keep the interpretation they were given; re-interpret them explicitly."""
    values: dict[str, object] = {"updated_at": utcnow()}
    if data.sex is not None:
        values["sex"] = data.sex.value
    if "birth_date" in data.model_fields_set:
        values["birth_date"] = data.birth_date
    won = await repository.update_if_version(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        expected_version=expected_version,
        values=values,
    )
    if not won:
        current = await get_or_raise(
            session, organization_id=organization_id, patient_id=patient_id
        )
        raise PreconditionFailedError(
            "The patient was changed by someone else; read it again and reapply your change.",
            current_etag=etag(str(current.version)),
        )
    session.expire_all()
    return await get_or_raise(session, organization_id=organization_id, patient_id=patient_id)
