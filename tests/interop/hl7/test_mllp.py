"""The MLLP listener on a loopback port: framed ACKs for a stream of messages, and it survives
clients that misbehave."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from app.interop.hl7.mllp import (
    END_BLOCK,
    START_BLOCK,
    ListenerKey,
    MllpConfigurationError,
    MllpLimits,
    MllpReceiver,
    frame,
    resolve_principal,
)
from tests.conftest import DEFAULT_ORGANIZATION, Database
from tests.interop.hl7.messages import magnesium_mmol, next_id, obx, oru, segment

Keys = dict[str, dict[str, str]]
LIMITS = MllpLimits(max_message_bytes=16 * 1024, idle_timeout=5.0, read_timeout=1.0)


@pytest.fixture
def mllp_port(db: Database, api_keys: Keys) -> Iterator[int]:
    sessionmaker = db.app.state.sessionmaker

    async def start() -> object:
        key = ListenerKey(api_keys[DEFAULT_ORGANIZATION]["integration"], cache_seconds=0)
        receiver = MllpReceiver(sessionmaker=sessionmaker, key=key, limits=LIMITS)
        return await receiver.start("127.0.0.1", 0)

    server = db.run(start)
    port: int = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    yield port

    async def stop() -> None:
        server.close()  # type: ignore[attr-defined]
        await server.wait_closed()  # type: ignore[attr-defined]

    db.run(stop)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def read_frame(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(END_BLOCK):
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    assert data.startswith(START_BLOCK)
    return data[1 : -len(END_BLOCK)].decode()


def test_a_stream_of_messages_is_acked_frame_by_frame(mllp_port: int, db: Database) -> None:
    messages = [
        oru([magnesium_mmol()], control_id="M-1", mrn=next_id("MRN")),
        oru([obx("NOPE", "1", "mg/dL", system="L")], control_id="M-2"),
        oru([obx("ZN", "85", "ug/dL", system="L")], control_id="M-3", mrn=next_id("MRN")),
    ]
    with connect(mllp_port) as sock:
        for message in messages:
            sock.sendall(frame(message))
        answers = [read_frame(sock) for _ in messages]
    assert [segment(a, "MSA")[1:3] for a in answers] == [
        ["AA", "M-1"],
        ["AE", "M-2"],
        ["AA", "M-3"],
    ]
    assert db.counts()["panel"] == 2


def test_a_client_that_disconnects_mid_message_leaves_the_listener_serving(
    mllp_port: int, db: Database
) -> None:
    message = oru([magnesium_mmol()], mrn=next_id("MRN"))
    with connect(mllp_port) as sock:
        sock.sendall(START_BLOCK + message[: len(message) // 2].encode())
    with connect(mllp_port) as sock:  # a frame that never ends: the read timeout closes it
        sock.sendall(START_BLOCK + b"MSH|^~\\&|LIS")
        assert sock.recv(100) == b""
    assert db.counts()["panel"] == 0
    with connect(mllp_port) as sock:
        sock.sendall(b"\r\n" + frame(message))  # stray bytes between frames are skipped
        assert segment(read_frame(sock), "MSA")[1] == "AA"
    assert db.counts()["panel"] == 1


def test_an_oversized_frame_is_answered_ar_then_the_connection_closes(
    mllp_port: int, db: Database
) -> None:
    big = oru([magnesium_mmol()] * 400, control_id="BIG-1", mrn=next_id("MRN"))
    assert len(big) > LIMITS.max_message_bytes
    with connect(mllp_port) as sock:
        sock.sendall(frame(big))
        answer = read_frame(sock)
        assert sock.recv(4096) == b""  # then closed: nothing more is read from this sender
    assert segment(answer, "MSA")[1:3] == ["AR", "BIG-1"]
    assert f"{LIMITS.max_message_bytes} bytes" in answer
    with connect(mllp_port) as sock:
        sock.sendall(START_BLOCK + b"X" * (LIMITS.max_message_bytes * 2))
        assert segment(read_frame(sock), "MSA")[1] == "AR"  # no readable MSH: still an AR
    assert db.counts()["panel"] == 0


def test_each_mllp_message_writes_an_audit_row(mllp_port: int, db: Database) -> None:
    with connect(mllp_port) as sock:
        sock.sendall(frame(oru([magnesium_mmol()], mrn=next_id("MRN"))))
        assert segment(read_frame(sock), "MSA")[1] == "AA"

    async def last_mllp_row(session: object) -> tuple[str, str, str]:
        row = (
            await session.execute(  # type: ignore[attr-defined]
                text(
                    "SELECT action, resource_type, method FROM audit_event "
                    "WHERE method = 'MLLP' ORDER BY seq DESC LIMIT 1"
                )
            )
        ).one()
        return (row[0], row[1], row[2])

    assert db.in_session(last_mllp_row) == ("create", "panel", "MLLP")


def test_the_listener_refuses_a_key_that_may_not_post_panels(db: Database, api_keys: Keys) -> None:
    sessionmaker = db.app.state.sessionmaker
    with pytest.raises(MllpConfigurationError, match="panels:write"):
        db.run(resolve_principal, sessionmaker, api_keys[DEFAULT_ORGANIZATION]["clinician"])
    with pytest.raises(MllpConfigurationError):
        db.run(resolve_principal, sessionmaker, "mlk_not_a_real_key")
