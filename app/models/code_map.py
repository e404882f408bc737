from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow
from app.models.mixins import OrganizationScoped

# The sending facility of an entry that applies to every facility of the organization.
ANY_FACILITY = "*"


class CodeMapEntry(OrganizationScoped, Base):
    """One local test code of an HL7 v2 sender (MSH-4, or `*` for any) → our analyte code.

    Facility and code are stored upper-case and matched case-insensitively. An organization's
    entries take precedence over the deployed defaults (app/data/hl7_code_maps.yaml)."""

    __tablename__ = "hl7_code_map_entry"
    __table_args__ = (
        # Named: the conventional name would exceed PostgreSQL's 63 characters.
        UniqueConstraint(
            "organization_id", "sending_facility", "local_code", name="uq_hl7_code_map_entry_key"
        ),
        Index("ix_hl7_code_map_entry_org_created", "organization_id", "created_at", "id"),
    )

    sending_facility: Mapped[str] = mapped_column(String(100))
    local_code: Mapped[str] = mapped_column(String(50))
    analyte: Mapped[str] = mapped_column(String(50))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
