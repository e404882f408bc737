"""one foreign key from a result to its panel, organization and patient

Revision ID: b8d0f2a4c6e1
Revises: a7c9e1b3d5f0
Create Date: 2026-12-03 17:10:00+00:00

A result had three foreign keys: ``panel_id`` -> panel (CASCADE), ``organization_id`` ->
organization and ``patient_id`` -> patient (RESTRICT). PostgreSQL checks each with a trigger
per inserted row (a lookup and a FOR KEY SHARE lock of the parent row): measured at 29% of
the server's CPU for a results COPY (issue 15). They become ONE foreign key,
(panel_id, organization_id, patient_id) -> panel (id, organization_id, patient_id), ON DELETE
CASCADE as ``panel_id``'s was. The panel's own foreign keys to organization and patient
(RESTRICT) keep an organization or patient with panels, and so with results, from being
deleted; and a result whose organization or patient is not its panel's, which the three keys
let through, is now refused. Measured (bench: NDJSON batch of 20,000 panels, five A/B pairs on
one machine): the server's CPU per panel 0.176 -> 0.154 ms (median).

The key needs a UNIQUE constraint on panel (id, organization_id, patient_id) (one index entry
more per panel; ``id`` alone is the primary key, so it refuses nothing more). Nothing updates a
panel's organization or patient (the key has no ON UPDATE action: such an update would be
refused while the panel has results).

A stored result whose organization or patient is not its panel's makes the upgrade fail,
changing nothing: checked first on both databases (SQLite does not check the rows it copies
into a recreated table; PostgreSQL's ADD CONSTRAINT would refuse them too, less legibly).
Adding the key scans ``result`` under a lock that blocks writes to both tables: seconds at a
million results. SQLite: batch mode, both tables recreated (their rows copied as they are);
only with foreign keys off on the migration's connection (Alembic's; app.core.db's pragmas
are the service's), else dropping the old panel table would delete its results: refused.

The downgrade restores the three keys under their original names.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b8d0f2a4c6e1"
down_revision: str | None = "a7c9e1b3d5f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PANEL_KEY = "uq_panel_id_organization_id_patient_id"
RESULT_KEY = "fk_result_panel_id_organization_id_patient_id_panel"
# The three keys of the initial schema (d35fdc2046cf): name, column, table, ON DELETE.
SINGLE_KEYS = (
    ("fk_result_panel_id_panel", "panel_id", "panel", "CASCADE"),
    ("fk_result_organization_id_organization", "organization_id", "organization", "RESTRICT"),
    ("fk_result_patient_id_patient", "patient_id", "patient", "RESTRICT"),
)


def _refuse_sqlite_with_foreign_keys_on() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "recreating panel with foreign keys on would delete its results: "
            "run this migration on a connection without PRAGMA foreign_keys=ON"
        )


# Results the one key would refuse: no panel with their panel id, organization and patient.
_MISMATCHED = (
    "SELECT count(*) FROM result WHERE NOT EXISTS (SELECT 1 FROM panel"
    " WHERE panel.id = result.panel_id AND panel.organization_id = result.organization_id"
    " AND panel.patient_id = result.patient_id)"
)


def upgrade() -> None:
    _refuse_sqlite_with_foreign_keys_on()
    mismatched = op.get_bind().exec_driver_sql(_MISMATCHED).scalar()
    if mismatched:
        raise RuntimeError(
            f"{mismatched} stored result(s) name another organization or patient than their"
            " panel's (or no panel): resolve them before this migration; nothing was changed"
        )
    with op.batch_alter_table("panel") as batch:
        batch.create_unique_constraint(op.f(PANEL_KEY), ["id", "organization_id", "patient_id"])
    with op.batch_alter_table("result") as batch:
        batch.create_foreign_key(
            op.f(RESULT_KEY),
            "panel",
            ["panel_id", "organization_id", "patient_id"],
            ["id", "organization_id", "patient_id"],
            ondelete="CASCADE",
        )
        for name, _column, _table, _ondelete in SINGLE_KEYS:
            batch.drop_constraint(op.f(name), type_="foreignkey")


def downgrade() -> None:
    _refuse_sqlite_with_foreign_keys_on()
    with op.batch_alter_table("result") as batch:
        for name, column, table, ondelete in SINGLE_KEYS:
            batch.create_foreign_key(op.f(name), table, [column], ["id"], ondelete=ondelete)
        batch.drop_constraint(op.f(RESULT_KEY), type_="foreignkey")
    with op.batch_alter_table("panel") as batch:
        batch.drop_constraint(op.f(PANEL_KEY), type_="unique")
