from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow
from app.models.mixins import OrganizationScoped


class ApiKey(OrganizationScoped, Base):
    """An API key: only a SHA-256 hash of the secret is stored, found by its public prefix."""

    __tablename__ = "api_key"
    __table_args__ = (
        CheckConstraint("role IN ('integration', 'clinician', 'admin')", name="role"),
        Index("ix_api_key_organization", "organization_id", "created_at"),
    )

    name: Mapped[str] = mapped_column(String(200))
    # The human label plans record as author and approver (null on older keys: their name).
    display_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The principal that issued the key (`key:<id>`, `oidc:<issuer>|<subject>`, or `cli`).
    created_by: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
