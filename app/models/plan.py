from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    Dialect,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from app.core.db import Base, UTCDateTime, utcnow
from app.domain.plans.document import PlanDocument
from app.models.mixins import OrganizationScoped, PatientScoped
from app.models.plan_rule_set import PlanRuleSet as PlanRuleSet  # it used to live here

PLAN_STATUSES = ("draft", "active", "completed", "revoked", "entered-in-error")


class PlanDocumentType(TypeDecorator[PlanDocument]):
    """A plan document in its JSON column (JSONB on PostgreSQL): validated into the typed
    model on every load, written back in the shape it was read in (see PlanDocument)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[object]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: PlanDocument | None, dialect: Dialect) -> object:
        return None if value is None else value.model_dump(mode="json")

    def process_result_value(self, value: object, dialect: Dialect) -> PlanDocument | None:
        return None if value is None else PlanDocument.model_validate(value)


class TreatmentPlan(PatientScoped, Base):
    """The current state of a treatment plan; every change also appends a `TreatmentPlanVersion`.

    `document` holds the items, safety findings, overrides, the rules that fired and the facts
    the plan was drafted from: a `PlanDocument` (app/domain/plans/document.py)."""

    __tablename__ = "treatment_plan"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'active', 'completed', 'revoked', 'entered-in-error')",
            name="status",
        ),
        Index("ix_treatment_plan_patient_created", "patient_id", "created_at", "id"),
        Index("ix_treatment_plan_org_status_created", "organization_id", "status", "created_at"),
        Index("ix_treatment_plan_org_retest", "organization_id", "status", "next_retest_date"),
    )

    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int]
    rule_set_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("plan_rule_set.id", ondelete="RESTRICT")
    )
    replaces_plan_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("treatment_plan.id", ondelete="RESTRICT")
    )
    author: Mapped[str] = mapped_column(String(200))
    approver: Mapped[str | None] = mapped_column(String(200))
    next_retest_date: Mapped[date | None] = mapped_column(Date)
    # Set when a result the plan rests on was later withdrawn or corrected: the plan must be
    # reviewed (regenerated or acknowledged) before it can be activated again.
    review_reason: Mapped[str | None] = mapped_column(Text)
    document: Mapped[PlanDocument] = mapped_column(PlanDocumentType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TreatmentPlanVersion(OrganizationScoped, Base):
    """One version of a plan, as it was after a change. Append-only."""

    __tablename__ = "treatment_plan_version"
    __table_args__ = (UniqueConstraint("plan_id", "version"),)

    plan_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("treatment_plan.id", ondelete="RESTRICT")
    )
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))
    change: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    document: Mapped[PlanDocument] = mapped_column(PlanDocumentType)
