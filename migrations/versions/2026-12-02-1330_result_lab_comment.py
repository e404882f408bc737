"""the lab's comments on a result

Revision ID: a3c5e7f9b1d2
Revises: f8c0d2e4a6b8
Create Date: 2026-12-02 13:30:00+00:00

result.lab_comment keeps what the lab wrote about a result: HL7 v2 NTE segments after its OBX
(and after its OBR), narrative OBX values (TX / FT) and coded ones that are not numbers
(CE / CWE). Served as `lab.comment` in the native API.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a3c5e7f9b1d2"
down_revision: str | None = "f8c0d2e4a6b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.add_column(sa.Column("lab_comment", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.drop_column("lab_comment")
