"""hl7 code maps

Revision ID: 3f7b1e9a0c26
Revises: 9e6a3c4d1b52
Create Date: 2026-11-25 14:52:13.486247+00:00

Per organization: an HL7 v2 sender's local test codes (per sending facility, `*` for any)
mapped to our analytes, managed through /api/v1/code-maps.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "3f7b1e9a0c26"
down_revision: str | None = "9e6a3c4d1b52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_code_map_entry",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("sending_facility", sa.String(length=100), nullable=False),
        sa.Column("local_code", sa.String(length=50), nullable=False),
        sa.Column("analyte", sa.String(length=50), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_hl7_code_map_entry_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_code_map_entry")),
        sa.UniqueConstraint(
            "organization_id",
            "sending_facility",
            "local_code",
            name=op.f("uq_hl7_code_map_entry_key"),
        ),
    )
    op.create_index(
        "ix_hl7_code_map_entry_org_created",
        "hl7_code_map_entry",
        ["organization_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_hl7_code_map_entry_org_created", table_name="hl7_code_map_entry")
    op.drop_table("hl7_code_map_entry")
