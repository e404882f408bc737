"""Columns that most tables share, declared once.

Only the columns are shared; each model keeps its own constraints and indexes (their names are
in the migrations). Changing a column here changes every table that mixes it in: write the
migration for all of them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import ColumnElement, ForeignKey, Select, Uuid, and_, select
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import new_id


class IdMixin:
    """A random UUID primary key, assigned by the application (not the database)."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)


class OrganizationScoped(IdMixin):
    """A row owned by one organization; RESTRICT, as an organization is never deleted with
    data in it."""

    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organization.id", ondelete="RESTRICT")
    )


class PatientScoped(OrganizationScoped):
    """A clinical record of one patient, kept when the patient row would be deleted (RESTRICT)."""

    patient_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("patient.id", ondelete="RESTRICT")
    )


@dataclass(frozen=True, slots=True)
class PatientKey:
    """A patient as one organization addresses it. Patient-scoped queries filter on both ids,
    so another organization's patient id finds nothing (the same 404 as an unknown id)."""

    organization_id: uuid.UUID
    patient_id: uuid.UUID

    def owns(self, model: type[PatientScoped]) -> ColumnElement[bool]:
        """The WHERE clause for `model`'s rows of this patient."""
        return of_patient(model, self.organization_id, self.patient_id)


def of_patient(
    model: type[PatientScoped], organization_id: uuid.UUID, patient_id: uuid.UUID
) -> ColumnElement[bool]:
    """The WHERE clause for `model`'s rows of one patient of one organization."""
    return and_(model.organization_id == organization_id, model.patient_id == patient_id)


_Record = TypeVar("_Record", bound=PatientScoped)


def patient_rows(
    model: type[_Record], organization_id: uuid.UUID, patient_id: uuid.UUID
) -> Select[_Record]:
    """SELECT `model`'s rows of one patient of one organization (narrow or order it further)."""
    return select(model).where(of_patient(model, organization_id, patient_id))
