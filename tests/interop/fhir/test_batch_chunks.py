"""A large FHIR batch Bundle commits in chunks of units (a Patient; a report with its
Observations): every entry keeps its own outcome, and a failure part-way loses at most the
chunk in hand. A transaction Bundle stays all or nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.interop import chunks
from app.interop.fhir import transaction
from app.interop.fhir.inbound import ReportUnit
from tests.audit.builders import rows_for
from tests.builders import MRN_SYSTEM
from tests.conftest import Database
from tests.interop.fhir.builders import (
    MINERAL_PANEL,
    Sent,
    bundle,
    new_accession,
    new_mrn,
    patient_entry,
    post_bundle,
    report_entries,
    response_bundle,
    statuses,
    urn,
)

BAD_PANEL = (Sent("2601-3", "0.8", "mmol/L"), Sent("99999-9", "1", "mg/dL"))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two units a chunk, so a Bundle of two Patients and four reports spans three chunks."""
    monkeypatch.setattr(chunks, "CHUNK_UNITS", 2)


def two_patients_four_reports(
    *, kind: str = "batch", bad_report: int | None = None
) -> tuple[str, list[str]]:
    """Units in order: Patient 1, Patient 2 (chunk 1), reports 1-2 (chunk 2), reports 3-4
    (chunk 3); each Patient with ifNoneExist, each report with an identifier, so a re-send
    stores nothing new. Returns the body and the reports' accessions."""
    urls = [urn(), urn()]
    entries = []
    for url in urls:
        mrn = new_mrn()
        entries.append(patient_entry(url, mrn=mrn, if_none_exist=f"identifier={MRN_SYSTEM}|{mrn}"))
    accessions = [new_accession() for _ in range(4)]
    for n, accession in enumerate(accessions):
        results = BAD_PANEL if n == bad_report else MINERAL_PANEL[:2]
        entries += report_entries(urls[n % 2], results, accession=accession)
    return bundle(entries, kind), accessions


def codes(answer: dict[str, Any]) -> list[str]:
    return [status.split()[0] for status in statuses(answer)]


# Entries: 0-1 Patients, then 2-4, 5-7, 8-10, 11-13: each report and its two Observations.
def report_codes(answer: dict[str, Any]) -> list[str]:
    return codes(answer)[2::3]


def test_a_batch_over_several_chunks_stores_every_entry_once_answered_in_order(
    client: TestClient, db: Database
) -> None:
    body, _ = two_patients_four_reports()
    request_id = f"fhir-chunks-{uuid.uuid4().hex}"

    answer = response_bundle(post_bundle(client, body, headers={"X-Request-ID": request_id}))

    assert answer["type"] == "batch-response"
    assert codes(answer) == ["201"] * 14
    locations = [entry["response"]["location"].split("/")[0] for entry in answer["entry"]]
    assert locations == ["Patient"] * 2 + ["DiagnosticReport", "Observation", "Observation"] * 4
    counts = db.counts()
    assert (counts["patient"], counts["panel"], counts["result"]) == (2, 4, 8)
    # One audit row per record, committed with its chunk, besides the request's own row.
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    records = sorted(
        (row["resource_type"], row["action"]) for row in rows if row["resource_type"] != "bundle"
    )
    assert records == [("panel", "create")] * 4 + [("patient", "create")] * 2
    assert all(row["outcome"] == "success" for row in rows)

    again = response_bundle(post_bundle(client, body))

    assert codes(again) == ["200"] * 14
    assert db.counts() == counts


def test_a_bad_report_in_the_second_chunk_undoes_only_itself(
    client: TestClient, db: Database
) -> None:
    # Report 2 is the second unit of chunk 2: report 1 beside it, chunk 1 before it and
    # chunk 3 after it are all stored.
    body, _ = two_patients_four_reports(bad_report=1)

    answer = response_bundle(post_bundle(client, body))

    assert codes(answer)[:2] == ["201", "201"]
    assert report_codes(answer) == ["201", "422", "201", "201"]
    assert "99999-9" in answer["entry"][5]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert (db.count("patient"), db.count("panel"), db.count("result")) == (2, 3, 6)


def fail_at(monkeypatch: pytest.MonkeyPatch, accession: str) -> None:
    """A defect while the report with ``accession`` is stored: the request fails (500)."""
    apply_report = transaction._apply_report

    async def apply_or_fail(
        session: Any, organization_id: uuid.UUID, unit: ReportUnit, patient_ids: Any
    ) -> Any:
        if unit.fields["accession"] == accession:
            raise RuntimeError("a defect")
        return await apply_report(session, organization_id, unit, patient_ids)

    monkeypatch.setattr(transaction, "_apply_report", apply_or_fail)


def test_a_failure_part_way_keeps_the_chunks_committed_before_it(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, accessions = two_patients_four_reports()
    fail_at(monkeypatch, accessions[3])
    request_id = f"fhir-crash-{uuid.uuid4().hex}"

    failed = post_bundle(client, body, headers={"X-Request-ID": request_id})

    assert failed.status_code == 500
    # Chunks 1 (the Patients) and 2 (reports 1-2) committed, with their audit rows; report 3
    # shared the failed chunk 3 and is not stored.
    assert (db.count("patient"), db.count("panel")) == (2, 2)
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    committed = [row for row in rows if row["outcome"] == "success"]
    assert sorted(row["resource_type"] for row in committed) == ["panel"] * 2 + ["patient"] * 2

    monkeypatch.undo()
    monkeypatch.setattr(chunks, "CHUNK_UNITS", 2)
    resent = response_bundle(post_bundle(client, body))

    assert codes(resent)[:2] == ["200", "200"]
    assert report_codes(resent) == ["200", "200", "201", "201"]
    assert (db.count("patient"), db.count("panel"), db.count("result")) == (2, 4, 8)


def test_a_transaction_bundle_is_never_committed_in_chunks(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, accessions = two_patients_four_reports(kind="transaction")
    fail_at(monkeypatch, accessions[3])
    before = db.counts()

    assert post_bundle(client, body).status_code == 500

    assert db.counts() == before
