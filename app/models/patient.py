from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, UTCDateTime, utcnow
from app.domain.person_names import PersonName, stored_name
from app.models.mixins import OrganizationScoped


class Patient(OrganizationScoped, Base):
    __tablename__ = "patient"
    __table_args__ = (
        CheckConstraint("sex IN ('female', 'male', 'other', 'unknown')", name="sex"),
        Index("ix_patient_org_created", "organization_id", "created_at", "id"),
    )

    sex: Mapped[str] = mapped_column(String(16))
    birth_date: Mapped[date | None] = mapped_column(Date)
    # The patient's name (FHIR HumanName: family, given[], text). Given names are stored joined
    # by newlines (input refuses control characters, so the join is lossless).
    family_name: Mapped[str | None] = mapped_column(String(255))
    given_names: Mapped[str | None] = mapped_column(String(1000))
    name_text: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", lazy="raise", order_by="PatientIdentifier.position"
    )

    @property
    def name(self) -> PersonName | None:
        return stored_name(self.family_name, self.given_names, self.name_text)


# Name prefix search (`?name=`, `?family=`): lower(family_name) LIKE 'smi%'. The migration gives
# PostgreSQL text_pattern_ops so LIKE can use the index under any collation.
Index("ix_patient_org_family_lower", Patient.organization_id, func.lower(Patient.family_name))


class PatientIdentifier(OrganizationScoped, Base):
    """An external identifier (system + value, e.g. an MRN); unique per organization."""

    __tablename__ = "patient_identifier"
    __table_args__ = (
        UniqueConstraint("organization_id", "system", "value"),
        Index("ix_patient_identifier_patient", "patient_id"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("patient.id", ondelete="CASCADE")
    )
    system: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    # HL7 table 0203 identifier type (MR, SS, PI, ...) when the sender gave one.
    type: Mapped[str | None] = mapped_column(String(10))
    position: Mapped[int] = mapped_column(default=0)

    patient: Mapped[Patient] = relationship(back_populates="identifiers", lazy="raise")
