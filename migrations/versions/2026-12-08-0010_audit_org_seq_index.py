"""an (organization_id, seq) index on audit_event: an organization's trail, newest first

Revision ID: d4f6a8c0e2b4
Revises: c9e1a3b5d7f2
Create Date: 2026-12-08 00:10:00+00:00

``GET /api/v1/audit-events`` with no patient or principal filter reads
``WHERE organization_id = $1 ORDER BY seq DESC LIMIT $2``, and no index gave that order: the
generic plan a prepared statement keeps walked the primary key backwards, filtering on the
organization, so listing a small organization's trail read every newer event of every other
(measured: 702 buffers for two events behind 20,000 of another organization; 66,629 at 66,000
rows), and a custom plan sorted all of the organization's own events. With this index a page
reads its own rows (tests/test_generic_plans.py).

On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction: every PHI
read appends to this table, and a plain CREATE INDEX would hold their inserts for the whole
build on a large trail. An interrupted build leaves an invalid index, dropped first on re-run.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d4f6a8c0e2b4"
down_revision: str | None = "c9e1a3b5d7f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_audit_event_org_seq"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
            op.create_index(
                _INDEX, "audit_event", ["organization_id", "seq"], postgresql_concurrently=True
            )
        return
    op.create_index(_INDEX, "audit_event", ["organization_id", "seq"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(_INDEX, "audit_event", postgresql_concurrently=True)
        return
    op.drop_index(_INDEX, "audit_event")
