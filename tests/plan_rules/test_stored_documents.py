"""The typed rule-set document: stored sets load into `RuleSetDocument` and read back exactly
as stored, however old; new sets are stored with every default written out, as before.

`stored_rule_set_documents.json` holds the shipped default set exactly as two earlier releases
stored it: the first (before `pregnancy_unknown`, `ratio_window`, template `effects`,
`avoid_in_pregnancy` and eGFR age conditions existed) and the one before the document was
typed. A deployment that ran them has these rows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import JSONType, utcnow
from app.domain.plans.rules import RuleSetDocument
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.models.plan_rule_set import RuleSetDocumentType, stored_json
from app.plan_rules.service import default_document
from tests.builders import make_patient
from tests.conftest import Database
from tests.plans.builders import LOW_MAGNESIUM, draft_plan, post_recent_panel, supplements

STORED: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "stored_rule_set_documents.json").read_text("utf-8")
)
PATH = "/api/v1/plan-rule-sets"
# The column's processing is the same on both (the database tests below run on both).
DIALECT = SQLiteDialect()

# The table as the database has it, with the document as plain JSON: what an earlier release
# wrote, and what a test reads back without the typed column in between.
_RAW = sa.table(
    "plan_rule_set",
    sa.column("id", sa.Uuid()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("description", sa.Text()),
    sa.column("source", sa.Text()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("document", JSONType),
)


@pytest.mark.parametrize("stored", STORED, ids=["first-release", "before-typing"])
def test_a_stored_document_loads_and_is_written_back_unchanged(stored: dict[str, Any]) -> None:
    column = RuleSetDocumentType()

    document = column.process_result_value(stored, DIALECT)

    assert isinstance(document, RuleSetDocument)
    assert json.dumps(stored_json(document)) == json.dumps(stored)  # key order included
    assert column.process_bind_param(document, DIALECT) == stored


def test_a_set_from_the_first_release_gets_todays_cautious_defaults_when_used() -> None:
    document = RuleSetDocument.model_validate(STORED[0])

    assert "pregnancy_unknown" not in STORED[0]
    assert document.pregnancy_unknown.sexes == ["female"]
    assert document.ratio_window.hours == 24
    assert all(template.effects == [] for template in document.templates)


def test_an_unknown_key_in_a_stored_document_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValueError, match="surprise"):
        RuleSetDocumentType().process_result_value({**STORED[1], "surprise": 1}, DIALECT)


def _insert_raw(db: Database, document: dict[str, Any]) -> uuid.UUID:
    rule_set_id = uuid.uuid4()

    async def go(session: AsyncSession) -> None:
        await session.execute(
            sa.insert(_RAW).values(
                id=rule_set_id,
                organization_id=DEFAULT_ORGANIZATION_ID,
                name=document["name"],
                version=1,
                status="draft",
                description=document.get("description"),
                source=document["source"],
                created_at=utcnow(),
                document=document,
            )
        )

    db.in_session(go)
    return rule_set_id


def _raw_document(db: Database, rule_set_id: uuid.UUID) -> Any:
    async def go(session: AsyncSession) -> Any:
        query = sa.select(_RAW.c.document).where(_RAW.c.id == rule_set_id)
        return await session.scalar(query)

    return db.in_session(go)


def test_a_set_stored_by_the_first_release_is_served_as_stored_and_drafts_plans(
    client: TestClient, db: Database
) -> None:
    legacy = {**STORED[0], "name": "first-release"}
    rule_set_id = _insert_raw(db, legacy)

    read = client.get(f"{PATH}/{rule_set_id}")
    assert read.status_code == 200, read.text
    assert read.json()["document"] == legacy
    listed = client.get(PATH).json()["items"]
    assert rule_set_id in {uuid.UUID(item["id"]) for item in listed}
    activated = client.post(
        f"{PATH}/{rule_set_id}/activate", headers={"If-Match": read.headers["ETag"]}
    )
    assert activated.status_code == 200, activated.text

    patient = make_patient(client)
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    plan = draft_plan(client, patient)

    assert plan["rule_set"]["id"] == str(rule_set_id)
    assert supplements(plan, "magnesium")
    assert client.get(f"{PATH}/active").json()["document"] == legacy
    assert _raw_document(db, rule_set_id) == legacy  # nothing rewrote the row


def test_a_new_set_is_stored_with_every_default_written_out_and_shown_as_stored(
    client: TestClient, db: Database
) -> None:
    full = default_document().model_dump(mode="json", by_alias=True)
    sparse = {
        **{key: value for key, value in full.items() if key != "ratio_window"},
        "name": "sparse",
        "templates": [  # effects and note left out where they have their default
            {key: value for key, value in template.items() if value not in ([], None)}
            for template in full["templates"]
        ],
    }
    with_defaults = RuleSetDocument.model_validate(sparse).model_dump(mode="json", by_alias=True)

    response = client.post(PATH, json=sparse)

    assert response.status_code == 201, response.text
    shown = response.json()["document"]
    assert shown == with_defaults
    assert "ratio_window" in shown
    assert all("effects" in template for template in shown["templates"])
    assert any(template not in sparse["templates"] for template in shown["templates"])
    assert _raw_document(db, uuid.UUID(response.json()["id"])) == shown
    assert client.get(f"{PATH}/{response.json()['id']}").json()["document"] == shown
