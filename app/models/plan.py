from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow

PLAN_STATUSES = ("draft", "active", "completed", "revoked", "entered-in-error")


class PlanRuleSet(Base):
    """A named, versioned, immutable plan rule set (the validated document); one is active."""

    __tablename__ = "plan_rule_set"
    __table_args__ = (
        UniqueConstraint("organization_id", "name", "version"),
        CheckConstraint("status IN ('draft', 'active', 'retired')", name="status"),
        Index(
            "uq_plan_rule_set_one_active",
            "organization_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_plan_rule_set_org_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organization.id", ondelete="RESTRICT")
    )
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="draft")
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TreatmentPlan(Base):
    """The current state of a treatment plan; every change also appends a `TreatmentPlanVersion`.

    `document` holds the items, safety findings, overrides, the rules that fired and the facts
    the plan was drafted from (see app/plans/documents.py)."""

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

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organization.id", ondelete="RESTRICT")
    )
    patient_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("patient.id", ondelete="RESTRICT")
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
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TreatmentPlanVersion(Base):
    """One version of a plan, as it was after a change. Append-only."""

    __tablename__ = "treatment_plan_version"
    __table_args__ = (UniqueConstraint("plan_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organization.id", ondelete="RESTRICT")
    )
    plan_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("treatment_plan.id", ondelete="RESTRICT")
    )
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))
    change: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
