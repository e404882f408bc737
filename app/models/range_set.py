from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, DecimalType
from app.kit.versioned_sets.model import VersionedSet
from app.models.mixins import IdMixin


class RangeSet(VersionedSet, Base):
    """A named, versioned, immutable set of reference ranges; one per organization is active."""

    __tablename__ = "range_set"

    effective_from: Mapped[date | None] = mapped_column(Date)

    rows: Mapped[list[ReferenceRange]] = relationship(
        back_populates="range_set", lazy="raise", order_by="ReferenceRange.position"
    )
    ratios: Mapped[list[RatioRange]] = relationship(
        back_populates="range_set", lazy="raise", order_by="RatioRange.position"
    )


class _InRangeSet(IdMixin):
    """A row of a range set, at its position in the set; deleted with the set."""

    range_set_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("range_set.id", ondelete="CASCADE")
    )
    position: Mapped[int]


class ReferenceRange(_InRangeSet, Base):
    """One row of a range set, in the unit it was written in (converted when applied)."""

    __tablename__ = "reference_range"
    __table_args__ = (Index("ix_reference_range_set_analyte", "range_set_id", "analyte"),)

    analyte: Mapped[str] = mapped_column(String(50))
    specimen: Mapped[str | None] = mapped_column(String(20))
    sex: Mapped[str | None] = mapped_column(String(16))
    age_min_years: Mapped[Decimal | None] = mapped_column(DecimalType)
    age_max_years: Mapped[Decimal | None] = mapped_column(DecimalType)
    unit: Mapped[str] = mapped_column(String(20))
    low: Mapped[Decimal | None] = mapped_column(DecimalType)
    high: Mapped[Decimal | None] = mapped_column(DecimalType)
    critical_low: Mapped[Decimal | None] = mapped_column(DecimalType)
    critical_high: Mapped[Decimal | None] = mapped_column(DecimalType)
    absolute_low: Mapped[Decimal | None] = mapped_column(DecimalType)
    absolute_high: Mapped[Decimal | None] = mapped_column(DecimalType)
    source: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)

    range_set: Mapped[RangeSet] = relationship(back_populates="rows", lazy="raise")


class RatioRange(_InRangeSet, Base):
    """A configurable range for a derived molar ratio (e.g. Ca:Mg) within a range set."""

    __tablename__ = "ratio_range"
    __table_args__ = (UniqueConstraint("range_set_id", "code"),)

    code: Mapped[str] = mapped_column(String(50))
    display: Mapped[str] = mapped_column(String(200))
    numerator: Mapped[str] = mapped_column(String(50))
    denominator: Mapped[str] = mapped_column(String(50))
    low: Mapped[Decimal | None] = mapped_column(DecimalType)
    high: Mapped[Decimal | None] = mapped_column(DecimalType)
    source: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)

    range_set: Mapped[RangeSet] = relationship(back_populates="ratios", lazy="raise")
