"""panel status amended

Revision ID: b4e6f8a0c2d1
Revises: a8c3d5e7f901
Create Date: 2026-12-02 11:00:00+00:00

A panel can be `amended` (FHIR DiagnosticReport.status), beside `corrected`: both are
corrections of a panel stored earlier under the same source + accession. The downgrade stores
amended panels as `corrected`, the nearest status the older constraint allows.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b4e6f8a0c2d1"
down_revision: str | None = "a8c3d5e7f901"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH_AMENDED = "status IN ('preliminary', 'final', 'corrected', 'amended', 'cancelled')"
_WITHOUT_AMENDED = "status IN ('preliminary', 'final', 'corrected', 'cancelled')"


def upgrade() -> None:
    with op.batch_alter_table("panel") as batch:
        batch.drop_constraint(op.f("ck_panel_status"), type_="check")
        batch.create_check_constraint("status", _WITH_AMENDED)


def downgrade() -> None:
    op.execute("UPDATE panel SET status = 'corrected' WHERE status = 'amended'")
    with op.batch_alter_table("panel") as batch:
        batch.drop_constraint(op.f("ck_panel_status"), type_="check")
        batch.create_check_constraint("status", _WITHOUT_AMENDED)
