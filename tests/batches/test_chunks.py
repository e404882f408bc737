"""How a batch is cut into chunks and run: by lines or by bytes with the same outcomes, each
line's audit row at its own time, a chunk the database aborts run again or refused (503)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError

from app.audit.service import AuditEntry, verify
from app.batches import service
from app.batches.ndjson import ParsedLine
from app.core.db import utcnow
from app.models.organization import DEFAULT_ORGANIZATION_ID
from tests.audit.builders import rows_for
from tests.builders import make_patient, panel_body, result
from tests.conftest import Database

NDJSON = {"content-type": "application/x-ndjson"}


def _post(client: TestClient, *lines: Any, request_id: str | None = None) -> list[dict[str, Any]]:
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    headers = {**NDJSON, **({"X-Request-ID": request_id} if request_id else {})}
    response = client.post("/api/v1/panel-batches", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _base(principal_id: str) -> AuditEntry:
    """The audit entry a batch's rows are built from, as the route builds it."""
    return AuditEntry(
        organization_id=DEFAULT_ORGANIZATION_ID,
        principal_id=principal_id,
        action="create",
        resource_type="panel",
        outcome="success",
    )


def _chunk_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of lines of each chunk the service commits."""
    sizes: list[int] = []
    original = service._commit_chunk

    async def counted(*args: Any) -> Any:
        sizes.append(len(args[3]))
        return await original(*args)

    monkeypatch.setattr(service, "_commit_chunk", counted)
    return sizes


def _shape(outcomes: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            o["line"],
            o["outcome"],
            o["status"],
            o.get("has_critical"),
            o.get("problem", {}).get("type"),
        )
        for o in outcomes
    ]


def _lines(patient: dict[str, Any], prefix: str) -> list[Any]:
    return [
        panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession=f"{prefix}-1"),
        b"not json",
        panel_body(patient, [result("calcium", "13.5", "mg/dL")], accession=f"{prefix}-2"),
        panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession=f"{prefix}-1"),
        panel_body(patient, [result("zinc", "80", "ug/dL")], accession=f"{prefix}-3"),
        panel_body(patient, [result("zinc", "80", "furlong")], accession=f"{prefix}-4"),
    ]


def test_a_chunk_is_cut_by_bytes_and_the_outcomes_are_the_same(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = make_patient(client)
    sizes = _chunk_sizes(monkeypatch)
    by_lines = _post(client, *_lines(patient, "L"))
    assert sizes == [6]  # one chunk of every line

    sizes.clear()
    monkeypatch.setattr(service, "CHUNK_BYTES", 400)  # each panel line is ~200 bytes
    by_bytes = _post(client, *_lines(patient, "B"))

    assert len(sizes) > 1
    assert sum(sizes) == 6
    assert max(sizes) < 6
    assert _shape(by_bytes[:-1]) == _shape(by_lines[:-1])
    assert by_bytes[-1]["batch"]["stored"] == by_lines[-1]["batch"]["stored"] == 3
    assert db.count("panel") == 6


def test_run_parsed_cuts_chunks_at_the_byte_budget(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service entry point other formats feed: the items' sizes cut the chunks."""
    from app.panels.schemas import PanelCreate

    patient = make_patient(client)
    sizes = _chunk_sizes(monkeypatch)
    panels = [
        PanelCreate.model_validate(
            panel_body(patient, [result("zinc", "80", "ug/dL")], accession=f"RP-{n}")
        )
        for n in range(7)
    ]
    base = _base("test:run-parsed")

    async def go() -> list[str]:
        sessionmaker = db.app.state.sessionmaker
        batch = await service.start(sessionmaker, base)

        async def items() -> Any:
            for number, panel in enumerate(panels, start=1):
                yield ParsedLine(number, panel, 1000)

        return [
            outcome.outcome
            async for outcome in service.run_parsed(
                sessionmaker,
                batch_id=batch.id,
                base=base,
                items=items(),
                source_format="json",
                via="a test",
                chunk_lines=100,
                chunk_bytes=3000,
            )
        ]

    assert db.run(go) == ["stored"] * 7
    assert sizes == [3, 3, 1]


