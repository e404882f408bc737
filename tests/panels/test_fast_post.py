"""The one-statement POST /api/v1/panels (issue 15, ADR 0007): on PostgreSQL a panel for a
patient this process has seen is written with its idempotency record and audit row by ONE
statement; on SQLite by one short write transaction (one checking SELECT, then the inserts).
Same answers byte for byte, same stored rows, and every unusual case (a stale patient,
identifier or range set, a key or accession already stored, concurrent senders) is answered by
the plain path."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Uuid, bindparam, event, text

from app.audit import service as audit_service
from app.ops import metrics
from app.panels import known_patients
from tests.builders import by_identifier, expect_problem, make_patient, panel_body, result
from tests.conftest import Database

RESULTS = [
    result("magnesium", "0.62", "mmol/L", flag="L"),
    result("calcium", "9.1", "mg/dL"),
    result("iron", "40", "ug/dL"),
]
FAST = "SELECT ingest_panel_once("
# SQLite's one transaction: the check (patient, key, accession, audit tail), then the inserts.
SQLITE_FAST = (
    "BEGIN IMMEDIATE",
    "SELECT patient.id, patient.sex, patient.birth_date",
    "INSERT INTO idempotency_record ",
    "INSERT INTO panel ",
    "INSERT INTO result ",
    "INSERT INTO audit_event ",
)


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    engine = db.app.state.engine.sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The credential's own lookup (cached, refreshed now and then) and its throttled
        # last-used touch are authentication's, not the POST's.
        if "FROM api_key" not in statement and not statement.startswith("UPDATE api_key"):
            seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _postgres(db: Database) -> bool:
    return bool(db.app.state.engine.dialect.name == "postgresql")


def _post(client: TestClient, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    response: httpx.Response = client.post("/api/v1/panels", json=body, headers=headers)
    return response


def _ours(seen: list[str]) -> list[str]:
    # A bare BEGIN is the credential lookup's read transaction (SQLite), not the POST's.
    return [statement for statement in seen if statement != "BEGIN"]


def _was_fast(db: Database, seen: list[str], *, keyed: bool = True) -> bool:
    """The POST's statements were the one statement (PostgreSQL) or the one transaction
    (SQLite), nothing else."""
    if _postgres(db):
        return len(seen) == 1 and seen[0].startswith(FAST)
    expected = [p for p in SQLITE_FAST if keyed or "idempotency_record" not in p]
    ours = _ours(seen)
    return len(ours) == len(expected) and all(map(str.startswith, ours, expected))


def _tried_then_plain(db: Database, seen: list[str]) -> None:
    """The one statement (or SQLite's checking SELECT) was tried and wrote nothing, then the
    plain path ran."""
    if _postgres(db):
        assert seen[0].startswith(FAST), seen
        assert any(not statement.startswith(FAST) for statement in seen[1:]), seen
        return
    ours = _ours(seen)
    assert ours[0] == SQLITE_FAST[0], seen
    assert ours[1].startswith(SQLITE_FAST[1]), seen
    assert "audit_event" in ours[1], seen  # the checking SELECT, which wrote nothing
    assert ours[2] == "BEGIN IMMEDIATE", seen  # the plain path's own transaction


def _warm(client: TestClient, patient: dict[str, Any], **ref: Any) -> None:
    """The plain path resolves the patient once, which puts it in the map."""
    response = _post(client, panel_body(patient, RESULTS, **ref))
    assert response.status_code == 201, response.text


def _rows(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    async def go(session: Any) -> list[dict[str, Any]]:
        typed = [bindparam(k, type_=Uuid()) for k, v in params.items() if isinstance(v, uuid.UUID)]
        statement = text(sql).bindparams(*typed)
        return [dict(row._mapping) for row in await session.execute(statement, params)]

    return db.in_session(go)


def _chain_verifies(db: Database) -> bool:
    async def go(session: Any) -> bool:
        return (await audit_service.verify(session)).ok

    return db.in_session(go)


def _volatile(document: dict[str, Any]) -> list[str]:
    """The values that differ between two posts of one body for two like patients: ids, the
    accession, timestamps the server sets."""
    values = [document["id"], document["patient_id"], document["accession"]]
    values += [r["id"] for r in document["results"]]
    values += [v for k, v in document.items() if k.endswith("_at") and k != "collected_at"]
    return [str(v) for v in values if v]


def _masked(raw: str, volatile: list[str]) -> str:
    for number, value in enumerate(sorted(set(volatile), key=len, reverse=True)):
        raw = raw.replace(value, f"<{number}>")
    return re.sub(r"<\d+>", "<v>", raw)


def _stored(db: Database, panel_id: str, key: str, volatile: list[str]) -> dict[str, Any]:
    """The panel, its results, its idempotency record and its audit row, masked."""
    skip = {"id", "panel_id", "patient_id", "created_at", "interpreted_at", "payload_hash"}
    panel = _rows(db, "SELECT * FROM panel WHERE id = :id", id=uuid.UUID(panel_id))
    results = _rows(
        db,
        "SELECT *, reference_range IS NULL AS no_range FROM result WHERE panel_id = :id "
        "ORDER BY position",
        id=uuid.UUID(panel_id),
    )
    record = _rows(db, "SELECT * FROM idempotency_record WHERE key = :key", key=key)
    audit = _rows(
        db,
        "SELECT * FROM audit_event WHERE resource_id = :id AND action = 'create'",
        id=panel_id,
    )
    audit_skip = {"id", "seq", "occurred_at", "resource_id", "patient_id", "request_id"}
    audit_skip |= {"prev_hash", "hash", "chain"}

    def masked(row: dict[str, Any], drop: set[str]) -> dict[str, Any]:
        return {
            name: _masked(value.decode() if isinstance(value, bytes) else str(value), volatile)
            for name, value in row.items()
            if name not in drop
        }

    return {
        "panel": [masked(row, skip) for row in panel],
        "results": [masked(row, skip) for row in results],
        "record": [
            masked(row, {"id", "key", "fingerprint", "created_at", "expires_at"}) for row in record
        ],
        "audit": [masked(row, audit_skip) for row in audit],
    }


def test_a_warm_post_is_one_statement_and_answers_and_stores_what_the_plain_path_does(
    client: TestClient, db: Database
) -> None:
    plain_patient, fast_patient = make_patient(client), make_patient(client)
    known_patients.clear()
    _warm(client, fast_patient)  # only this one is known
    plain_body = panel_body(plain_patient, RESULTS, accession="ACC-SAME-A")
    fast_body = panel_body(fast_patient, RESULTS, accession="ACC-SAME-B")
    panels_before = metrics.PANELS_INGESTED.labels("json")._value.get()
    results_before = metrics.RESULTS_INGESTED.labels("json")._value.get()

    with _statements(db) as plain_seen:
        plain = _post(client, plain_body, "same-a")
    with _statements(db) as fast_seen:
        fast = _post(client, fast_body, "same-b")

    assert plain.status_code == fast.status_code == 201, (plain.text, fast.text)
    assert not _was_fast(db, plain_seen)
    assert _was_fast(db, fast_seen), fast_seen
    plain_doc, fast_doc = plain.json(), fast.json()
    plain_volatile, fast_volatile = _volatile(plain_doc), _volatile(fast_doc)
    assert _masked(plain.text, plain_volatile) == _masked(fast.text, fast_volatile)
    assert len(plain.content) == len(fast.content)
    plain_headers = dict(plain.headers)
    fast_headers = dict(fast.headers)
    for headers, volatile in ((plain_headers, plain_volatile), (fast_headers, fast_volatile)):
        headers["location"] = _masked(headers["location"], volatile)
        headers.pop("x-request-id", None)
    assert plain_headers == fast_headers
    assert _stored(db, plain_doc["id"], "same-a", plain_volatile) == _stored(
        db, fast_doc["id"], "same-b", fast_volatile
    )
    assert metrics.PANELS_INGESTED.labels("json")._value.get() == panels_before + 2
    assert metrics.RESULTS_INGESTED.labels("json")._value.get() == results_before + 6
    # Read back (the GET hot path knows the new panel's patient), audited, chain intact.
    assert client.get(fast.headers["location"]).content == fast.content
    assert _chain_verifies(db)


def test_every_path_stores_time_ordered_ids_made_in_order(client: TestClient, db: Database) -> None:
    """The plain path and the one-statement path both give the panel, its results and its
    idempotency record version 7 ids (ADR 0011), later rows later ids: inserts append to the
    indexes that lead with them."""
    patient = make_patient(client)
    known_patients.clear()
    with _statements(db) as plain_seen:
        plain = _post(client, panel_body(patient, RESULTS, accession="ACC-V7-A"), "v7-a")
    with _statements(db) as fast_seen:
        fast = _post(client, panel_body(patient, RESULTS, accession="ACC-V7-B"), "v7-b")
    assert plain.status_code == fast.status_code == 201, (plain.text, fast.text)
    assert not _was_fast(db, plain_seen)
    assert _was_fast(db, fast_seen), fast_seen
    made: list[uuid.UUID] = []
    for response, key in ((plain, "v7-a"), (fast, "v7-b")):
        document = response.json()
        ids = [uuid.UUID(document["id"])] + [uuid.UUID(r["id"]) for r in document["results"]]
        (record,) = _rows(db, "SELECT id FROM idempotency_record WHERE key = :key", key=key)
        ids.append(uuid.UUID(str(record["id"])))
        assert all(i.version == 7 for i in ids), ids
        made += ids
    first_plain, first_fast = uuid.UUID(plain.json()["id"]), uuid.UUID(fast.json()["id"])
    assert first_plain < first_fast
    assert max(made[: len(made) // 2]) < min(made[len(made) // 2 :])


def test_a_warm_post_without_a_key_is_one_statement_and_stores_no_idempotency_record(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _warm(client, patient)
    records = db.count("idempotency_record")

    with _statements(db) as seen:
        response = _post(client, panel_body(patient, RESULTS))

    assert response.status_code == 201, response.text
    assert _was_fast(db, seen, keyed=False), seen
    assert db.count("idempotency_record") == records
    assert client.get(response.headers["location"]).json() == response.json()


def _iron_code(panel: dict[str, Any]) -> str:
    return str(
        next(r for r in panel["results"] if r["analyte"] == "iron")["interpretation"]["code"]
    )


def test_a_patient_whose_sex_changed_is_interpreted_as_who_they_are_now(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client, sex="female")
    _warm(client, patient)
    assert _iron_code(_post(client, panel_body(patient, RESULTS)).json()) == "N"  # 28-170
    _rows(
        db,
        "UPDATE patient SET sex = 'male' WHERE id = :id RETURNING id",
        id=uuid.UUID(patient["id"]),
    )
    panels = db.count("panel")

    with _statements(db) as seen:
        response = _post(client, panel_body(patient, RESULTS), "sex-changed")

    _tried_then_plain(db, seen)
    assert response.status_code == 201, response.text
    assert _iron_code(response.json()) == "L"  # male: 45-182
    assert db.count("panel") == panels + 1
    assert db.count("result") == (panels + 1) * len(RESULTS)
    assert _chain_verifies(db)


def test_a_patient_whose_birth_date_changed_is_interpreted_for_their_age(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client, sex="female")
    child = make_patient(client, sex="female", birth_date="2020-06-01")
    _warm(client, patient)
    _rows(
        db,
        "UPDATE patient SET birth_date = '2020-06-01' WHERE id = :id RETURNING id",
        id=uuid.UUID(patient["id"]),
    )

    with _statements(db) as seen:
        response = _post(client, panel_body(patient, RESULTS), "birth-date-changed")
    expected = _post(client, panel_body(child, RESULTS))

    _tried_then_plain(db, seen)
    assert response.status_code == 201, response.text
    codes = [r["interpretation"] for r in response.json()["results"]]
    assert codes == [r["interpretation"] for r in expected.json()["results"]]
    assert db.count("panel") == 3


def test_an_identifier_moved_to_another_patient_files_the_panel_under_that_patient(
    client: TestClient, db: Database
) -> None:
    first, second = make_patient(client), make_patient(client, sex="male")
    ref = by_identifier(first)
    _warm(client, first, patient_ref=ref)
    _rows(
        db,
        "UPDATE patient_identifier SET patient_id = :to WHERE patient_id = :from RETURNING id",
        to=uuid.UUID(second["id"]),
        **{"from": uuid.UUID(first["id"])},
    )

    with _statements(db) as seen:
        response = _post(client, panel_body(first, RESULTS, patient_ref=ref), "moved")

    _tried_then_plain(db, seen)
    assert response.status_code == 201, response.text
    assert response.json()["patient_id"] == second["id"]
    assert _iron_code(response.json()) == "L"
    stored = _rows(
        db, "SELECT patient_id FROM panel WHERE id = :id", id=uuid.UUID(response.json()["id"])
    )
    assert [uuid.UUID(str(row["patient_id"])) for row in stored] == [uuid.UUID(second["id"])]


def test_a_newly_activated_range_set_interprets_the_next_panel(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _warm(client, patient)
    stricter = {
        "name": "clinic-strict-iron",
        "source": "test: a stricter iron interval",
        "rows": [
            {
                "analyte": "iron",
                "specimen": "serum",
                "unit": "ug/dL",
                "low": 50,
                "high": 150,
                "source": "test",
            }
        ],
    }
    activated = client.post("/api/v1/range-sets", json=stricter, params={"activate": "true"})
    assert activated.status_code == 201, activated.text

    with _statements(db) as seen:
        response = _post(client, panel_body(patient, RESULTS), "new-range-set")

    _tried_then_plain(db, seen)
    assert response.status_code == 201, response.text
    assert response.json()["range_set"]["name"] == "clinic-strict-iron"
    assert _iron_code(response.json()) == "L"


def test_a_warm_key_sent_twice_replays_byte_for_byte_and_refuses_another_body(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _warm(client, patient)
    body = panel_body(patient, RESULTS)
    first = _post(client, body, "twice")
    before = db.counts()

    with _statements(db) as seen:
        again = _post(client, body, "twice")
    other = _post(client, {**body, "accession": "ACC-OTHER-BODY"}, "twice")

    _tried_then_plain(db, seen)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    expect_problem(other, 422)
    assert db.counts()["panel"] == before["panel"]
    assert db.counts()["result"] == before["result"]


def test_a_warm_post_of_a_stored_accession_is_unchanged_corrected_or_a_conflict(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _warm(client, patient)
    body = panel_body(patient, RESULTS, accession="ACC-STORED")
    stored = _post(client, body)
    assert stored.status_code == 201, stored.text
    panels = db.count("panel")

    with _statements(db) as seen:
        unchanged = _post(client, body, "unchanged")
    changed = [result("magnesium", "0.85", "mmol/L"), *RESULTS[1:]]
    conflict = _post(client, {**body, "results": changed})
    corrected = _post(client, {**body, "results": changed, "status": "corrected"}, "corrected")

    _tried_then_plain(db, seen)
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json() == stored.json()
    expect_problem(conflict, 409, "accession-conflict")
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["id"] == stored.json()["id"]
    assert corrected.json()["status"] == "corrected"
    assert db.count("panel") == panels
    actions = _rows(
        db,
        "SELECT action, status_code FROM audit_event WHERE resource_id = :id ORDER BY seq",
        id=stored.json()["id"],
    )
    assert [(a["action"], a["status_code"]) for a in actions] == [
        ("create", 201),
        ("read", 200),
        ("update", 200),
    ]


def _race(
    db: Database, client: TestClient, bodies: list[tuple[dict[str, Any], str | None]]
) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=db.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", auth=client.auth
        ) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/api/v1/panels",
                        json=body,
                        headers={"Idempotency-Key": key} if key else {},
                    )
                    for body, key in bodies
                )
            )

    return db.run(go)


def test_concurrent_warm_posts_under_one_key_store_one_panel_and_replay_it(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _warm(client, patient)
    body = panel_body(patient, RESULTS)
    panels = db.count("panel")

    responses = _race(db, client, [(body, "one-key")] * 8)

    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == 7
    assert db.count("panel") == panels + 1
    assert _chain_verifies(db)


def test_concurrent_warm_posts_of_one_accession_store_one_panel(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _warm(client, patient)
    body = panel_body(patient, RESULTS)
    panels = db.count("panel")

    responses = _race(db, client, [(body, None)] * 4 + [(body, f"acc-{n}") for n in range(4)])

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 7 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert db.count("panel") == panels + 1
    assert db.count("result") == (panels + 1) * len(RESULTS)
    assert _chain_verifies(db)


def test_a_wrong_audit_tail_guess_re_sends_the_statement_and_writes_the_panel_once(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _warm(client, patient)
    if _postgres(db):  # as if another process had appended to this process's chain
        for guess in audit_service._tail_guess:
            audit_service._tail_guess[guess] = "0" * 64
    panels = db.count("panel")

    with _statements(db) as seen:
        response = _post(client, panel_body(patient, RESULTS), "tail-moved")

    assert response.status_code == 201, response.text
    if _postgres(db):
        assert len(seen) == 2
        assert all(statement.startswith(FAST) for statement in seen)
    else:  # the tail is read under the write lock: never a guess
        assert _was_fast(db, seen), seen
    assert db.count("panel") == panels + 1
    rows = _rows(
        db, "SELECT action FROM audit_event WHERE resource_id = :id", id=response.json()["id"]
    )
    assert [row["action"] for row in rows] == ["create"]
    assert _chain_verifies(db)


def _out_of_line_values(db: Database) -> int:
    """Rows in the TOAST tables of panel and idempotency_record."""
    total = 0
    for table in ("panel", "idempotency_record"):
        toast = _rows(
            db,
            "SELECT reltoastrelid::regclass::text AS name FROM pg_class "
            f"WHERE oid = '{table}'::regclass",
        )[0]["name"]
        total += int(_rows(db, f"SELECT count(*) AS n FROM {toast}")[0]["n"])
    return total


def test_a_warm_posts_document_and_stored_response_are_kept_whole_and_compressed_with_lz4(
    client: TestClient, db: Database
) -> None:
    if not _postgres(db):
        pytest.skip("column compression is PostgreSQL's")
    if _rows(
        db,
        "SELECT attcompression::text AS how FROM pg_attribute WHERE attname = 'document' "
        "AND attrelid = 'panel'::regclass",
    ) != [{"how": "l"}]:
        pytest.skip("this PostgreSQL server was built without lz4 (the columns keep pglz)")
    patient = make_patient(client)
    _warm(client, patient)
    out_of_line = _out_of_line_values(db)

    with _statements(db) as seen:
        response = _post(client, panel_body(patient, RESULTS), "lz4-key")

    assert response.status_code == 201, response.text
    assert _was_fast(db, seen), seen
    panel_id = uuid.UUID(response.json()["id"])
    stored = _rows(
        db,
        "SELECT document, pg_column_compression(document) AS how FROM panel WHERE id = :id",
        id=panel_id,
    )
    assert stored == [{"document": response.text, "how": "lz4"}]
    record = _rows(
        db,
        "SELECT response_body, pg_column_compression(response_body) AS how "
        "FROM idempotency_record WHERE key = 'lz4-key'",
    )
    assert record == [{"response_body": response.content, "how": "lz4"}]
    # Compressed, both fit in their rows: nothing went out of line into a TOAST table.
    assert _out_of_line_values(db) == out_of_line
