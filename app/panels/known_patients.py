"""The patients POST /api/v1/panels named, per process (issue 15, the one-statement POST).

A panel names its patient by id or by identifier; the plain path resolves it (with the
organization's active range set) in a query of its own. Every such resolution is noted here,
so the next POST naming the same patient can be interpreted before touching the database
(app.panels.fast_post). An entry is only a guess: the one statement re-checks the patient's
sex, birth date, identifier and the active range set, and takes the plain path when any of
them changed. Bounded; the database is part of the key (tests and the CLI run several apps on
several databases in one process).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.service import database_name
from app.panels.repository import PatientForPanel

_MAX = 100_000

# (database, organization, patient id) or (database, organization, system, value).
PatientKey = tuple[str, uuid.UUID, uuid.UUID] | tuple[str, uuid.UUID, str, str]

_known: dict[PatientKey, PatientForPanel] = {}


def key_of(
    engine: AsyncEngine,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    identifier: tuple[str, str] | None,
) -> PatientKey:
    database = database_name(engine)
    if patient_id is not None:
        return (database, organization_id, patient_id)
    assert identifier is not None
    return (database, organization_id, *identifier)


def remember(key: PatientKey, patient: PatientForPanel) -> None:
    if len(_known) >= _MAX and key not in _known:
        _known.clear()
    _known[key] = patient


def forget(key: PatientKey) -> None:
    _known.pop(key, None)


def get(key: PatientKey) -> PatientForPanel | None:
    return _known.get(key)


def clear() -> None:
    _known.clear()
