"""identifier systems as uris

Revision ID: c5f7a9b1d3e2
Revises: b4e6f8a0c2d1
Create Date: 2026-12-02 11:30:00.000000+00:00

FHIR Identifier.system is an absolute URI. Patient identifiers stored with a bare name (an HL7
assigning-authority namespace such as `HOSP`, a native system such as `acme-lab`) are rewritten
to the default URN scheme `urn:mineral-labs:system:<percent-encoded name>`, the same mapping
every input path now applies (app/domain/identifier_systems.py), so lookups keep matching.
"""

from collections.abc import Sequence
from urllib.parse import quote, unquote

import sqlalchemy as sa
from alembic import op

from app.domain.identifier_systems import SYSTEM_PREFIX, is_absolute_uri

revision: str = "c5f7a9b1d3e2"
down_revision: str | None = "b4e6f8a0c2d1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_identifier = sa.table(
    "patient_identifier", sa.column("id", sa.Uuid()), sa.column("system", sa.String(255))
)


def _rewrite(convert: dict[str, str]) -> None:
    bind = op.get_bind()
    for old, new in convert.items():
        bind.execute(sa.update(_identifier).where(_identifier.c.system == old).values(system=new))


def upgrade() -> None:
    systems = op.get_bind().execute(sa.select(_identifier.c.system).distinct()).scalars()
    _rewrite(
        {
            name: SYSTEM_PREFIX + quote(name, safe="")
            for name in systems
            if not is_absolute_uri(name)
        }
    )


def downgrade() -> None:
    systems = op.get_bind().execute(sa.select(_identifier.c.system).distinct()).scalars()
    _rewrite(
        {
            uri: unquote(uri.removeprefix(SYSTEM_PREFIX))
            for uri in systems
            if uri.startswith(SYSTEM_PREFIX)
        }
    )
