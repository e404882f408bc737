"""refused inputs

Revision ID: d6a8b0c2e4f6
Revises: c5f7a9b1d3e2
Create Date: 2026-12-02 12:00:00.000000+00:00

Inbound HL7 v2 messages, FHIR Bundles and JSON panels that were refused (AE / AR, 4xx), kept
per organization with their raw payload so they can be re-processed after a fix.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "d6a8b0c2e4f6"
down_revision: str | None = "c5f7a9b1d3e2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "refused_input",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("principal_id", sa.String(length=200), nullable=True),
        sa.Column("sending_application", sa.String(length=200), nullable=True),
        sa.Column("sending_facility", sa.String(length=200), nullable=True),
        sa.Column("control_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("received_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_refused_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("result", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_refused_input_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refused_input")),
    )
    with op.batch_alter_table("refused_input") as batch_op:
        batch_op.create_index(
            "ix_refused_input_org_received", ["organization_id", "received_at", "id"]
        )
        batch_op.create_index(
            "ix_refused_input_org_hash", ["organization_id", "channel", "payload_hash"]
        )


def downgrade() -> None:
    with op.batch_alter_table("refused_input") as batch_op:
        batch_op.drop_index("ix_refused_input_org_hash")
        batch_op.drop_index("ix_refused_input_org_received")
    op.drop_table("refused_input")
