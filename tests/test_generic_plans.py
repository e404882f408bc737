"""Scale of data, judged by what the reads touch: every SELECT a read route sends is run again
under its GENERIC plan (the one a prepared statement keeps after a few executions, which is
what asyncpg's statement cache and plpgsql use), with EXPLAIN (ANALYZE, BUFFERS), against a
database where the patient and the organization read are small and their neighbours big
(other patients of the organization, another organization), with statistics.

``tests/test_query_plans.py`` checks that an index answers each read; this checks that it is
the RIGHT index. A generic plan knows no parameter values, so it may prefer walking an index
in the requested order while filtering out other rows (the primary key backwards, say): an
Index Scan all the same, whose cost grows with everything stored after the first match. That
is how the audit chain's tail read the whole trail (migration c9e1a3b5d7f2) and how the audit
listing of a small organization read every other organization's newer events.

PostgreSQL only: SQLite has no generic plans.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from app.audit import repository as audit_repository
from app.audit.chain import GENESIS_HASH
from tests.api.access import Records, make_records
from tests.conftest import OTHER_ORGANIZATION, Database
from tests.explain import buffers, explain_prepared

# The neighbours, in each of the two organizations: patients with a panel each (the other
# organization's with a draft plan too), first SMALL of them, then BIG. The patient read keeps
# its own OWN_PANELS + 1 panels and one plan throughout, so that pages are full and what a
# read touches may grow with the patient, never with the neighbours.
SMALL = 400
BIG = 2_400
OWN_PANELS = 60
# Growing the neighbours sixfold may deepen an index by a level (one more buffer per probe);
# reading them would grow the count sixfold.
GROWTH = 1.5
SLACK = 24

_SKIPPED = ("audit_append", "INSERT", "UPDATE", "DELETE", "pg_advisory", "set_config")


@dataclass
class Measured:
    statement: str
    buffers: int
    plan: dict[str, Any] = field(repr=False)


def _generic_plan(cursor: Any, statement: str, parameters: Any) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of `statement`'s generic plan, with these parameters. Not SET
    LOCAL: the direct hot-path statements run outside a transaction block."""
    cursor.execute("SET plan_cache_mode = force_generic_plan")
    try:
        plan = explain_prepared(
            cursor, statement, parameters, options="ANALYZE, BUFFERS, FORMAT JSON"
        )
    finally:
        cursor.execute("RESET plan_cache_mode")
    return plan[0]


def _shape(node: dict[str, Any], depth: int = 0) -> Iterator[str]:
    """The plan as indented lines: each node, its index, and the rows it read and dropped."""
    index = f" using {node['Index Name']}" if "Index Name" in node else ""
    on = f" on {node['Relation Name']}" if "Relation Name" in node else ""
    dropped = node.get("Rows Removed by Filter") or node.get("Rows Removed by Index Recheck")
    removed = f", {dropped} filtered out" if dropped else ""
    yield (
        f"{'  ' * depth}{node['Node Type']}{on}{index}: {node.get('Actual Rows')} rows"
        f" (estimated {node.get('Plan Rows')}, cost {node.get('Total Cost')})"
        f"{removed}, {buffers(node)} buffers"
    )
    for child in node.get("Plans", ()):
        yield from _shape(child, depth + 1)


async def _columns(session: Any, table: str) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = :table AND table_schema = current_schema() "
            "ORDER BY ordinal_position"
        ),
        {"table": table},
    )
    return [str(name) for (name,) in rows]


async def _copy(session: Any, table: str, exprs: dict[str, str], source: str) -> None:
    """INSERT INTO `table` every column of ``t`` (the rows of `source`), `exprs` replacing the
    named ones."""
    columns = await _columns(session, table)
    select = ", ".join(exprs.get(column, f"t.{column}") for column in columns)
    await session.execute(
        text(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} {source}")
    )


