"""How a list row names its patient without a second call: the first MRN (an identifier of
HL7 type `MR`, else the patient's first identifier) and, where the patient has one, the name."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.patient import Patient, PatientIdentifier


@dataclass(frozen=True, slots=True)
class PatientLabel:
    identifier_system: str | None
    identifier_value: str | None
    name: str | None


async def patient_labels(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, PatientLabel]:
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    identifiers = (
        await session.scalars(
            select(PatientIdentifier)
            .where(
                PatientIdentifier.organization_id == organization_id,
                PatientIdentifier.patient_id.in_(ids),
            )
            .order_by(PatientIdentifier.patient_id, PatientIdentifier.position)
        )
    ).all()
    first: dict[uuid.UUID, PatientIdentifier] = {}
    for identifier in identifiers:
        chosen = first.get(identifier.patient_id)
        if chosen is None or (identifier.type == "MR" and chosen.type != "MR"):
            first[identifier.patient_id] = identifier
    patients = (
        await session.scalars(
            select(Patient).where(Patient.organization_id == organization_id, Patient.id.in_(ids))
        )
    ).all()
    labels: dict[uuid.UUID, PatientLabel] = {}
    for patient in patients:
        chosen_identifier = first.get(patient.id)
        # The name is optional on the model's history; read it only where it exists.
        name = getattr(patient, "name", None)
        labels[patient.id] = PatientLabel(
            identifier_system=chosen_identifier.system if chosen_identifier else None,
            identifier_value=chosen_identifier.value if chosen_identifier else None,
            name=getattr(name, "text", None) if name is not None else None,
        )
    return labels
