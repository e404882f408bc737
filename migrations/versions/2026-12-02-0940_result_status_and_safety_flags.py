"""result status and safety flags

Revision ID: 7d1a2b3c4e5f
Revises: 6c0e4f8a3b59
Create Date: 2026-12-02 09:40:00.000000+00:00

Per-result status (FHIR Observation.status / HL7 OBX-11), "possibly critical" for comparator
values that may lie beyond a critical limit, an explicit interpretation status
(`no-reference-range`), the identifier type used for patient matching (HL7 table 0203), and the
reason a plan must be reviewed (a result it rests on was withdrawn or corrected).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d1a2b3c4e5f"
down_revision: str | None = "6c0e4f8a3b59"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RESULT_STATUS = (
    "status IN ('preliminary', 'final', 'corrected', 'amended', 'cancelled', 'entered-in-error')"
)
_INTERPRETATION_STATUS = "interpretation_status IN ('interpreted', 'no-reference-range')"


def upgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.add_column(
            sa.Column("possibly_critical", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column("status", sa.String(length=20), server_default="final", nullable=False)
        )
        batch.add_column(
            sa.Column(
                "interpretation_status",
                sa.String(length=20),
                server_default="interpreted",
                nullable=False,
            )
        )
        batch.create_check_constraint("status", _RESULT_STATUS)
        batch.create_check_constraint("interpretation_status", _INTERPRETATION_STATUS)
    # Results stored before this revision with no range applied said so only in their note.
    op.execute(
        "UPDATE result SET interpretation_status = 'no-reference-range' "
        "WHERE interpretation IS NULL"
    )
    with op.batch_alter_table("panel") as batch:
        batch.add_column(
            sa.Column(
                "has_possible_critical", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("patient_identifier") as batch:
        batch.add_column(sa.Column("type", sa.String(length=10), nullable=True))
    with op.batch_alter_table("treatment_plan") as batch:
        batch.add_column(sa.Column("review_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("treatment_plan") as batch:
        batch.drop_column("review_reason")
    with op.batch_alter_table("patient_identifier") as batch:
        batch.drop_column("type")
    with op.batch_alter_table("panel") as batch:
        batch.drop_column("has_possible_critical")
    with op.batch_alter_table("result") as batch:
        batch.drop_constraint(op.f("ck_result_interpretation_status"), type_="check")
        batch.drop_constraint(op.f("ck_result_status"), type_="check")
        batch.drop_column("interpretation_status")
        batch.drop_column("status")
        batch.drop_column("possibly_critical")