async def _grow_neighbours(
    session: Any, records: Records, other_org: uuid.UUID, first: int, last: int
) -> None:
    """Neighbours `first`..`last` of the patient `records` made, copied from its patient and
    panel: one patient of its organization and one of `other_org` each, with a panel collected
    before any of the patient's own (so that the organization's newest-first pages hold the
    same rows at both levels); the latter with a plan too, active or (one in ten) a draft, so
    that the organization's worklist keeps its one draft."""
    patient, panel, plan = records.patient_id, records.panel_id, records.plan["id"]
    other_range_set = await session.scalar(
        text("SELECT id FROM range_set WHERE organization_id = :org AND status = 'active'"),
        {"org": other_org},
    )
    other_rule_set = await session.scalar(
        text("SELECT id FROM plan_rule_set WHERE organization_id = :org AND status = 'active'"),
        {"org": other_org},
    )
    for org, offset in (("t.organization_id", 0), (f"'{other_org}'::uuid", BIG)):
        patients = f"generate_series({offset + first}, {offset + last}) g"
        new_patient = f"md5('{patient}' || g)::uuid"
        older = f"t.collected_at - interval '{OWN_PANELS + 1} days' - g * interval '1 hour'"
        moved = org != "t.organization_id"
        await _copy(
            session,
            "patient",
            {"id": new_patient, "organization_id": org},
            f"FROM patient t, {patients} WHERE t.id = '{patient}'",
        )
        await _copy(
            session,
            "patient_identifier",
            {
                "id": "md5(t.id::text || g)::uuid",
                "patient_id": new_patient,
                "organization_id": org,
                "value": "t.value || '-' || g",
            },
            f"FROM patient_identifier t, {patients} WHERE t.patient_id = '{patient}'",
        )
        await _copy(
            session,
            "panel",
            {
                "id": "md5(t.id::text || g)::uuid",
                "organization_id": org,
                "patient_id": new_patient,
                "accession": "t.accession || '-' || g",
                "collected_at": older,
                **({"range_set_id": f"'{other_range_set}'::uuid"} if moved else {}),
            },
            f"FROM panel t, {patients} WHERE t.id = '{panel}'",
        )
        await _copy(
            session,
            "result",
            {
                "id": "md5(t.id::text || g)::uuid",
                "organization_id": org,
                "panel_id": "md5(t.panel_id::text || g)::uuid",
                "patient_id": new_patient,
                "collected_at": older,
            },
            f"FROM result t, {patients} WHERE t.panel_id = '{panel}'",
        )
        if not moved:
            continue
        await _copy(
            session,
            "treatment_plan",
            {
                "id": "md5(t.id::text || g)::uuid",
                "organization_id": org,
                "patient_id": new_patient,
                "rule_set_id": f"'{other_rule_set}'::uuid",
                "status": "CASE WHEN g % 10 = 0 THEN 'draft' ELSE 'active' END",
            },
            f"FROM treatment_plan t, {patients} WHERE t.id = '{plan}'",
        )
    await _analyze(session)


async def _analyze(session: Any) -> None:
    for table in ("patient", "patient_identifier", "panel", "result", "treatment_plan"):
        await session.execute(text(f"ANALYZE {table}"))


async def _grow_own(session: Any, records: Records) -> None:
    """OWN_PANELS older copies of the patient's panel: its own history, a few pages long."""
    panel = records.panel_id
    own = f"generate_series(1, {OWN_PANELS}) d"
    await _copy(
        session,
        "panel",
        {
            "id": "md5(t.id::text || 'own' || d)::uuid",
            "accession": "t.accession || '-own-' || d",
            "collected_at": "t.collected_at - d * interval '1 day'",
        },
        f"FROM panel t, {own} WHERE t.id = '{panel}'",
    )
    await _copy(
        session,
        "result",
        {
            "id": "md5(t.id::text || 'own' || d)::uuid",
            "panel_id": "md5(t.panel_id::text || 'own' || d)::uuid",
            "collected_at": "t.collected_at - d * interval '1 day'",
        },
        f"FROM result t, {own} WHERE t.panel_id = '{panel}'",
    )


PATHS = (
    "/api/v1/patients/{patient}",
    "/api/v1/patients/{patient}/panels",
    "/api/v1/patients/{patient}/analytes/magnesium/history",
    "/api/v1/patients/{patient}/timeline",
    "/api/v1/patients/{patient}/series?analyte=magnesium",
    "/api/v1/patients/{patient}/plans",
    "/api/v1/patients/{patient}/ratios/ca_mg_molar/history",
    "/api/v1/patients/{patient}/sleep-assessments",
    "/api/v1/panels/{panel}/interpretations",
    "/api/v1/plans/{plan}",
    "/api/v1/plans/{plan}/versions",
    "/api/v1/audit-events?patient_id={patient}",
    "/api/v1/refused-inputs",
    "/api/v1/patients?identifier={mrn_system}|{mrn}",
    "/api/v1/panels/{panel}",
    "/api/v1/plans/worklist",
    "/api/v1/results?flag=abnormal",
    "/api/v1/results?flag=critical",
    "/fhir/R4/Patient?identifier={mrn_system}|{mrn}",
    "/fhir/R4/Observation?patient={patient}",
    "/fhir/R4/Observation?patient={patient}&code=http://loinc.org|19123-9",
    "/fhir/R4/DiagnosticReport?patient={patient}",
    "/fhir/R4/CarePlan?patient={patient}",
)


