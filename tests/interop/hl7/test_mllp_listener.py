"""The MLLP listener as a real listener: the key is re-checked per message, connections are
capped, idle ones are closed (stray bytes do not keep them open), a large message does not
hold up other senders, and shutdown finishes the frame in hand."""

from __future__ import annotations

import dataclasses
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from app.auth.cli import create_api_key_command, revoke_api_key_command
from app.core.config import Settings
from app.core.db import utcnow
from app.interop.hl7 import parser as hl7_parser
from app.interop.hl7 import service as hl7_service
from app.interop.hl7.mllp import (
    END_BLOCK,
    START_BLOCK,
    ListenerKey,
    MllpLimits,
    MllpReceiver,
    frame,
)
from tests.conftest import DEFAULT_ORGANIZATION, Database
from tests.interop.hl7.messages import magnesium_mmol, next_id, oru, segment
from tests.interop.hl7.test_mllp import connect, read_frame

LIMITS = MllpLimits(max_message_bytes=64 * 1024, idle_timeout=5.0, read_timeout=5.0)


@dataclass
class Listener:
    port: int
    receiver: MllpReceiver


def new_key(settings: Settings, *, expires_at: datetime | None = None) -> str:
    out = create_api_key_command(
        settings,
        org=DEFAULT_ORGANIZATION,
        role="integration",
        name="mllp test",
        expires_at=expires_at,
    )
    return out.splitlines()[-1].strip()


@pytest.fixture
def start_listener(db: Database, settings: Settings) -> Iterator[Callable[..., Listener]]:
    started: list[MllpReceiver] = []

    def start(
        *, limits: MllpLimits = LIMITS, api_key: str | None = None, cache_seconds: float = 0.0
    ) -> Listener:
        token = api_key or new_key(settings)

        async def go() -> tuple[MllpReceiver, int]:
            key = ListenerKey(token, cache_seconds=cache_seconds)
            receiver = MllpReceiver(sessionmaker=db.app.state.sessionmaker, key=key, limits=limits)
            server = await receiver.start("127.0.0.1", 0)
            return receiver, int(server.sockets[0].getsockname()[1])

        receiver, port = db.run(go)
        started.append(receiver)
        return Listener(port, receiver)

    yield start
    for receiver in started:
        db.run(receiver.shutdown, 1.0)


def msa(answer: str) -> list[str]:
    return segment(answer, "MSA")[1:3]


def exchange(sock: socket.socket, message: str) -> str:
    sock.sendall(frame(message))
    return read_frame(sock)


def small(control_id: str) -> str:
    return oru([magnesium_mmol()], control_id=control_id, mrn=next_id("MRN"))


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def mllp_audit_outcomes(db: Database) -> list[str]:
    async def go(session: object) -> list[str]:
        rows = await session.execute(  # type: ignore[attr-defined]
            text("SELECT outcome FROM audit_event WHERE method = 'MLLP' ORDER BY seq")
        )
        return [row[0] for row in rows]

    return db.in_session(go)


# --- credentials ------------------------------------------------------------------------------


def test_a_revoked_key_is_answered_ar_once_the_cache_window_has_passed(
    start_listener: Callable[..., Listener], settings: Settings, db: Database
) -> None:
    window = 1.0
    token = new_key(settings)
    listener = start_listener(api_key=token, cache_seconds=window)
    with connect(listener.port) as sock:
        assert msa(exchange(sock, small("REV-1"))) == ["AA", "REV-1"]
        revoke_api_key_command(settings, key=token)
        time.sleep(window)  # the key cache's window: revocation takes effect within it
        answer = exchange(sock, small("REV-2"))
        assert msa(answer) == ["AR", "REV-2"]
        assert "revoked or expired" in answer
        assert msa(exchange(sock, small("REV-3"))) == ["AR", "REV-3"]  # and stays refused
    assert db.count("panel") == 1
    assert mllp_audit_outcomes(db)[-2:] == ["denied", "denied"]


