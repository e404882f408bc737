"""hl7 message control ids

Revision ID: 6c0e4f8a3b59
Revises: 5b9d3e7f2a48
Create Date: 2026-11-25 17:00:00.000000+00:00

Accepted HL7 v2 messages by sender and MSH-10 control id, so a re-sent message is answered
without being processed again and a reused control id with other content is refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "6c0e4f8a3b59"
down_revision: str | None = "5b9d3e7f2a48"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_message",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("sending_application", sa.String(length=200), nullable=False),
        sa.Column("sending_facility", sa.String(length=200), nullable=False),
        sa.Column("control_id", sa.String(length=200), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "panel_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_hl7_message_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_message")),
        sa.UniqueConstraint(
            "organization_id",
            "sending_application",
            "sending_facility",
            "control_id",
            name="uq_hl7_message_sender_control_id",
        ),
    )


def downgrade() -> None:
    op.drop_table("hl7_message")
