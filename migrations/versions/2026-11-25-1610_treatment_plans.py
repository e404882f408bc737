"""treatment plans and plan rule sets

Revision ID: 5b9d3e7f2a48
Revises: 4a8c2d6e1f37
Create Date: 2026-11-25 16:10:00.000000+00:00

Plan rule sets (versioned, immutable documents; one active per organization), treatment plans
(current state) and their versions (one row per change).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "5b9d3e7f2a48"
down_revision: str | None = "4a8c2d6e1f37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "plan_rule_set",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("activated_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'retired')", name=op.f("ck_plan_rule_set_status")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_plan_rule_set_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_rule_set")),
        sa.UniqueConstraint(
            "organization_id",
            "name",
            "version",
            name=op.f("uq_plan_rule_set_organization_id_name_version"),
        ),
    )
    with op.batch_alter_table("plan_rule_set", schema=None) as batch_op:
        batch_op.create_index(
            "uq_plan_rule_set_one_active",
            ["organization_id"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )
        batch_op.create_index(
            "ix_plan_rule_set_org_created", ["organization_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "treatment_plan",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule_set_id", sa.Uuid(), nullable=False),
        sa.Column("replaces_plan_id", sa.Uuid(), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("approver", sa.String(length=200), nullable=True),
        sa.Column("next_retest_date", sa.Date(), nullable=True),
        sa.Column("document", JSON, nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("activated_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'completed', 'revoked', 'entered-in-error')",
            name=op.f("ck_treatment_plan_status"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_treatment_plan_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_treatment_plan_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["rule_set_id"],
            ["plan_rule_set.id"],
            name=op.f("fk_treatment_plan_rule_set_id_plan_rule_set"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["replaces_plan_id"],
            ["treatment_plan.id"],
            name=op.f("fk_treatment_plan_replaces_plan_id_treatment_plan"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment_plan")),
    )
    with op.batch_alter_table("treatment_plan", schema=None) as batch_op:
        batch_op.create_index(
            "ix_treatment_plan_patient_created", ["patient_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_treatment_plan_org_status_created",
            ["organization_id", "status", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_treatment_plan_org_retest",
            ["organization_id", "status", "next_retest_date"],
            unique=False,
        )

    op.create_table(
        "treatment_plan_version",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("change", sa.String(length=30), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("changed_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_treatment_plan_version_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["treatment_plan.id"],
            name=op.f("fk_treatment_plan_version_plan_id_treatment_plan"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment_plan_version")),
        sa.UniqueConstraint(
            "plan_id", "version", name=op.f("uq_treatment_plan_version_plan_id_version")
        ),
    )


def downgrade() -> None:
    op.drop_table("treatment_plan_version")
    with op.batch_alter_table("treatment_plan", schema=None) as batch_op:
        batch_op.drop_index("ix_treatment_plan_org_retest")
        batch_op.drop_index("ix_treatment_plan_org_status_created")
        batch_op.drop_index("ix_treatment_plan_patient_created")
    op.drop_table("treatment_plan")
    with op.batch_alter_table("plan_rule_set", schema=None) as batch_op:
        batch_op.drop_index("ix_plan_rule_set_org_created")
        batch_op.drop_index("uq_plan_rule_set_one_active")
    op.drop_table("plan_rule_set")
