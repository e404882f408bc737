from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime, utcnow
from app.models.mixins import OrganizationScoped

# Where an input arrived: the HL7 v2 HTTP route, the MLLP listener, the FHIR Bundle endpoint,
# or the native JSON panel route.
CHANNELS = ("hl7-http", "hl7-mllp", "fhir", "json")
STATUSES = ("refused", "reprocessed", "discarded")


class RefusedInput(OrganizationScoped, Base):
    """An inbound message, Bundle or panel that was refused (HL7 AE / AR, FHIR or JSON 4xx),
    kept as received so it can be re-processed once a code map, range or patient is fixed.

    PHI: readable only by its organization's admin and integration roles, every access audited,
    deleted after ``MINERAL_REFUSED_INPUT_RETENTION_DAYS``. The same payload refused again on
    the same channel updates the open row (``attempts`` + 1) rather than adding one."""

    __tablename__ = "refused_input"
    __table_args__ = (
        Index("ix_refused_input_org_received", "organization_id", "received_at", "id"),
        Index("ix_refused_input_org_hash", "organization_id", "channel", "payload_hash"),
    )

    channel: Mapped[str] = mapped_column(String(20))
    content_type: Mapped[str] = mapped_column(String(200))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    response_status: Mapped[int] = mapped_column(Integer)
    # HL7: MSA-1 (AE / AR); FHIR batch: the failed entries' indexes; else empty.
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    principal_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sending_application: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sending_facility: Mapped[str | None] = mapped_column(String(200), nullable=True)
    control_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="refused")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_refused_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # What re-processing produced: panel / patient ids, the new answer's status.
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
