"""A large HL7 batch file commits in chunks of messages: each message still has its own ACK and
its own savepoint, and a failure part-way loses at most the chunk in hand."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.interop import chunks
from app.interop.hl7.mllp import ListenerKey, MllpReceiver
from app.panels import service as panels_service
from tests.audit.builders import rows_for
from tests.conftest import DEFAULT_ORGANIZATION, Database
from tests.interop.hl7.messages import acks, magnesium_mmol, next_id, obx, oru, segment
from tests.interop.hl7.test_oru_route import post_er7

CHUNK = 2


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two messages a chunk, so a six-message batch spans three chunks."""
    monkeypatch.setattr(chunks, "CHUNK_UNITS", CHUNK)


def batch(messages: Sequence[str]) -> str:
    return f"FHS|^~\\&|LIS\rBHS|^~\\&|LIS\r{''.join(messages)}BTS|{len(messages)}\rFTS|1\r"


def good(control_id: str, *, accession: str | None = None) -> str:
    return oru(
        [magnesium_mmol()],
        control_id=control_id,
        mrn=next_id("MRN"),
        accession=accession or next_id("ACC"),
    )


def bad(control_id: str) -> str:
    return oru([obx("NOPE", "1", "mg/dL", system="L")], control_id=control_id, mrn=next_id("MRN"))


def answered(body: str) -> list[list[str]]:
    return [segment(ack, "MSA")[1:3] for ack in acks(body)]


def request_rows(db: Database, request_id: str) -> list[dict[str, Any]]:
    return db.in_session(lambda session: rows_for(session, request_id=request_id))


def test_a_batch_over_several_chunks_stores_each_message_once_with_its_ack_in_order(
    client: TestClient, db: Database
) -> None:
    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{n}" for n in range(1, 7)]
    # Message 3 (the first of chunk 2) is refused; message 4 beside it is stored.
    body = batch(
        [good(ids[0]), good(ids[1]), bad(ids[2]), good(ids[3]), good(ids[4]), good(ids[5])]
    )
    request_id = f"hl7-chunks-{uuid.uuid4().hex}"

    response = post_er7(client, body, headers={"X-Request-ID": request_id})

    assert response.status_code == 200, response.text
    assert answered(response.text) == [
        ["AA", ids[0]],
        ["AA", ids[1]],
        ["AE", ids[2]],
        ["AA", ids[3]],
        ["AA", ids[4]],
        ["AA", ids[5]],
    ]
    assert segment(response.text, "BTS")[1] == "6"
    counts = db.counts()
    assert (counts["panel"], counts["patient"], counts["hl7_message"]) == (5, 5, 5)
    assert db.count("refused_input") == 1
    # Every stored panel is audited once, and the refused message once, across the chunks.
    rows = request_rows(db, request_id)
    stored = [row for row in rows if row["outcome"] == "success"]
    assert len(stored) == 5
    assert len({row["resource_id"] for row in stored}) == 5
    assert [row["outcome"] for row in rows].count("error") == 1
    assert {(row["action"], row["resource_type"]) for row in rows} == {("create", "panel")}

    again = post_er7(client, body)

    assert answered(again.text) == answered(response.text)
    assert db.counts() == counts


class _Unavailable:
    """Makes the database "go away" while the message with ``accession`` is stored."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.accession = next_id("ACC-CRASH")
        self.monkeypatch = monkeypatch
        self.ingest = panels_service.ingest

        async def ingest_or_fail(session: Any, **kwargs: Any) -> Any:
            if kwargs["data"].accession == self.accession:
                raise ConnectionResetError("the database went away")
            return await self.ingest(session, **kwargs)

        monkeypatch.setattr(panels_service, "ingest", ingest_or_fail)

    def undo(self) -> None:
        self.monkeypatch.setattr(panels_service, "ingest", self.ingest)


def six_messages_failing_at_the_last(monkeypatch: pytest.MonkeyPatch) -> tuple[str, _Unavailable]:
    prefix = uuid.uuid4().hex[:8]
    failure = _Unavailable(monkeypatch)
    messages = [good(f"{prefix}-{n}") for n in range(1, 6)]
    messages.append(good(f"{prefix}-6", accession=failure.accession))
    return batch(messages), failure


def test_a_failure_part_way_keeps_the_chunks_committed_before_it(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, failure = six_messages_failing_at_the_last(monkeypatch)
    request_id = f"hl7-crash-{uuid.uuid4().hex}"

    failed = post_er7(client, body, headers={"X-Request-ID": request_id})

    assert failed.status_code == 503
    # Chunks 1 and 2 (messages 1-4) committed with their audit rows; message 5 shared the
    # failed chunk 3 and is not stored.
    assert (db.count("panel"), db.count("hl7_message")) == (4, 4)
    committed = [row for row in request_rows(db, request_id) if row["outcome"] == "success"]
    assert len(committed) == 4

    failure.undo()
    resent = post_er7(client, body)

    assert [code for code, _ in answered(resent.text)] == ["AA"] * 6
    assert (db.count("panel"), db.count("hl7_message")) == (6, 6)


def test_the_mllp_listener_keeps_the_committed_chunks_of_a_frame_cut_off_part_way(
    db: Database, api_keys: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    body, failure = six_messages_failing_at_the_last(monkeypatch)
    key = ListenerKey(api_keys[DEFAULT_ORGANIZATION]["integration"], cache_seconds=0)
    receiver = MllpReceiver(sessionmaker=db.app.state.sessionmaker, key=key)

    async def panel_rows(session: Any) -> int:
        found = await session.execute(
            text(
                "SELECT count(*) FROM audit_event WHERE method = 'MLLP' "
                "AND outcome = 'success' AND resource_id IS NOT NULL"
            )
        )
        return int(found.scalar())

    before = db.in_session(panel_rows)

    with pytest.raises(ConnectionResetError):
        db.run(receiver.answer, body)  # no ACK: the sender resends the frame

    assert db.count("panel") == 4
    assert db.in_session(panel_rows) - before == 4

    failure.undo()
    answer = db.run(receiver.answer, body)

    assert [code for code, _ in answered(answer)] == ["AA"] * 6
    assert db.count("panel") == 6
