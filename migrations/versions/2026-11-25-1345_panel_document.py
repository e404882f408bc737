"""panel document

Revision ID: 8d5f2b3c0a41
Revises: 7c4e1a2b9f30
Create Date: 2026-11-25 13:45:44.439716+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d5f2b3c0a41"
down_revision: str | None = "7c4e1a2b9f30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("panel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("document", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("panel", schema=None) as batch_op:
        batch_op.drop_column("document")
