"""All SQL for patients and their identifiers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.core.db import flush_in_order
from app.domain.person_names import GIVEN_SEPARATOR
from app.kit.list_sql import newest_first
from app.models.mixins import PatientKey
from app.models.patient import Patient, PatientIdentifier


def _family_prefix(prefix: str) -> ColumnElement[bool]:
    # lower(family_name) LIKE 'smi%' (wildcards in the prefix escaped): uses the lower() index.
    return func.lower(Patient.family_name).startswith(prefix.lower(), autoescape=True)


def _given_prefix(prefix: str) -> ColumnElement[bool]:
    """A prefix of any given name: the first one, or one after the stored separator."""
    lowered = func.lower(Patient.given_names)
    return or_(
        lowered.startswith(prefix.lower(), autoescape=True),
        lowered.contains(GIVEN_SEPARATOR + prefix.lower(), autoescape=True),
    )


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> Patient | None:
    return await session.scalar(
        select(Patient)
        .options(selectinload(Patient.identifiers))
        .where(Patient.organization_id == organization_id, Patient.id == patient_id)
    )


async def get_plain(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> Patient | None:
    """The patient row without identifiers (what ingestion needs: sex and birth date).

    A patient this session has already found is not read again: the session is one request's
    one transaction, and a nested route (`/patients/{id}/...`) has found its patient before the
    service checks it again. The query would answer the same object anyway (the session's
    identity map wins over the row it reads); only its round trip goes. (The identity map
    itself holds clean objects weakly: the session's info keeps them.)"""
    found: dict[tuple[uuid.UUID, uuid.UUID], Patient] = session.info.setdefault(_FOUND, {})
    known = found.get((organization_id, patient_id))
    if known is not None and _whole(known):
        return known
    patient = await session.scalar(
        select(Patient).where(Patient.organization_id == organization_id, Patient.id == patient_id)
    )
    if patient is not None:
        found[(organization_id, patient_id)] = patient
    return patient


_FOUND = "patients_found"
_PATIENT_COLUMNS = frozenset(attribute.key for attribute in sa_inspect(Patient).column_attrs)


def _whole(patient: Patient) -> bool:
    """Every column loaded: not expired (e.g. by a rolled-back savepoint), so reading them
    needs no lazy load."""
    state = sa_inspect(patient)
    return not state.expired and _PATIENT_COLUMNS.isdisjoint(state.unloaded)


async def get_by_identifier(
    session: AsyncSession, *, organization_id: uuid.UUID, system: str, value: str
) -> Patient | None:
    return await session.scalar(
        select(Patient)
        .join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
        .where(
            PatientIdentifier.organization_id == organization_id,
            PatientIdentifier.system == system,
            PatientIdentifier.value == value,
        )
    )


async def identifier_owners(
    session: AsyncSession, *, organization_id: uuid.UUID, pairs: Sequence[tuple[str, str]]
) -> Sequence[tuple[str, str, str | None, uuid.UUID]]:
    """(system, value, stored type, patient id) of each stored identifier among ``pairs``."""
    if not pairs:
        return []
    rows = await session.execute(
        select(
            PatientIdentifier.system,
            PatientIdentifier.value,
            PatientIdentifier.type,
            PatientIdentifier.patient_id,
        ).where(
            PatientIdentifier.organization_id == organization_id,
            or_(
                *(
                    and_(PatientIdentifier.system == system, PatientIdentifier.value == value)
                    for system, value in pairs
                )
            ),
        )
    )
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def identifiers_with_value(
    session: AsyncSession, *, organization_id: uuid.UUID, system: str | None, value: str
) -> Sequence[tuple[str, str | None, uuid.UUID]]:
    """(system, stored type, patient id) of the identifiers with this value (in ``system``, or
    in any system when it is None): what a FHIR ``identifier=[system|]value`` search finds."""
    query = select(
        PatientIdentifier.system, PatientIdentifier.type, PatientIdentifier.patient_id
    ).where(PatientIdentifier.organization_id == organization_id, PatientIdentifier.value == value)
    if system is not None:
        query = query.where(PatientIdentifier.system == system)
    rows = await session.execute(query.limit(100))
    return [(row[0], row[1], row[2]) for row in rows]


async def identifier_taken(
    session: AsyncSession, *, organization_id: uuid.UUID, pairs: Sequence[tuple[str, str]]
) -> str | None:
    """The system of the first (system, value) pair already in use, if any."""
    for system, value in pairs:
        found = await session.scalar(
            select(PatientIdentifier.id).where(
                PatientIdentifier.organization_id == organization_id,
                PatientIdentifier.system == system,
                PatientIdentifier.value == value,
            )
        )
        if found is not None:
            return system
    return None


async def add(
    session: AsyncSession, patient: Patient, identifiers: list[PatientIdentifier]
) -> None:
    await flush_in_order(session, [patient], identifiers)


async def search(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    identifier: tuple[str, str | None] | None,
    sex: str | None,
    birth_date: date | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    name: str | None = None,
    family: str | None = None,
    given: str | None = None,
) -> Sequence[Patient]:
    """Filters combine (AND). ``name``: a case-insensitive prefix of the family name or of any
    given name; ``family`` / ``given``: the same for that part only."""
    query = (
        select(Patient)
        .options(selectinload(Patient.identifiers))
        .where(Patient.organization_id == organization_id)
    )
    if identifier is not None:
        system, value = identifier
        match = select(PatientIdentifier.patient_id).where(
            PatientIdentifier.organization_id == organization_id,
            PatientIdentifier.system == system,
        )
        if value is not None:
            match = match.where(PatientIdentifier.value == value)
        query = query.where(Patient.id.in_(match))
    if sex is not None:
        query = query.where(Patient.sex == sex)
    if birth_date is not None:
        query = query.where(Patient.birth_date == birth_date)
    if name is not None:
        query = query.where(or_(_family_prefix(name), _given_prefix(name)))
    if family is not None:
        query = query.where(_family_prefix(family))
    if given is not None:
        query = query.where(_given_prefix(given))
    query = newest_first(query, Patient.created_at, Patient.id, after=after, limit=limit)
    return (await session.scalars(query)).all()


async def update_if_version(
    session: AsyncSession, key: PatientKey, *, expected_version: int, values: dict[str, object]
) -> bool:
    """Compare-and-set on the version column: True when this writer won."""
    result = await session.execute(
        update(Patient)
        .where(
            Patient.organization_id == key.organization_id,
            Patient.id == key.patient_id,
            Patient.version == expected_version,
        )
        .values(version=Patient.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
