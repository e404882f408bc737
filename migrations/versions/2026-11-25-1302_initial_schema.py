"""initial schema

Revision ID: d35fdc2046cf
Revises:
Create Date: 2026-11-25 13:02:22.224232+00:00

"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "d35fdc2046cf"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organization",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization")),
        sa.UniqueConstraint("name", name=op.f("uq_organization_name")),
    )
    op.create_table(
        "patient",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("sex", sa.String(length=16), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "sex IN ('female', 'male', 'other', 'unknown')", name=op.f("ck_patient_sex")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_patient_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient")),
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index(
            "ix_patient_org_created", ["organization_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "range_set",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=True),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("activated_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'retired')", name=op.f("ck_range_set_status")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_range_set_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_range_set")),
        sa.UniqueConstraint(
            "organization_id",
            "name",
            "version",
            name=op.f("uq_range_set_organization_id_name_version"),
        ),
    )
    with op.batch_alter_table("range_set", schema=None) as batch_op:
        batch_op.create_index(
            "uq_range_set_one_active",
            ["organization_id"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "panel",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("accession", sa.String(length=100), nullable=False),
        sa.Column("specimen", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("collected_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("performing_lab", sa.String(length=200), nullable=True),
        sa.Column("source_format", sa.String(length=10), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("range_set_id", sa.Uuid(), nullable=True),
        sa.Column("interpretation_version", sa.Integer(), nullable=False),
        sa.Column("interpreted_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("has_critical", sa.Boolean(), nullable=False),
        sa.Column(
            "ratios",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source_format IN ('json', 'fhir', 'hl7v2')", name=op.f("ck_panel_source_format")
        ),
        sa.CheckConstraint(
            "status IN ('preliminary', 'final', 'corrected', 'cancelled')",
            name=op.f("ck_panel_status"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_panel_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_panel_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["range_set_id"],
            ["range_set.id"],
            name=op.f("fk_panel_range_set_id_range_set"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_panel")),
        sa.UniqueConstraint(
            "organization_id",
            "source",
            "accession",
            name=op.f("uq_panel_organization_id_source_accession"),
        ),
    )
    with op.batch_alter_table("panel", schema=None) as batch_op:
        batch_op.create_index(
            "ix_panel_patient_collected", ["patient_id", "collected_at", "id"], unique=False
        )

    op.create_table(
        "patient_identifier",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_patient_identifier_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_patient_identifier_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_identifier")),
        sa.UniqueConstraint(
            "organization_id",
            "system",
            "value",
            name=op.f("uq_patient_identifier_organization_id_system_value"),
        ),
    )
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.create_index("ix_patient_identifier_patient", ["patient_id"], unique=False)

    op.create_table(
        "ratio_range",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("range_set_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=50), nullable=False),
        sa.Column("display", sa.String(length=200), nullable=False),
        sa.Column("numerator", sa.String(length=50), nullable=False),
        sa.Column("denominator", sa.String(length=50), nullable=False),
        sa.Column("low", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("high", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["range_set_id"],
            ["range_set.id"],
            name=op.f("fk_ratio_range_range_set_id_range_set"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratio_range")),
        sa.UniqueConstraint("range_set_id", "code", name=op.f("uq_ratio_range_range_set_id_code")),
    )
    op.create_table(
        "reference_range",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("range_set_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("analyte", sa.String(length=50), nullable=False),
        sa.Column("specimen", sa.String(length=20), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("age_min_years", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("age_max_years", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("low", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("high", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("critical_low", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("critical_high", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("absolute_low", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("absolute_high", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["range_set_id"],
            ["range_set.id"],
            name=op.f("fk_reference_range_range_set_id_range_set"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_range")),
    )
    with op.batch_alter_table("reference_range", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reference_range_set_analyte", ["range_set_id", "analyte"], unique=False
        )

    op.create_table(
        "panel_interpretation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("panel_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("range_set_id", sa.Uuid(), nullable=True),
        sa.Column("interpreted_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "results",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "ratios",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_panel_interpretation_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["panel_id"],
            ["panel.id"],
            name=op.f("fk_panel_interpretation_panel_id_panel"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["range_set_id"],
            ["range_set.id"],
            name=op.f("fk_panel_interpretation_range_set_id_range_set"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_panel_interpretation")),
        sa.UniqueConstraint(
            "panel_id", "version", name=op.f("uq_panel_interpretation_panel_id_version")
        ),
    )
    op.create_table(
        "result",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("panel_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("collected_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("analyte", sa.String(length=50), nullable=False),
        sa.Column("loinc", sa.String(length=20), nullable=True),
        sa.Column("code_sent", sa.String(length=100), nullable=True),
        sa.Column("value_text", sa.String(length=50), nullable=False),
        sa.Column("comparator", sa.String(length=2), nullable=True),
        sa.Column("value", app.core.db.DecimalType(precision=24, scale=8), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column(
            "canonical_value", app.core.db.DecimalType(precision=24, scale=8), nullable=False
        ),
        sa.Column("canonical_unit", sa.String(length=20), nullable=False),
        sa.Column("lab_range_text", sa.String(length=200), nullable=True),
        sa.Column("lab_range_low", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("lab_range_high", app.core.db.DecimalType(precision=24, scale=8), nullable=True),
        sa.Column("lab_flag", sa.String(length=10), nullable=True),
        sa.Column("interpretation", sa.String(length=3), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("interpretation_note", sa.Text(), nullable=True),
        sa.Column("lab_disagreement", sa.Text(), nullable=True),
        sa.Column(
            "reference_range",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.CheckConstraint(
            "comparator IN ('<', '<=', '>', '>=')", name=op.f("ck_result_comparator")
        ),
        sa.CheckConstraint(
            "interpretation IN ('L', 'N', 'H', 'LL', 'HH', 'IND')",
            name=op.f("ck_result_interpretation"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_result_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["panel_id"], ["panel.id"], name=op.f("fk_result_panel_id_panel"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_result_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result")),
        sa.UniqueConstraint("panel_id", "position", name=op.f("uq_result_panel_id_position")),
    )
    with op.batch_alter_table("result", schema=None) as batch_op:
        batch_op.create_index(
            "ix_result_patient_analyte_collected",
            ["patient_id", "analyte", "collected_at"],
            unique=False,
        )
    # The organization every record belongs to until access control assigns callers their own.
    organization = sa.table(
        "organization",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("created_at", app.core.db.UTCDateTime()),
    )
    op.bulk_insert(
        organization,
        [
            {
                "id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
                "name": "default",
                "created_at": datetime(2026, 11, 25, tzinfo=UTC),
            }
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("result", schema=None) as batch_op:
        batch_op.drop_index("ix_result_patient_analyte_collected")

    op.drop_table("result")
    op.drop_table("panel_interpretation")
    with op.batch_alter_table("reference_range", schema=None) as batch_op:
        batch_op.drop_index("ix_reference_range_set_analyte")

    op.drop_table("reference_range")
    op.drop_table("ratio_range")
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_identifier_patient")

    op.drop_table("patient_identifier")
    with op.batch_alter_table("panel", schema=None) as batch_op:
        batch_op.drop_index("ix_panel_patient_collected")

    op.drop_table("panel")
    with op.batch_alter_table("range_set", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_range_set_one_active",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.drop_table("range_set")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_org_created")

    op.drop_table("patient")
    op.drop_table("organization")