def test_without_a_key_cache_revocation_takes_effect_on_the_next_message(
    start_listener: Callable[..., Listener], settings: Settings, db: Database
) -> None:
    token = new_key(settings)
    listener = start_listener(api_key=token, cache_seconds=0)
    with connect(listener.port) as sock:
        assert msa(exchange(sock, small("NC-1")))[0] == "AA"
        revoke_api_key_command(settings, key=token)
        assert msa(exchange(sock, small("NC-2"))) == ["AR", "NC-2"]
    assert db.count("panel") == 1


def test_an_expired_key_is_refused_from_its_expiry_even_inside_the_cache_window(
    start_listener: Callable[..., Listener], settings: Settings, db: Database
) -> None:
    expires_at = utcnow() + timedelta(seconds=1.5)
    token = new_key(settings, expires_at=expires_at)
    listener = start_listener(api_key=token, cache_seconds=60)
    with connect(listener.port) as sock:
        assert msa(exchange(sock, small("EXP-1")))[0] == "AA"
        wait_until(lambda: utcnow() > expires_at, seconds=5)
        assert msa(exchange(sock, small("EXP-2"))) == ["AR", "EXP-2"]
    assert db.count("panel") == 1


# --- connections ------------------------------------------------------------------------------


def test_connections_beyond_the_cap_are_closed_on_arrival_and_a_freed_slot_is_reused(
    start_listener: Callable[..., Listener],
) -> None:
    listener = start_listener(limits=dataclasses.replace(LIMITS, max_connections=2))
    first, second = connect(listener.port), connect(listener.port)
    try:
        assert msa(exchange(first, small("CAP-1")))[0] == "AA"
        assert msa(exchange(second, small("CAP-2")))[0] == "AA"
        with connect(listener.port) as third:
            assert third.recv(100) == b""  # closed cleanly, nothing read or answered
        first.close()
        assert wait_until(lambda: listener.receiver.connection_count < 2)
        with connect(listener.port) as fourth:
            assert msa(exchange(fourth, small("CAP-4")))[0] == "AA"
    finally:
        first.close()
        second.close()


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except (ConnectionResetError, BlockingIOError):
        return True


def test_stray_bytes_between_frames_do_not_extend_the_idle_timeout(
    start_listener: Callable[..., Listener],
) -> None:
    listener = start_listener(limits=dataclasses.replace(LIMITS, idle_timeout=0.5))
    with connect(listener.port) as sock:
        sock.setblocking(False)
        started = time.monotonic()
        closed = False
        # Keep sending a CR every 50 ms for up to 5 s (ten times the idle timeout).
        while not closed and time.monotonic() - started < 5:
            try:
                sock.send(b"\r")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            try:
                closed = sock.recv(100) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed = True
        assert closed, "the connection was kept open by stray bytes"


def test_complete_frames_keep_a_connection_open_past_the_idle_timeout(
    start_listener: Callable[..., Listener],
) -> None:
    listener = start_listener(limits=dataclasses.replace(LIMITS, idle_timeout=0.6))
    with connect(listener.port) as sock:
        for n in range(4):  # 4 x 0.3 s: twice the idle timeout, one connection
            assert msa(exchange(sock, small(f"KEEP-{n}")))[0] == "AA"
            time.sleep(0.3)


# --- large messages ---------------------------------------------------------------------------


