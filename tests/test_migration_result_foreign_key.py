"""Migration b8d0f2a4c6e1 (a result's one foreign key to its panel, organization and patient)
never reinterprets a stored result: one whose patient is not its panel's stops the upgrade,
on SQLite (which would copy it into the recreated table unchecked) and on PostgreSQL, and
nothing is changed; once it is resolved the upgrade runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import to_async_url
from app.models.organization import DEFAULT_ORGANIZATION_ID
from tests.conftest import alembic_config

REVISION = "b8d0f2a4c6e1"


def _execute(url: str, *statements: str) -> list[object]:
    async def go() -> list[object]:
        engine = create_async_engine(to_async_url(url))
        try:
            async with engine.begin() as conn:
                found: list[object] = []
                for sql in statements:
                    result = await conn.execute(text(sql))
                    found.append(result.scalar() if result.returns_rows else None)
                return found
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_result_of_another_patient_than_its_panels_stops_the_upgrade(
    backend: str, scratch_database: Callable[[str], str]
) -> None:
    url = scratch_database(backend)
    config = alembic_config(url)
    before = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)

    def literal(value: uuid.UUID) -> str:  # Uuid: native on PostgreSQL, hex on SQLite
        return f"'{value.hex if backend == 'sqlite' else value}'"

    org = literal(DEFAULT_ORGANIZATION_ID)
    patient, other, panel, row = (literal(uuid.uuid4()) for _ in range(4))
    now = "CURRENT_TIMESTAMP"
    _execute(
        url,
        *(
            "INSERT INTO patient (id, organization_id, sex, version, created_at, updated_at) "
            f"VALUES ({p}, {org}, 'female', 1, {now}, {now})"
            for p in (patient, other)
        ),
        "INSERT INTO panel (id, organization_id, patient_id, source, accession, specimen, "
        "status, collected_at, source_format, payload_hash, interpretation_version, "
        "interpreted_at, has_critical, has_possible_critical, ratios, created_at) "
        f"VALUES ({panel}, {org}, {patient}, 'lab', 'A-1', 'serum', 'final', {now}, 'json', "
        f"'x', 1, {now}, false, false, '[]', {now})",
        # The three single keys let this through: the patient exists, just not the panel's.
        "INSERT INTO result (id, organization_id, panel_id, patient_id, position, "
        "collected_at, analyte, value_text, value, unit, canonical_value, canonical_unit, "
        "critical, possibly_critical, status, interpretation_status) "
        f"VALUES ({row}, {org}, {panel}, {other}, 1, {now}, 'magnesium', '1.6', 1.6, "
        "'mg/dL', 0.66, 'mmol/L', false, false, 'final', 'interpreted')",
    )

    with pytest.raises(RuntimeError, match="1 stored result"):
        command.upgrade(config, REVISION)

    version, kept_patient = _execute(
        url,
        "SELECT version_num FROM alembic_version",
        f"SELECT patient_id FROM result WHERE id = {row}",
    )
    assert version == before
    assert str(kept_patient).replace("-", "") == other.strip("'").replace("-", "")

    _execute(url, f"UPDATE result SET patient_id = {patient} WHERE id = {row}")
    command.upgrade(config, REVISION)
    assert _execute(url, "SELECT count(*) FROM result") == [1]
