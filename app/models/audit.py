from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, SmallInteger, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
AuditSeq = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One access to (or denied attempt on) patient data, or a change of who may see it.
    Append-only: the database refuses UPDATE and DELETE, and each row's hash is an HMAC (keyed
    with a secret the database never holds) covering the previous row's hash (a keyed chain)."""

    __tablename__ = "audit_event"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'denied', 'error')", name="outcome"),
        Index("ix_audit_event_org_patient", "organization_id", "patient_id", "seq"),
        Index("ix_audit_event_org_principal", "organization_id", "principal_id", "seq"),
        Index("ix_audit_event_org_occurred", "organization_id", "occurred_at"),
        # The organization's trail, newest first, unfiltered (migration d4f6a8c0e2b4).
        Index("ix_audit_event_org_seq", "organization_id", "seq"),
        # The tail of one chain (app.audit.repository: the chain is striped).
        Index("ix_audit_event_chain_seq", "chain", "seq"),
    )

    seq: Mapped[int] = mapped_column(AuditSeq, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    principal_id: Mapped[str | None] = mapped_column(String(300))
    principal_kind: Mapped[str | None] = mapped_column(String(20))
    role: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(20))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[str | None] = mapped_column(String(100))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    outcome: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int | None]
    method: Mapped[str | None] = mapped_column(String(10))
    path: Mapped[str | None] = mapped_column(String(500))
    request_id: Mapped[str | None] = mapped_column(String(128))
    client_address: Mapped[str | None] = mapped_column(String(100))
    # Which of the striped chains (0-63) the row links into; prev_hash is that chain's
    # previous row. Not hashed: moving a row breaks the links of both chains.
    chain: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