def test_a_large_message_is_parsed_off_the_event_loop_while_another_sender_is_answered(
    start_listener: Callable[..., Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The large message's parse is held in its worker thread until the other sender has its
    ACK: were it parsed on the event loop, nobody else could be answered meanwhile."""
    entered, release = threading.Event(), threading.Event()
    real_parse = hl7_parser.parse_oru

    def held_parse(message: str) -> object:
        if "HOLD-ME" in message:
            entered.set()
            release.wait(10)
        return real_parse(message)

    monkeypatch.setattr(hl7_service, "parse_oru", held_parse)
    listener = start_listener(limits=dataclasses.replace(LIMITS, offload_bytes=8 * 1024))
    big = oru([magnesium_mmol()] * 150, control_id="HOLD-ME", mrn=next_id("MRN"))
    assert 8 * 1024 < len(big) < LIMITS.max_message_bytes
    with connect(listener.port) as big_sender, connect(listener.port) as other:
        try:
            big_sender.sendall(frame(big))
            assert entered.wait(5)
            other.settimeout(3)
            assert msa(exchange(other, small("SMALL-1"))) == ["AA", "SMALL-1"]
        finally:
            release.set()
        assert msa(read_frame(big_sender))[1] == "HOLD-ME"


def test_a_small_message_sent_after_a_large_one_is_answered_first(
    start_listener: Callable[..., Listener],
) -> None:
    limits = dataclasses.replace(LIMITS, max_message_bytes=1024 * 1024, max_segments=10_000)
    listener = start_listener(limits=limits)
    big = oru([magnesium_mmol()] * 6000, control_id="BIG-ORDER", mrn=next_id("MRN"))
    order: list[str] = []
    with connect(listener.port) as big_sender, connect(listener.port) as other:
        big_sender.sendall(frame(big))
        other.sendall(frame(small("SMALL-ORDER")))
        selector = selectors.DefaultSelector()
        buffers = {big_sender: b"", other: b""}
        for sock in buffers:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while len(order) < 2 and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj  # type: ignore[assignment]
                chunk = sock.recv(65536)
                assert chunk, "connection closed before its ACK"
                buffers[sock] += chunk
                if buffers[sock].endswith(END_BLOCK):
                    assert buffers[sock].startswith(START_BLOCK)
                    order.append(msa(buffers[sock][1:-2].decode())[1])
                    selector.unregister(sock)
    assert order == ["SMALL-ORDER", "BIG-ORDER"]


def test_a_frame_over_the_segment_cap_is_answered_ar_before_it_is_parsed(
    start_listener: Callable[..., Listener], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real_parse = hl7_parser.parse_oru

    def counting_parse(message: str) -> object:
        parsed.append(message)
        return real_parse(message)

    monkeypatch.setattr(hl7_service, "parse_oru", counting_parse)
    listener = start_listener(limits=dataclasses.replace(LIMITS, max_segments=50))
    with connect(listener.port) as sock:
        answer = exchange(sock, oru([magnesium_mmol()] * 60, control_id="SEG-1"))
        assert msa(answer) == ["AR", "SEG-1"]
        assert "at most 50" in answer
        assert msa(exchange(sock, small("SEG-2")))[0] == "AA"  # the connection goes on
    assert len(parsed) == 1  # only the small message was parsed
    assert db.count("panel") == 1
    assert mllp_audit_outcomes(db)[-2:] == ["error", "success"]


# --- shutdown ---------------------------------------------------------------------------------


def test_shutdown_finishes_the_frame_in_hand_acks_it_and_closes(
    start_listener: Callable[..., Listener], db: Database
) -> None:
    listener = start_listener()
    message = small("SHUT-1")
    cut = len(message) // 2
    idle = connect(listener.port)
    busy = connect(listener.port)
    try:
        assert wait_until(lambda: listener.receiver.connection_count == 2)
        busy.sendall(START_BLOCK + message[:cut].encode())
        assert wait_until(lambda: listener.receiver.busy_count == 1)
        portal = db.client.portal
        assert portal is not None
        stopping = portal.start_task_soon(listener.receiver.shutdown)
        assert idle.recv(100) == b""  # an idle connection is closed at once
        with pytest.raises(ConnectionRefusedError):  # nothing new is accepted
            wait_until(lambda: bool(socket.create_connection(("127.0.0.1", listener.port))))
        busy.sendall(message[cut:].encode() + END_BLOCK)
        assert msa(read_frame(busy)) == ["AA", "SHUT-1"]
        assert busy.recv(100) == b""  # then closed
        stopping.result(timeout=10)
    finally:
        idle.close()
        busy.close()
    assert db.count("panel") == 1
