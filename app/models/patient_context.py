from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, DecimalType, JSONType, UTCDateTime, utcnow
from app.models.mixins import PatientScoped


class PatientContext(PatientScoped, Base):
    """One version of a patient's clinical context (pregnancy, kidney function, medications,
    conditions, diet). Append-only: every write is a new row with the next version, so the
    context a plan was drafted against stays readable."""

    __tablename__ = "patient_context"
    __table_args__ = (
        # Also the guard against two concurrent writers of the same next version.
        UniqueConstraint("patient_id", "version"),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint("diet IN ('omnivore', 'vegetarian', 'vegan', 'pescatarian')", name="diet"),
        CheckConstraint(
            "caffeine_servings_per_day BETWEEN 0 AND 30", name="caffeine_servings_per_day"
        ),
        CheckConstraint(
            "alcohol_drinks_per_week BETWEEN 0 AND 100", name="alcohol_drinks_per_week"
        ),
    )

    version: Mapped[int]
    pregnant: Mapped[bool | None]
    lactating: Mapped[bool | None]
    egfr: Mapped[Decimal | None] = mapped_column(DecimalType)  # mL/min/1.73 m2
    egfr_measured_on: Mapped[date | None] = mapped_column(Date)
    # [{"code": <MEDICATION_CLASSES>, "name": str | None, "since": "YYYY-MM-DD" | None}]
    medications: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # [{"code": <CONDITIONS>, "since": "YYYY-MM-DD" | None}]
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    diet: Mapped[str | None] = mapped_column(String(20))
    caffeine_servings_per_day: Mapped[int | None]
    alcohol_drinks_per_week: Mapped[int | None]
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(300))
