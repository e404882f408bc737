"""Scale of data: the reads a clinic makes all day use indexes, never a scan of a big table.

On PostgreSQL, every SELECT a route runs is EXPLAINed on the same connection, with the same
parameters, under ``SET LOCAL enable_seqscan = off``: the planner then picks a sequential
scan only when no index can answer the query, so a ``Seq Scan`` on one of the big tables
(results, panels, patients, plans, the audit trail) means the query's cost grows with the
organization, whatever the row counts in this small test database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from tests.api.access import make_records
from tests.conftest import Database
from tests.explain import explain_prepared

BIG_TABLES = frozenset(
    {"result", "panel", "patient", "patient_identifier", "treatment_plan", "audit_event"}
)


def _seq_scans(plan: dict[str, Any]) -> Iterator[str]:
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in BIG_TABLES:
        yield str(plan["Relation Name"])
    for child in plan.get("Plans", ()):
        yield from _seq_scans(child)


@pytest.fixture
def plans(client: TestClient, db: Database, backend: str) -> Iterator[list[tuple[str, Any]]]:
    if backend != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL")
    collected: list[tuple[str, Any]] = []
    engine = client.app.state.engine.sync_engine  # type: ignore[attr-defined]

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            return
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        row = cursor.fetchone()[0]
        collected.append((statement, json.loads(row) if isinstance(row, str) else row))

    event.listen(engine, "before_cursor_execute", explain)
    try:
        yield collected
    finally:
        event.remove(engine, "before_cursor_execute", explain)


def _scans(collected: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [
        (table, statement[:200])
        for statement, plan in collected
        for table in _seq_scans(plan[0]["Plan"])
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/patients/{patient}/analytes/magnesium/history",
        "/api/v1/patients/{patient}/panels",
        "/api/v1/patients/{patient}/timeline",
        "/api/v1/patients/{patient}/series?analyte=magnesium&include=isi",
        "/api/v1/plans/worklist",
        "/api/v1/results?flag=abnormal",
        "/api/v1/results?flag=critical",
    ],
)
def test_reads_use_indexes(
    client: TestClient, api_keys: dict[str, dict[str, str]], plans: list[Any], path: str
) -> None:
    records = make_records(client, api_keys)
    plans.clear()

    response = client.get(path.format(patient=records.patient_id))

    assert response.status_code == 200, response.text
    assert plans, "no SELECT was explained"
    assert _scans(plans) == []


def test_the_check_sees_a_scan_no_index_can_avoid(db: Database, plans: list[Any]) -> None:
    """The control: a filter on an unindexed column is a Seq Scan even with seqscan off, so
    the empty lists above mean indexes, not a blind check."""

    async def unindexed(session: Any) -> None:
        await session.execute(text("SELECT id FROM result WHERE unit = 'mg/dL'"))

    db.in_session(unindexed)

    assert [table for table, _ in _scans(plans)] == ["result"]


def _result_scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if plan.get("Relation Name") == "result":
        yield plan
    for child in plan.get("Plans", ()):
        yield from _result_scans(child)


def _index_names(plan: dict[str, Any]) -> Iterator[str]:
    """The indexes a scan reads: its own, or its bitmap's (Bitmap Index Scans under it)."""
    if "Index Name" in plan:
        yield str(plan["Index Name"])
    for child in plan.get("Plans", ()):
        yield from _index_names(child)


@pytest.fixture
def generic_plans(
    client: TestClient, db: Database, backend: str
) -> Iterator[list[tuple[str, Any]]]:
    """Like `plans`, but each SELECT's *generic* plan: the one a prepared statement (the
    driver prepares every statement) may switch to after five runs, planned without the
    parameters' values. A partial index whose predicate only a parameter implies is unusable
    there (tests/explain.py)."""
    if backend != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL")
    collected: list[tuple[str, Any]] = []
    engine = client.app.state.engine.sync_engine  # type: ignore[attr-defined]

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            return
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        collected.append((statement, explain_prepared(cursor, statement, parameters)))

    event.listen(engine, "before_cursor_execute", explain)
    try:
        yield collected
    finally:
        event.remove(engine, "before_cursor_execute", explain)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("flag=abnormal", "ix_result_org_flagged_collected"),
        ("flag=abnormal&analyte=zinc", "ix_result_org_flagged_collected"),
        ("flag=critical", "ix_result_org_critical_any_collected"),
        ("flag=possibly-critical", "ix_result_org_critical_any_collected"),
    ],
)
@pytest.mark.parametrize("planning", ["custom", "generic"])
def test_flagged_results_read_only_flagged_rows(
    client: TestClient,
    api_keys: dict[str, dict[str, str]],
    request: pytest.FixtureRequest,
    planning: str,
    query: str,
    index: str,
) -> None:
    """The organization's flagged list walks a partial index of the flagged rows, newest
    first: an index on the organization with the flag as a filter passes the Seq Scan check
    above, yet reads every result of the organization (before a7c9e1b3d5f0: a sequential
    scan, 355 ms per page at 1M stored results)."""
    collected: list[tuple[str, Any]] = request.getfixturevalue(
        "plans" if planning == "custom" else "generic_plans"
    )
    make_records(client, api_keys)
    collected.clear()

    response = client.get(f"/api/v1/results?{query}")

    assert response.status_code == 200, response.text
    listing = [
        plan
        for statement, plan in collected
        if "FROM result" in statement and "ORDER BY result.collected_at DESC" in statement
    ]
    assert len(listing) == 1
    # Only the partial index is read: walked newest first (an Index Scan, what the planner
    # picks once the organization is big), or, while the flagged rows are few, as a bitmap
    # of them sorted for the page. Either way no unflagged row and no other index is read.
    scans = list(_result_scans(listing[0][0]["Plan"]))
    assert len(scans) == 1, scans
    [scan] = scans
    indexes = sorted(_index_names(scan))
    assert (scan["Node Type"], indexes) in (
        ("Index Scan", [index]),
        ("Bitmap Heap Scan", [index]),
    ), scan


def test_a_later_page_starts_the_index_scan_at_its_cursor(
    client: TestClient, api_keys: dict[str, dict[str, str]], plans: list[tuple[str, Any]]
) -> None:
    """The keyset of a cursor is one row comparison, so the index scan starts at the cursor
    (an Index Cond) instead of reading every newer row and dropping it (a Filter): a deep page
    costs what the first one does."""
    make_records(client, api_keys)
    make_records(client, api_keys)
    first = client.get("/api/v1/results?flag=abnormal&limit=1")
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert cursor
    plans.clear()

    response = client.get(
        "/api/v1/results", params={"flag": "abnormal", "limit": 1, "cursor": cursor}
    )

    assert response.status_code == 200, response.text
    assert response.json()["items"]
    assert response.json()["items"] != first.json()["items"]
    listing = [
        plan
        for statement, plan in plans
        if "FROM result" in statement and "ORDER BY result.collected_at DESC" in statement
    ]
    [scan] = list(_result_scans(listing[0][0]["Plan"]))
    assert scan["Index Name"] == "ix_result_org_flagged_collected"
    assert "collected_at" in scan["Index Cond"], scan
    assert ".id" in scan["Index Cond"] or "(collected_at, id)" in scan["Index Cond"], scan
    assert "collected_at" not in scan.get("Filter", ""), scan
