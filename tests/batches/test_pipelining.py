"""Chunks pipelined: on PostgreSQL the next chunk is read and built while the one before it
writes, its writes wait for that chunk's commit, outcomes keep the input order, a failed chunk
stops the batch before the next one writes, and the input is never read more than a few
chunks ahead of the outcomes answered (memory stays flat)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.audit.service import AuditEntry, verify
from app.batches import fast, repository, service
from app.batches.ndjson import ParsedLine
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.panels import bulk
from app.panels.schemas import PanelCreate
from tests.api.access import Keys, key_header
from tests.builders import make_patient, panel_body, result
from tests.conftest import DEFAULT_ORGANIZATION, Database


def _base() -> AuditEntry:
    return AuditEntry(
        organization_id=DEFAULT_ORGANIZATION_ID,
        principal_id="test:pipelining",
        action="create",
        resource_type="panel",
        outcome="success",
    )


def _line(number: int, body: dict[str, Any]) -> ParsedLine:
    return ParsedLine(number, PanelCreate.model_validate(body), 0)


async def _items(lines: list[ParsedLine]) -> AsyncIterator[ParsedLine]:
    for parsed in lines:
        yield parsed


def test_the_next_chunk_is_built_while_the_one_before_writes_and_a_key_it_stored_is_unchanged(
    client: TestClient, db: Database, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 2 repeats chunk 1's first panel. Chunk 1 is held before its first write until
    chunk 2 was read and planned, so chunk 2 planned the panel as new; its writes still wait
    for chunk 1's commit, and the repeat is answered unchanged, stored once."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one chunk at a time (one writer, one connection)")
    patient = make_patient(client)
    first = panel_body(patient, [result("zinc", "80", "ug/dL")], accession="PP-1")
    bodies = [
        first,
        panel_body(patient, [result("calcium", "9.5", "mg/dL")], accession="PP-2"),
        first,
        panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession="PP-3"),
    ]
    planned_second: set[int] = set()
    second_planned = asyncio.Event()
    original_plan, original_insert = fast.plan, bulk.insert_new

    async def plan(*args: Any, **kwargs: Any) -> Any:
        planned = await original_plan(*args, **kwargs)
        if kwargs["lines"][0][0] == 3:  # chunk 2 (lines 3 and 4)
            planned_second.update(planned)
            second_planned.set()
        return planned

    async def insert_new(*args: Any, **kwargs: Any) -> Any:
        if not second_planned.is_set():  # chunk 1: let chunk 2 read and build first
            await asyncio.wait_for(second_planned.wait(), timeout=30)
        return await original_insert(*args, **kwargs)

    monkeypatch.setattr(fast, "plan", plan)
    monkeypatch.setattr(bulk, "insert_new", insert_new)

    async def go() -> tuple[list[Any], str]:
        sessionmaker = db.app.state.sessionmaker
        batch = await service.start(sessionmaker, _base())
        outcomes = [
            outcome
            async for outcome in service.run_parsed(
                sessionmaker,
                batch_id=batch.id,
                base=_base(),
                items=_items([_line(n, body) for n, body in enumerate(bodies, start=1)]),
                source_format="json",
                via="a test",
                chunk_lines=2,
            )
        ]
        async with sessionmaker() as session:
            record = await repository.get(
                session, organization_id=DEFAULT_ORGANIZATION_ID, batch_id=batch.id
            )
        assert record is not None
        return outcomes, record.status

    outcomes, status = db.run(go)

    assert planned_second == {3, 4}  # the repeat was planned as new: read before the commit
    assert [(o.line, o.outcome) for o in outcomes] == [
        (1, "stored"),
        (2, "stored"),
        (3, "unchanged"),
        (4, "stored"),
    ]
    assert outcomes[2].panel_id == outcomes[0].panel_id
    assert status == "completed"
    assert db.count("panel") == 3
    assert db.in_session(lambda session: verify(session)).ok


def test_a_chunk_that_fails_stops_the_batch_before_the_next_chunk_writes(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = make_patient(client)
    bodies = [
        panel_body(patient, [result("zinc", "80", "ug/dL")], accession=f"PF-{n}")
        for n in range(1, 7)
    ]
    original = repository.add_counts
    calls: list[int] = []

    async def failing(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # chunk 1's counts: an error no retry cures
            raise RuntimeError("the database went away")
        await original(*args, **kwargs)

    monkeypatch.setattr(repository, "add_counts", failing)

    async def go() -> tuple[list[Any], str | None, str]:
        sessionmaker = db.app.state.sessionmaker
        batch = await service.start(sessionmaker, _base())
        seen: list[Any] = []
        error: str | None = None
        try:
            async for outcome in service.run_parsed(
                sessionmaker,
                batch_id=batch.id,
                base=_base(),
                items=_items([_line(n, body) for n, body in enumerate(bodies, start=1)]),
                source_format="json",
                via="a test",
                chunk_lines=2,
            ):
                seen.append(outcome)
        except RuntimeError as exc:
            error = str(exc)
        async with sessionmaker() as session:
            record = await repository.get(
                session, organization_id=DEFAULT_ORGANIZATION_ID, batch_id=batch.id
            )
        assert record is not None
        return seen, error, record.status

    seen, error, status = db.run(go)

    assert (seen, error, status) == ([], "the database went away", "failed")
    assert db.count("panel") == 0  # chunk 1 rolled back; the chunks after it never wrote
    assert db.in_session(lambda session: verify(session)).ok


def test_the_input_is_read_at_most_a_few_chunks_ahead_of_the_outcomes(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    chunk_lines, lines = 3, 30
    read = 0
    ahead: list[int] = []

    async def items() -> AsyncIterator[ParsedLine]:
        nonlocal read
        for n in range(1, lines + 1):
            read += 1
            body = panel_body(patient, [result("zinc", "80", "ug/dL")], accession=f"PA-{n}")
            yield _line(n, body)

    async def go() -> list[int]:
        sessionmaker = db.app.state.sessionmaker
        batch = await service.start(sessionmaker, _base())
        answered = 0
        async for outcome in service.run_parsed(
            sessionmaker,
            batch_id=batch.id,
            base=_base(),
            items=items(),
            source_format="json",
            via="a test",
            chunk_lines=chunk_lines,
        ):
            answered += 1
            assert outcome.line == answered  # input order
            ahead.append(read - answered)
            await asyncio.sleep(0.01)  # a slow reader of the response
        return ahead

    db.run(go)

    # Held at most: the chunk whose outcomes are being answered, the chunks started after it
    # and the one being read.
    assert max(ahead) <= (service.PIPELINE_DEPTH + 2) * chunk_lines
    assert db.count("panel") == lines


def test_the_route_writes_each_chunk_s_outcomes_at_once(
    client: TestClient, db: Database, api_keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One body part per committed chunk (then the batch line), not one per line."""
    patient = make_patient(client)
    body = b"".join(
        json.dumps(
            panel_body(patient, [result("zinc", "80", "ug/dL")], accession=f"PR-{n}")
        ).encode()
        + b"\n"
        for n in range(1, 6)
    )
    monkeypatch.setattr(service, "CHUNK_LINES", 2)
    headers = {
        "content-type": "application/x-ndjson",
        **key_header(api_keys, DEFAULT_ORGANIZATION, "integration"),
    }

    async def parts() -> list[bytes]:
        """The body parts the app sends, as the server would receive them (raw ASGI)."""
        sent: list[bytes] = []
        given: list[bool] = []
        finished = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not given:
                given.append(True)
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()  # then the client stays until the answer ends
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    sent.append(message["body"])
                if not message.get("more_body"):
                    finished.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/panel-batches",
            "raw_path": b"/api/v1/panel-batches",
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await asyncio.wait_for(db.app(scope, receive, send), timeout=60)
        return sent

    written = db.run(parts)

    assert [part.count(b"\n") for part in written] == [2, 2, 1, 1]  # 3 chunks, the batch
    lines = [json.loads(line) for part in written for line in part.splitlines()]
    assert [line.get("line") for line in lines[:-1]] == [1, 2, 3, 4, 5]
    assert lines[-1]["batch"]["stored"] == 5
