"""panel_batch: counts of lines with critical and possibly critical values

Revision ID: d4f8a2c6e0b1
Revises: b7e2c4a91d30
Create Date: 2026-12-02 18:30:00+00:00

A batch's record says how many of its stored or unchanged lines carry a critical value, or a
value that may be critical (a comparator on the critical side), so a clinician-facing view can
surface them without reading every line's outcome. Existing batches start at 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d4f8a2c6e0b1"
down_revision: str | None = "b7e2c4a91d30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("panel_batch") as batch:
        batch.add_column(sa.Column("critical", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("possibly_critical", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("panel_batch") as batch:
        batch.drop_column("possibly_critical")
        batch.drop_column("critical")
