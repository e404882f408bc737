"""The batch's chunk-wide statements (app.panels.bulk_repository: unnest arrays on PostgreSQL)
store the very rows single POSTs store: the same NDJSON sent as one batch in one organization
and line by line as single POSTs in another, compared column by column (ids, the ids a value
derives from, and times aside); both databases."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.panels import corrections
from tests.api.access import key_header
from tests.builders import MRN_SYSTEM, result
from tests.conftest import DEFAULT_ORGANIZATION, OTHER_ORGANIZATION, Database

# Columns that are ids, derive from ids (the payload hash names the patient id, the range set
# is each organization's own) or are times of writing.
VOLATILE = {
    "id",
    "organization_id",
    "patient_id",
    "panel_id",
    "range_set_id",
    "payload_hash",
    "created_at",
    "interpreted_at",
    "document",
}
JSON_COLUMNS = {"ratios", "reference_range"}
DOCUMENT_VOLATILE = {"created_at", "interpreted_at"}

PATIENTS = [("TWIN-A", "female", "1981-04-12"), ("TWIN-B", "male", None)]


def _lines() -> list[dict[str, Any]]:
    def panel(mrn: str, accession: str, results: list[dict[str, Any]], **extra: Any) -> Any:
        return {
            "patient": {"identifier": {"system": MRN_SYSTEM, "value": mrn}},
            "source": "twin-lab",
            "accession": accession,
            "collected_at": "2026-11-20T08:00:00Z",
            "results": results,
            **extra,
        }

    return [
        panel(
            "TWIN-A",
            "T-1",
            [
                result("magnesium", "0.62", "mmol/L", flag="L", reference_range={"text": "0.7-1"}),
                result("calcium", "13.5", "mg/dL"),  # critically high
                result("zinc", "<5", "ug/dL"),  # comparator
                result("copper", "95", "ug/dL", status="preliminary", lab_comment="haemolysed"),
            ],
            performing_lab="Acme",
            received_at="2026-11-20T09:30:00+01:00",
        ),
        panel("TWIN-A", "T-2", [result("magnesium", "1.9", "mg/dL")], status="preliminary"),
        # No birth date: no reference range applies, critical limits still do.
        panel(
            "TWIN-B", "T-3", [result("magnesium", "0.80", "mmol/L"), result("zinc", 70, "ug/dL")]
        ),
        panel(
            "TWIN-B", "T-4", [result("calcium", "2.1", "mmol/L"), result("copper", 1.1e2, "ug/dL")]
        ),
    ]


def _per_line_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = corrections.ingest_or_correct

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["data"].accession)
        return await original(*args, **kwargs)

    monkeypatch.setattr(corrections, "ingest_or_correct", counted)
    return calls


def _stored(db: Database, org: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The organization's panel and result rows as the driver returns them, by accession and
    position."""

    async def go(session: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        params = {"org": org}
        panels = await session.execute(
            text(
                "SELECT panel.* FROM panel JOIN organization o ON o.id = panel.organization_id"
                " WHERE o.name = :org ORDER BY panel.accession"
            ),
            params,
        )
        results = await session.execute(
            text(
                "SELECT p.accession, result.* FROM result"
                " JOIN panel p ON p.id = result.panel_id"
                " JOIN organization o ON o.id = result.organization_id"
                " WHERE o.name = :org ORDER BY p.accession, result.position"
            ),
            params,
        )
        return [dict(r._mapping) for r in panels], [dict(r._mapping) for r in results]

    return db.in_session(go)


def _ids_out(value: Any) -> Any:
    """``value`` with every id in it (a UUID, as text) replaced by one placeholder."""
    if isinstance(value, dict):
        return {k: _ids_out(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ids_out(v) for v in value]
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            return value
        return "<id>"
    return value


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    # (value, type): a JSON null and an SQL NULL, or text and a number, must not pass as equal.
    # JSON columns hold ids too (the range set and row a result's range snapshot names).
    return {
        k: (_ids_out(json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v), type(v))
        for k, v in row.items()
        if k not in VOLATILE
    }


def _document(row: dict[str, Any]) -> Any:
    document = json.loads(str(row["document"]))
    return _ids_out({k: v for k, v in document.items() if k not in DOCUMENT_VOLATILE})


def test_a_batch_stores_the_same_rows_as_single_posts_column_by_column(
    client: TestClient,
    db: Database,
    api_keys: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orgs = {
        "batch": key_header(api_keys, DEFAULT_ORGANIZATION, "integration"),
        "single": key_header(api_keys, OTHER_ORGANIZATION, "integration"),
    }
    for headers in orgs.values():
        for mrn, sex, birth_date in PATIENTS:
            body = {"identifiers": [{"system": MRN_SYSTEM, "value": mrn}], "sex": sex}
            if birth_date:
                body["birth_date"] = birth_date
            created = client.post("/api/v1/patients", json=body, headers=headers)
            assert created.status_code == 201, created.text
    lines = _lines()
    for line in lines:
        single = client.post("/api/v1/panels", json=line, headers=orgs["single"])
        assert single.status_code == 201, single.text
    calls = _per_line_calls(monkeypatch)

    batch = client.post(
        "/api/v1/panel-batches",
        content=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
        headers={**orgs["batch"], "content-type": "application/x-ndjson"},
    )

    assert batch.status_code == 200, batch.text
    outcomes = [json.loads(line) for line in batch.text.splitlines()][:-1]
    assert [(o["outcome"], o["status"]) for o in outcomes] == [("stored", 201)] * len(lines)
    assert calls == []  # every line took the chunk-wide statements
    batch_panels, batch_results = _stored(db, DEFAULT_ORGANIZATION)
    single_panels, single_results = _stored(db, OTHER_ORGANIZATION)
    assert len(batch_panels) == len(single_panels) == len(lines)
    assert len(batch_results) == len(single_results) == 9
    assert [_comparable(r) for r in batch_panels] == [_comparable(r) for r in single_panels]
    assert [_comparable(r) for r in batch_results] == [_comparable(r) for r in single_results]
    assert [_document(r) for r in batch_panels] == [_document(r) for r in single_panels]
    # The volatile columns are still the right kind of value: aware times, ids of the row's own.
    for panel in batch_panels:
        assert panel["document"] is not None
        assert str(uuid.UUID(str(panel["id"]))) in str(panel["document"])
    by_panel = {uuid.UUID(str(p["id"])) for p in batch_panels}
    assert {uuid.UUID(str(r["panel_id"])) for r in batch_results} == by_panel