class _Clock:
    """A clock an hour ahead of the real one, one second further at each reading."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(hours=1)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_each_lines_audit_row_carries_the_time_it_was_processed(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = make_patient(client)
    monkeypatch.setattr(service, "CHUNK_LINES", 2)
    monkeypatch.setattr(service, "utcnow", _Clock())
    request_id = f"batch-times-{uuid.uuid4().hex}"
    lines = _lines(patient, "T")

    out = _post(client, *lines, request_id=request_id)

    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    [batch_row] = [row for row in rows if row["resource_type"] == "panel-batch"]
    line_rows = [row for row in rows if row["resource_type"] == "panel"]
    assert len(line_rows) == len(lines) == len(out) - 1
    started = batch_row["occurred_at"]
    times = [row["occurred_at"] for row in line_rows]
    assert all(time > started for time in times)
    # Three chunks of two lines: each chunk's rows later than the previous chunk's.
    chunks = [times[0:2], times[2:4], times[4:6]]
    assert max(chunks[0]) < min(chunks[1])
    assert max(chunks[1]) < min(chunks[2])
    # Within the second chunk (a refused line, a line decided line by line) each its own.
    assert len(set(chunks[1])) == 2
    assert db.in_session(lambda session: verify(session)).ok


class _Deadlock(Exception):
    sqlstate = "40P01"


def _aborted() -> DBAPIError:
    return DBAPIError("INSERT INTO panel ...", {}, _Deadlock("deadlock detected"))


def _failing(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """``_run_chunk`` aborted by the database its first ``times`` calls."""
    calls: list[int] = []
    original = service._run_chunk

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            await original(*args, **kwargs)  # its writes are rolled back with the transaction
            raise _aborted()
        return await original(*args, **kwargs)

    monkeypatch.setattr(service, "_run_chunk", flaky)
    monkeypatch.setattr(service, "RETRY_PAUSE_SECONDS", 0.001)
    return calls


@pytest.fixture
def two_panels(client: TestClient) -> list[dict[str, Any]]:
    patient = make_patient(client)
    return [
        panel_body(patient, [result("zinc", "80", "ug/dL")], accession="DL-1"),
        panel_body(patient, [result("calcium", "13.5", "mg/dL")], accession="DL-2"),
    ]


def test_a_chunk_aborted_as_a_deadlock_is_run_again_and_stored_once(
    client: TestClient,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    two_panels: list[dict[str, Any]],
) -> None:
    calls = _failing(monkeypatch, times=2)

    out = _post(client, *two_panels, b"not json")

    assert len(calls) == 3
    assert [o["outcome"] for o in out[:-1]] == ["stored", "stored", "refused"]
    batch = out[-1]["batch"]
    assert (batch["stored"], batch["refused"], batch["critical"]) == (2, 1, 1)
    assert db.count("panel") == 2
    assert db.in_session(lambda session: verify(session)).ok


def test_a_chunk_that_keeps_deadlocking_is_refused_with_a_503_never_a_500(
    client: TestClient,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    two_panels: list[dict[str, Any]],
) -> None:
    calls = _failing(monkeypatch, times=1000)
    request_id = f"batch-busy-{uuid.uuid4().hex}"

    out = _post(client, *two_panels, b"not json", request_id=request_id)

    assert len(calls) == service.CHUNK_RETRIES + 1
    assert [(o["outcome"], o["status"]) for o in out[:-1]] == [
        ("refused", 503),
        ("refused", 503),
        ("refused", 400),  # refused by the parser: its own problem
    ]
    assert out[0]["problem"]["type"].endswith("/service-unavailable")
    batch = out[-1]["batch"]
    assert (batch["status"], batch["stored"], batch["refused"]) == ("completed", 0, 3)
    assert db.count("panel") == 0
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    assert sorted(
        (row["outcome"], row["status_code"]) for row in rows if row["resource_type"] == "panel"
    ) == [("error", 400), ("error", 503), ("error", 503)]
    # Re-sent once the database is calm: stored.
    monkeypatch.undo()
    again = _post(client, *two_panels)
    assert [o["outcome"] for o in again[:-1]] == ["stored", "stored"]


def test_a_batch_cancelled_mid_stream_ends_failed_never_running(
    client: TestClient, db: Database
) -> None:
    """A client that hangs up cancels the response task (anyio cancel scope): the chunk that
    committed stays stored, and the batch record still ends `failed`, so progress polling
    never shows a batch `running` forever."""
    import anyio

    from app.batches import repository
    from app.panels.schemas import PanelCreate

    patient = make_patient(client)
    base = _base("test:cancelled")

    async def go() -> tuple[list[str], str, int]:
        sessionmaker = db.app.state.sessionmaker
        batch = await service.start(sessionmaker, base)
        seen: list[str] = []

        async def items() -> Any:
            for number in range(1, 5):
                body = panel_body(
                    patient, [result("zinc", "80", "ug/dL")], accession=f"CX-{number}"
                )
                yield ParsedLine(number, PanelCreate.model_validate(body), 0)
            await anyio.sleep(3600)  # the client stops sending and then goes away

        with anyio.move_on_after(2):
            outcomes = service.run_parsed(
                sessionmaker,
                batch_id=batch.id,
                base=base,
                items=items(),
                source_format="json",
                via="a test",
                chunk_lines=2,
            )
            try:
                async for outcome in outcomes:
                    seen.append(outcome.outcome)
            finally:
                with anyio.CancelScope(shield=True):
                    await outcomes.aclose()
        async with sessionmaker() as session:
            record = await repository.get(
                session, organization_id=DEFAULT_ORGANIZATION_ID, batch_id=batch.id
            )
        assert record is not None
        return seen, record.status, record.stored

    seen, status, stored = db.run(go)
    assert seen == ["stored"] * 4
    assert (status, stored) == ("failed", 4)
