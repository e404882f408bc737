"""no mass LOINC on zinc results reported in umol/L

Revision ID: 50868c101b58
Revises: a3c5e7f9b1d2
Create Date: 2026-12-02 14:00:00+00:00

Data only. Each stored result.loinc must match its unit's property (app/domain/catalog.py
loinc_for): the catalog has no verified molar LOINC for zinc, so a zinc result in umol/L has
none, where it used to fall back to 5763-8 (Zinc [Mass/volume]), which a consumer reading by
code misreads ~6.5x. Zinc is the only analyte that accepts a molar unit without a molar code.
Downgrade restores the former fallback code.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "50868c101b58"
down_revision: str | None = "a3c5e7f9b1d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RESULT = sa.table(
    "result",
    sa.column("analyte", sa.String),
    sa.column("unit", sa.String),
    sa.column("loinc", sa.String),
)


def upgrade() -> None:
    op.execute(
        _RESULT.update()
        .where(_RESULT.c.analyte == "zinc", _RESULT.c.unit == "umol/L", _RESULT.c.loinc == "5763-8")
        .values(loinc=None)
    )


def downgrade() -> None:
    op.execute(
        _RESULT.update()
        .where(_RESULT.c.analyte == "zinc", _RESULT.c.unit == "umol/L", _RESULT.c.loinc.is_(None))
        .values(loinc="5763-8")
    )
