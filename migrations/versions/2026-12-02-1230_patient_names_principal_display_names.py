"""patient names and principal display names

Revision ID: e7b9c1d3f5a7
Revises: d6a8b0c2e4f6
Create Date: 2026-12-02 12:30:00+00:00

Patients get a name (FHIR HumanName: family, given names, text), searchable by a
case-insensitive prefix of the family name (index on lower(family_name); on PostgreSQL with
text_pattern_ops so `LIKE 'smi%'` can use it under any collation). API keys get a display name,
the human label plans record as author and approver (older keys fall back to their name).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7b9c1d3f5a7"
down_revision: str | None = "d6a8b0c2e4f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_patient_org_family_lower"


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("family_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("given_names", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("name_text", sa.String(255), nullable=True))
    with op.batch_alter_table("api_key") as batch:
        batch.add_column(sa.Column("display_name", sa.String(200), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX {_INDEX} ON patient (organization_id, lower(family_name) "
            "text_pattern_ops)"
        )
    else:
        op.create_index(_INDEX, "patient", ["organization_id", sa.text("lower(family_name)")])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="patient")
    with op.batch_alter_table("api_key") as batch:
        batch.drop_column("display_name")
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("name_text")
        batch.drop_column("given_names")
        batch.drop_column("family_name")
