"""indexes for the organization's list of flagged results

Revision ID: f8c0d2e4a6b8
Revises: e7b9c1d3f5a7
Create Date: 2026-12-02 13:00:00+00:00

GET /api/v1/results lists an organization's abnormal or critical results, newest first. Two
composite indexes serve it: (organization_id, critical, collected_at) for `flag=critical` and
(organization_id, interpretation, collected_at) for `flag=abnormal` (PostgreSQL combines both
for the OR of the two).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f8c0d2e4a6b8"
down_revision: str | None = "e7b9c1d3f5a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.create_index(
            "ix_result_org_critical_collected", ["organization_id", "critical", "collected_at"]
        )
        batch.create_index(
            "ix_result_org_interpretation_collected",
            ["organization_id", "interpretation", "collected_at"],
        )


def downgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.drop_index("ix_result_org_interpretation_collected")
        batch.drop_index("ix_result_org_critical_collected")
