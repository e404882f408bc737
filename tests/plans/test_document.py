"""The typed plan document: stored versions load into it and are written back unchanged.

`stored_plan_documents.json` holds documents exactly as the service wrote them before the
document was typed (captured from the test suite's plans: overrides, acknowledged results, an
acknowledged review, a regenerated plan, ratios, sleep, eGFR). Each must load and serialize to
the same JSON, key order included, so no stored version and no API response changes shape."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Uuid, bindparam, text

from app.domain.plans.document import PlanDocument
from tests.builders import make_patient
from tests.conftest import Database
from tests.plans.builders import (
    LOW_MAGNESIUM,
    WALK_BY_HAND,
    draft_plan,
    editable,
    items,
    post_recent_panel,
    put_items,
    set_context,
    set_status,
)

STORED = json.loads((Path(__file__).parent / "stored_plan_documents.json").read_text())


@pytest.mark.parametrize("stored", STORED)
def test_a_document_stored_before_typing_loads_and_is_written_back_unchanged(
    stored: dict[str, Any],
) -> None:
    document = PlanDocument.model_validate(stored)

    assert json.dumps(document.model_dump(mode="json")) == json.dumps(stored)


def test_keys_written_only_when_they_apply_stay_absent() -> None:
    optional = ("regenerated_from", "acknowledged_results")
    plain = next(d for d in STORED if not any(key in d for key in optional))
    dumped = PlanDocument.model_validate(plain).model_dump(mode="json")

    assert not {"regenerated_from", "acknowledged_results", "review_acknowledged"} & set(dumped)
    assert "note" in dumped  # null, as it has always been stored
    assert all(None not in item.values() for item in dumped["items"])


def test_a_document_from_before_drafting_findings_and_fired_rules_still_loads() -> None:
    old = {k: v for k, v in STORED[0].items() if k not in ("drafting_findings", "fired_rules")}

    document = PlanDocument.model_validate(old)

    assert document.drafting_findings == ()
    assert document.fired_rules == ()


def test_an_unknown_key_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValidationError):
        PlanDocument.model_validate({**STORED[0], "surprise": 1})


def test_the_stored_document_is_the_one_the_api_shows(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    set_context(client, patient, pregnant=False)
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    plan = draft_plan(client, patient, note="first visit")
    edited = put_items(client, plan, [*(editable(i) for i in items(plan)), WALK_BY_HAND])
    set_status(client, edited, "active")

    async def stored(session: Any) -> list[Any]:
        query = text(
            "SELECT document FROM treatment_plan_version WHERE plan_id = :id ORDER BY version"
        ).bindparams(bindparam("id", type_=Uuid))
        rows = await session.execute(query, {"id": uuid.UUID(plan["id"])})
        return [row[0] for row in rows]

    raw = [json.loads(d) if isinstance(d, str) else d for d in db.in_session(stored)]
    assert len(raw) == 3
    for version, document in enumerate(raw, start=1):
        shown = client.get(f"/api/v1/plans/{plan['id']}/versions/{version}").json()["document"]
        assert shown == document
        assert PlanDocument.model_validate(document).model_dump(mode="json") == document
    current = client.get(f"/api/v1/plans/{plan['id']}").json()
    assert current["basis"] == raw[-1]["basis"]
    assert current["note"] == "first visit"
    assert [i["id"] for i in items(current)] == [i["id"] for i in raw[-1]["items"]]
