from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow

BATCH_STATUSES = ("running", "completed", "failed")


class PanelBatch(Base):
    """One NDJSON batch: its counts, updated in each chunk's own transaction, so a caller (or
    an operator) sees progress while it runs and what was committed after it was cut off."""

    __tablename__ = "panel_batch"
    __table_args__ = (Index("ix_panel_batch_org_started", "organization_id", "started_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organization.id", ondelete="RESTRICT")
    )
    principal_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    lines: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    # Lines (stored or unchanged) whose panel has critical / possibly critical values.
    critical: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    possibly_critical: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