@contextmanager
def _measuring(engine: Engine) -> Iterator[list[Measured]]:
    """Every read SELECT sent through `engine` meanwhile, measured under its generic plan."""
    collected: list[Measured] = []

    def check(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            return
        if any(word in statement for word in _SKIPPED):
            return  # a write (the audit append) or a session setting: not a read's cost
        plan = _generic_plan(cursor, statement, parameters)
        collected.append(Measured(" ".join(statement.split())[:300], buffers(plan["Plan"]), plan))

    event.listen(engine, "before_cursor_execute", check)
    try:
        yield collected
    finally:
        event.remove(engine, "before_cursor_execute", check)


def _read_all(client: TestClient, records: Records) -> dict[str, list[Measured]]:
    mrn_system = records.patient["identifiers"][0]["system"]
    engine = client.app.state.engine.sync_engine  # type: ignore[attr-defined]
    seen: dict[str, list[Measured]] = {}
    for path in PATHS:
        url = path.format(
            patient=records.patient_id,
            panel=records.panel_id,
            plan=records.plan["id"],
            mrn=records.mrn,
            mrn_system=mrn_system,
        )
        with _measuring(engine) as measured:
            response = client.get(url)
        assert response.status_code == 200, (url, response.text)
        seen[path] = measured
    return seen


@pytest.fixture(scope="module")
def levels(
    session_client: TestClient, api_keys: dict[str, dict[str, str]], backend: str
) -> Iterator[dict[str, tuple[list[Measured], list[Measured]]]]:
    """What each read touched with SMALL neighbours, and with BIG."""
    if backend != "postgresql":
        pytest.skip("generic plans are PostgreSQL's")
    db = Database(session_client)
    db.reset()
    records = make_records(session_client, api_keys)
    other_org = db.organization_id(OTHER_ORGANIZATION)

    def grow(first: int, last: int) -> None:
        async def go(session: Any) -> None:
            if first == 1:
                await _grow_own(session, records)
            await _grow_neighbours(session, records, other_org, first, last)
            await session.commit()

        db.in_session(go)

    grow(1, SMALL)
    small = _read_all(session_client, records)
    grow(SMALL + 1, BIG)
    big = _read_all(session_client, records)
    yield {path: (small[path], big[path]) for path in PATHS}
    db.reset()


@pytest.mark.parametrize("path", PATHS)
def test_a_read_costs_the_same_whatever_the_neighbours_hold(
    levels: dict[str, tuple[list[Measured], list[Measured]]], path: str
) -> None:
    small, big = levels[path]

    assert small, "no SELECT was measured"
    assert [m.statement for m in big] == [m.statement for m in small]
    grew = [
        (before, after)
        for before, after in zip(small, big, strict=True)
        if after.buffers > before.buffers * GROWTH + SLACK
    ]
    assert grew == [], "\n\n".join(
        f"{before.buffers} -> {after.buffers} buffers: {after.statement}\n"
        + "\n".join(_shape(after.plan["Plan"]))
        for before, after in grew
    )


def test_an_audit_listing_reads_its_page_not_the_trail(db: Database, backend: str) -> None:
    """A small organization's trail behind many newer events of a big one, and a patient's
    few events early in the big one's: each listing reads its own page. Before the
    (organization, seq) index and the range on the organization, the generic plan walked the
    primary key backwards for the first (702 buffers here for two events)."""
    if backend != "postgresql":
        pytest.skip("generic plans are PostgreSQL's")
    small_org, big_org, patient = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def go(session: Any) -> dict[str, tuple[int, list[Measured]]]:
        insert = text(
            "INSERT INTO audit_event (id, occurred_at, organization_id, patient_id, action, "
            "resource_type, outcome, prev_hash, hash, chain) SELECT gen_random_uuid(), now(), "
            ":org, :patient, 'read', 'panel', 'success', :genesis, repeat('a', 64), 63 "
            "FROM generate_series(1, :rows)"
        )
        for org, patient_id, rows in (
            (small_org, None, 2),
            (big_org, patient, 3),
            (big_org, None, 20_000),
        ):
            await session.execute(
                insert, {"org": org, "patient": patient_id, "genesis": GENESIS_HASH, "rows": rows}
            )
        await session.execute(text("ANALYZE audit_event"))
        seen: dict[str, tuple[int, list[Measured]]] = {}
        for name, org, patient_id in (
            ("small organization", small_org, None),
            ("patient in a big one", big_org, patient),
            ("big organization", big_org, None),
        ):
            with _measuring(session.bind.sync_engine) as measured:
                events = await audit_repository.list_events(
                    session, organization_id=org, patient_id=patient_id, limit=51
                )
            seen[name] = (len(events), measured)
        await session.rollback()  # nothing of this stays: the rows, the statistics
        return seen

    seen = db.in_session(go)

    assert {name: count for name, (count, _) in seen.items()} == {
        "small organization": 2,
        "patient in a big one": 3,
        "big organization": 51,
    }
    for name, (_, measured) in seen.items():
        assert len(measured) == 1, name
        plan = measured[0].plan["Plan"]
        assert measured[0].buffers < 100, (name, "\n".join(_shape(plan)))
