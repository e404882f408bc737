from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime, utcnow
from app.models.mixins import PatientScoped


class SleepAssessment(PatientScoped, Base):
    """One completed sleep questionnaire (the Insomnia Severity Index): its item answers and
    the total and category the server computed from them."""

    __tablename__ = "sleep_assessment"
    __table_args__ = (
        CheckConstraint("instrument IN ('ISI')", name="instrument"),
        CheckConstraint("total BETWEEN 0 AND 28", name="total"),
        CheckConstraint(
            "category IN ('none', 'subthreshold', 'moderate', 'severe')", name="category"
        ),
        Index("ix_sleep_assessment_patient_timeline", "patient_id", "timeline_at", "id"),
    )

    instrument: Mapped[str] = mapped_column(String(10))
    assessed_on: Mapped[date] = mapped_column(Date)
    # assessed_on at 00:00 UTC: where the assessment sits on the patient's timeline beside the
    # panels' collected_at, so lists and the timeline sort and page on one typed column.
    timeline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    items: Mapped[list[int]] = mapped_column(JSONType)
    total: Mapped[int]
    category: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(300))
