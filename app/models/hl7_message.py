from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime, utcnow
from app.models.mixins import OrganizationScoped


class Hl7Message(OrganizationScoped, Base):
    """An accepted HL7 v2 message, by its sender and MSH-10 control id.

    A re-sent message (same sender, same control id, same content) is answered with the same
    ACK without being processed again; the same control id with other content is refused.
    Only accepted (AA) messages are kept: a refused one stored nothing and may be sent again
    once the problem is fixed."""

    __tablename__ = "hl7_message"
    __table_args__ = (
        UniqueConstraint(
            "organization_id",
            "sending_application",
            "sending_facility",
            "control_id",
            name="uq_hl7_message_sender_control_id",
        ),
    )

    sending_application: Mapped[str] = mapped_column(String(200))
    sending_facility: Mapped[str] = mapped_column(String(200))
    control_id: Mapped[str] = mapped_column(String(200))
    payload_hash: Mapped[str] = mapped_column(String(64))
    panel_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
