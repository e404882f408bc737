"""The columns and indexes every versioned set table has, declared once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from app.core.db import UTCDateTime, utcnow
from app.models.mixins import OrganizationScoped

SET_STATUSES = ("draft", "active", "retired")


class VersionedSet(OrganizationScoped):
    """A named, versioned, immutable set; at most one per organization is active.

    Mix it into a model with its `__tablename__`; the table gets the same constraints and
    indexes as every other set (their names derive from the table name, as in the migrations).
    A model with extra indexes adds them with `versioned_set_args(...)`."""

    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="draft")
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        return versioned_set_args(cls.__tablename__)

    __tablename__: str


def versioned_set_args(table: str, *extra: Any) -> tuple[Any, ...]:
    """The constraints of a set table: versions unique per name, a known status, one active
    set per organization (a partial unique index, so the database refuses a second), and the
    index the newest-first listing reads."""
    statuses = ", ".join(f"'{status}'" for status in SET_STATUSES)
    return (
        UniqueConstraint("organization_id", "name", "version"),
        CheckConstraint(f"status IN ({statuses})", name="status"),
        Index(
            f"uq_{table}_one_active",
            "organization_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index(f"ix_{table}_org_created", "organization_id", "created_at", "id"),
        *extra,
    )
