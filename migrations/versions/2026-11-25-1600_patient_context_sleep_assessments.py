"""patient context and sleep assessments

Revision ID: 4a8c2d6e1f37
Revises: 3f7b1e9a0c26
Create Date: 2026-11-25 16:00:00.000000+00:00

The versioned clinical context the plan rules read (pregnancy, lactation, eGFR, medication
classes, conditions, diet, caffeine and alcohol), one row per version; and Insomnia Severity
Index questionnaires with their server-computed total and category.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "4a8c2d6e1f37"
down_revision: str | None = "3f7b1e9a0c26"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "patient_context",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("pregnant", sa.Boolean(), nullable=True),
        sa.Column("lactating", sa.Boolean(), nullable=True),
        sa.Column("egfr", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("egfr_measured_on", sa.Date(), nullable=True),
        sa.Column("medications", _json(), nullable=False),
        sa.Column("conditions", _json(), nullable=False),
        sa.Column("diet", sa.String(length=20), nullable=True),
        sa.Column("caffeine_servings_per_day", sa.Integer(), nullable=True),
        sa.Column("alcohol_drinks_per_week", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=300), nullable=False),
        sa.CheckConstraint(
            "diet IN ('omnivore', 'vegetarian', 'vegan', 'pescatarian')",
            name=op.f("ck_patient_context_diet"),
        ),
        sa.CheckConstraint(
            "alcohol_drinks_per_week BETWEEN 0 AND 100",
            name=op.f("ck_patient_context_alcohol_drinks_per_week"),
        ),
        sa.CheckConstraint(
            "caffeine_servings_per_day BETWEEN 0 AND 30",
            name=op.f("ck_patient_context_caffeine_servings_per_day"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_patient_context_version")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_patient_context_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_patient_context_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_context")),
        sa.UniqueConstraint(
            "patient_id", "version", name=op.f("uq_patient_context_patient_id_version")
        ),
    )
    op.create_table(
        "sleep_assessment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("instrument", sa.String(length=10), nullable=False),
        sa.Column("assessed_on", sa.Date(), nullable=False),
        sa.Column("timeline_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("items", _json(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=300), nullable=False),
        sa.CheckConstraint(
            "category IN ('none', 'subthreshold', 'moderate', 'severe')",
            name=op.f("ck_sleep_assessment_category"),
        ),
        sa.CheckConstraint("instrument IN ('ISI')", name=op.f("ck_sleep_assessment_instrument")),
        sa.CheckConstraint("total BETWEEN 0 AND 28", name=op.f("ck_sleep_assessment_total")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_sleep_assessment_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_sleep_assessment_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sleep_assessment")),
    )
    op.create_index(
        "ix_sleep_assessment_patient_timeline",
        "sleep_assessment",
        ["patient_id", "timeline_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_sleep_assessment_patient_timeline", table_name="sleep_assessment")
    op.drop_table("sleep_assessment")
    op.drop_table("patient_context")
