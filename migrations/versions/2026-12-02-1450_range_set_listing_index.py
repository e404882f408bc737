"""the listing index on range_set, as plan_rule_set has it

Revision ID: a3d5f7b9c1e4
Revises: c7e1f3a5b9d2
Create Date: 2026-12-02 14:50:00+00:00

Both set tables now take their constraints from one mixin (app/kit/versioned_sets/model.py); the
only difference left between them was the (organization_id, created_at, id) index the
newest-first keyset list reads, which range_set lacked.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a3d5f7b9c1e4"
down_revision: str | None = "c7e1f3a5b9d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("range_set") as batch:
        batch.create_index("ix_range_set_org_created", ["organization_id", "created_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("range_set") as batch:
        batch.drop_index("ix_range_set_org_created")
