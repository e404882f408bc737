from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, DecimalType, JSONType, UTCDateTime, utcnow
from app.models.mixins import OrganizationScoped, PatientScoped


class Panel(PatientScoped, Base):
    """A lab panel as sent by one source; (organization, source, accession) is its natural key."""

    __tablename__ = "panel"
    __table_args__ = (
        UniqueConstraint("organization_id", "source", "accession"),
        CheckConstraint(
            "status IN ('preliminary', 'final', 'corrected', 'amended', 'cancelled')",
            name="status",
        ),
        CheckConstraint("source_format IN ('json', 'fhir', 'hl7v2')", name="source_format"),
        # What a result's one foreign key refers to (Result.__table_args__): the panel, with
        # its organization and patient. The id alone is already unique.
        UniqueConstraint("id", "organization_id", "patient_id"),
        Index("ix_panel_patient_collected", "patient_id", "collected_at", "id"),
    )

    source: Mapped[str] = mapped_column(String(100))
    accession: Mapped[str] = mapped_column(String(100))
    specimen: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    performing_lab: Mapped[str | None] = mapped_column(String(200))
    source_format: Mapped[str] = mapped_column(String(10))
    payload_hash: Mapped[str] = mapped_column(String(64))
    range_set_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("range_set.id", ondelete="RESTRICT")
    )
    interpretation_version: Mapped[int] = mapped_column(default=1)
    interpreted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    has_critical: Mapped[bool] = mapped_column(default=False)
    has_possible_critical: Mapped[bool] = mapped_column(default=False, server_default=false())
    ratios: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The panel as the API renders it, written with every (re-)interpretation, so a read is one
    # row and no re-rendering. Derived from the columns above; NULL means "render from rows".
    document: Mapped[str | None] = mapped_column(Text)

    # Joined on the id alone (the foreign key also carries organization and patient, which
    # are the panel's): selectinload reads a panel's results by panel_id, as before.
    results: Mapped[list[Result]] = relationship(
        back_populates="panel",
        lazy="raise",
        order_by="Result.position",
        primaryjoin="Panel.id == foreign(Result.panel_id)",
    )


class Result(PatientScoped, Base):
    """One analyte result: the value as sent, in the canonical unit, and our interpretation."""

    __tablename__ = "result"
    __table_args__ = (
        UniqueConstraint("panel_id", "position"),
        # ONE foreign key for the result's panel, organization and patient (migration
        # b8d0f2a4c6e1): a result belongs to its panel's organization and patient, and the
        # panel's own foreign keys keep organization and patient RESTRICT. Three (each checked
        # by a trigger per result row) cost 29% of a results COPY.
        ForeignKeyConstraint(
            ["panel_id", "organization_id", "patient_id"],
            ["panel.id", "panel.organization_id", "panel.patient_id"],
            name="fk_result_panel_id_organization_id_patient_id_panel",
            ondelete="CASCADE",
        ),
        CheckConstraint("comparator IN ('<', '<=', '>', '>=')", name="comparator"),
        CheckConstraint(
            "interpretation IN ('L', 'N', 'H', 'LL', 'HH', 'IND')", name="interpretation"
        ),
        CheckConstraint(
            "status IN ('preliminary', 'final', 'corrected', 'amended', 'cancelled', "
            "'entered-in-error')",
            name="status",
        ),
        CheckConstraint(
            "interpretation_status IN ('interpreted', 'no-reference-range')",
            name="interpretation_status",
        ),
        Index("ix_result_patient_analyte_collected", "patient_id", "analyte", "collected_at"),
        # The organization's list of flagged results (GET /api/v1/results), newest first: each
        # index holds only the rows its flags select, so a page reads ~limit rows whatever the
        # organization's size. The predicates are app.results.repository.flag_condition's, in
        # the form the planner must prove them from (migration a7c9e1b3d5f0).
        Index(
            "ix_result_org_flagged_collected",
            "organization_id",
            "collected_at",
            "id",
            postgresql_where=text(
                "interpretation IN ('L', 'H', 'LL', 'HH') OR critical IS TRUE"
                " OR possibly_critical IS TRUE"
            ),
            sqlite_where=text(
                "interpretation IN ('L', 'H', 'LL', 'HH') OR critical IS TRUE"
                " OR possibly_critical IS TRUE"
            ),
        ),
        Index(
            "ix_result_org_critical_any_collected",
            "organization_id",
            "collected_at",
            "id",
            postgresql_where=text("critical IS TRUE OR possibly_critical IS TRUE"),
            sqlite_where=text("critical IS TRUE OR possibly_critical IS TRUE"),
        ),
    )

    panel_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    position: Mapped[int]
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    analyte: Mapped[str] = mapped_column(String(50))
    loinc: Mapped[str | None] = mapped_column(String(20))
    code_sent: Mapped[str | None] = mapped_column(String(100))
    value_text: Mapped[str] = mapped_column(String(50))
    comparator: Mapped[str | None] = mapped_column(String(2))
    value: Mapped[Decimal] = mapped_column(DecimalType)
    unit: Mapped[str] = mapped_column(String(20))
    canonical_value: Mapped[Decimal] = mapped_column(DecimalType)
    canonical_unit: Mapped[str] = mapped_column(String(20))
    lab_range_text: Mapped[str | None] = mapped_column(String(200))
    lab_range_low: Mapped[Decimal | None] = mapped_column(DecimalType)
    lab_range_high: Mapped[Decimal | None] = mapped_column(DecimalType)
    lab_flag: Mapped[str | None] = mapped_column(String(10))
    interpretation: Mapped[str | None] = mapped_column(String(3))
    # For safety: our limits (a comparator value definitely beyond one included) or the lab's
    # own critical flag say critical. `possibly_critical`: a comparator value that may be.
    critical: Mapped[bool] = mapped_column(default=False)
    possibly_critical: Mapped[bool] = mapped_column(default=False, server_default=false())
    # FHIR Observation.status / HL7 OBX-11 of this result; withdrawn ones (cancelled,
    # entered-in-error) are kept for the record but never shown as current or used by plans.
    status: Mapped[str] = mapped_column(String(20), default="final", server_default="final")
    # `no-reference-range`: no row applied (the note says why); critical limits still did.
    interpretation_status: Mapped[str] = mapped_column(
        String(20), default="interpreted", server_default="interpreted"
    )
    interpretation_note: Mapped[str | None] = mapped_column(Text)
    lab_disagreement: Mapped[str | None] = mapped_column(Text)
    # What the lab wrote about the result (HL7 NTE, narrative or coded OBX values).
    lab_comment: Mapped[str | None] = mapped_column(Text)
    # A snapshot of the reference range applied, so later range changes never rewrite history.
    reference_range: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # PatientScoped's columns without their own foreign keys: the composite one above covers
    # them (and refuses a result whose organization or patient is not its panel's).
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    organization_id: Mapped[uuid.UUID] = mapped_column(Uuid)

    panel: Mapped[Panel] = relationship(
        back_populates="results",
        lazy="raise",
        primaryjoin="Panel.id == foreign(Result.panel_id)",
    )


class PanelInterpretation(OrganizationScoped, Base):
    """A superseded interpretation of a panel, kept readable after a re-interpretation."""

    __tablename__ = "panel_interpretation"
    __table_args__ = (UniqueConstraint("panel_id", "version"),)

    panel_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("panel.id", ondelete="CASCADE"))
    version: Mapped[int]
    range_set_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("range_set.id", ondelete="RESTRICT")
    )
    interpreted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    ratios: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
