"""partial indexes for the organization's list of flagged results

Revision ID: a7c9e1b3d5f0
Revises: f1b3d5e7a9c2
Create Date: 2026-12-03 17:00:00+00:00

GET /api/v1/results (issue 15, item 3) filters on ``interpretation IN (L, H, LL, HH) OR critical
OR possibly_critical`` (``flag=abnormal``) or ``critical OR possibly_critical``
(``flag=critical``, ``possibly-critical``). No index of f8c0d2e4a6b8 covers
``possibly_critical``, so PostgreSQL answered every page with a sequential scan of the whole
``result`` table: measured at 1M stored results, 355 ms and 118,000 buffers read per page
(EXPLAIN (ANALYZE, BUFFERS)), growing with the organization. Those two composite indexes also
put every result (flagged or not) into two more index entries on every insert.

Replaced by two partial indexes on (organization_id, collected_at, id), each holding only the
rows its flags select: a page walks the newest flagged rows backward and stops after ``limit``
(measured: 0.5 ms, 53 buffers at 1M). ``app.results.repository.flag_condition`` writes the
abnormal codes as literals, so the planner proves these predicates in generic plans too.

``CREATE INDEX`` (not CONCURRENTLY: migrations run in one transaction) holds a write lock on
``result`` while it scans the table: seconds at a million rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7c9e1b3d5f0"
down_revision: str | None = "f1b3d5e7a9c2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLAGGED = (
    "interpretation IN ('L', 'H', 'LL', 'HH') OR critical IS TRUE OR possibly_critical IS TRUE"
)
CRITICAL_ANY = "critical IS TRUE OR possibly_critical IS TRUE"


def upgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.create_index(
            "ix_result_org_flagged_collected",
            ["organization_id", "collected_at", "id"],
            postgresql_where=sa.text(FLAGGED),
            sqlite_where=sa.text(FLAGGED),
        )
        batch.create_index(
            "ix_result_org_critical_any_collected",
            ["organization_id", "collected_at", "id"],
            postgresql_where=sa.text(CRITICAL_ANY),
            sqlite_where=sa.text(CRITICAL_ANY),
        )
        batch.drop_index("ix_result_org_interpretation_collected")
        batch.drop_index("ix_result_org_critical_collected")


def downgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.create_index(
            "ix_result_org_critical_collected", ["organization_id", "critical", "collected_at"]
        )
        batch.create_index(
            "ix_result_org_interpretation_collected",
            ["organization_id", "interpretation", "collected_at"],
        )
        batch.drop_index("ix_result_org_critical_any_collected")
        batch.drop_index("ix_result_org_flagged_collected")
