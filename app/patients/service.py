"""Patients: create with unique identifiers, read, search."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core.db import new_id, utcnow
from app.core.errors import ConflictError, NotFoundError
from app.domain.person_names import join_given
from app.kit.concurrency import PreconditionFailedError, version_etag
from app.kit.lookup import found
from app.models.mixins import PatientKey
from app.models.patient import Patient, PatientIdentifier
from app.patients import repository
from app.patients.schemas import HumanNameIn, PatientCreate, PatientUpdate


def name_columns(name: HumanNameIn | None) -> dict[str, str | None]:
    """The stored columns of a name (all None when there is none)."""
    if name is None:
        return {"family_name": None, "given_names": None, "name_text": None}
    return {
        "family_name": name.family,
        "given_names": join_given(name.given),
        "name_text": name.text,
    }


class IdentifierInUseError(
    ConflictError, slug="identifier-in-use", title="Identifier already in use"
):
    """409 naming the patient that holds the identifier (`patient_id`, `Location`), so a
    client that lost a registration race can go on with the existing record."""

    def __init__(self, detail: str, *, existing: uuid.UUID | None = None, **extensions: Any):
        if existing is not None:
            extensions["patient_id"] = str(existing)
        super().__init__(detail, **extensions)
        self.existing = existing

    def headers(self) -> dict[str, str] | None:
        if self.existing is None:
            return None
        return {"Location": f"/api/v1/patients/{self.existing}"}


async def _holder(
    session: AsyncSession, *, organization_id: uuid.UUID, pairs: Sequence[tuple[str, str]]
) -> uuid.UUID | None:
    """The patient already holding one of these identifiers (only looked up on a conflict)."""
    for system, value in pairs:
        patient = await repository.get_by_identifier(
            session, organization_id=organization_id, system=system, value=value
        )
        if patient is not None:
            return patient.id
    return None


async def create(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    data: PatientCreate,
    identifier_types: Sequence[str | None] = (),
) -> Patient:
    """Register a patient. ``identifier_types`` (HL7 table 0203 codes, by position) are kept
    for identifiers that came from HL7 / FHIR with a type; the native API sends none."""
    pairs = [(i.system, i.value) for i in data.identifiers]
    types = list(identifier_types)[: len(pairs)]
    types += [None] * (len(pairs) - len(types))
    taken = await repository.identifier_taken(session, organization_id=organization_id, pairs=pairs)
    if taken is not None:
        raise IdentifierInUseError(
            f"Another patient already has an identifier in system {taken!r}.",
            system=taken,
            existing=await _holder(session, organization_id=organization_id, pairs=pairs),
        )
    now = utcnow()
    patient = Patient(
        id=new_id(),
        organization_id=organization_id,
        sex=data.sex.value,
        birth_date=data.birth_date,
        **name_columns(data.name),
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
            type=kind,
            position=position,
        )
        for position, ((system, value), kind) in enumerate(zip(pairs, types, strict=True))
    ]
    try:
        # The unique constraint is the real guard: a concurrent create loses here.
        async with session.begin_nested():
            await repository.add(session, patient, identifiers)
    except IntegrityError as exc:
        raise IdentifierInUseError(
            "Another patient already has one of these identifiers.",
            existing=await _holder(session, organization_id=organization_id, pairs=pairs),
        ) from exc
    set_committed_value(patient, "identifiers", identifiers)
    return patient


def _not_found() -> NotFoundError:
    # One 404 for an unknown id and for another organization's patient: no existence leak.
    return NotFoundError("No patient with this id.")


async def get_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> Patient:
    return found(
        await repository.get(session, organization_id=organization_id, patient_id=patient_id),
        _not_found(),
    )


async def get_plain_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> Patient:
    """The patient row without identifiers (sex and birth date: what ingestion and the
    clinical context need), or 404."""
    return found(
        await repository.get_plain(session, organization_id=organization_id, patient_id=patient_id),
        _not_found(),
    )


# A search has no rule beyond its query: the service hands out the repository's function rather
# than a wrapper that repeats its ten parameters (routers still only talk to the service).
search = repository.search


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
    if "name" in data.model_fields_set:
        values.update(name_columns(data.name))
    key = PatientKey(organization_id, patient_id)
    won = await repository.update_if_version(
        session, key, expected_version=expected_version, values=values
    )
    if not won:
        current = await get_or_raise(
            session, organization_id=organization_id, patient_id=patient_id
        )
        raise PreconditionFailedError(
            "The patient was changed by someone else; read it again and reapply your change.",
            current_etag=version_etag("patient", current.id, current.version),
        )
    session.expire_all()
    return await get_or_raise(session, organization_id=organization_id, patient_id=patient_id)
