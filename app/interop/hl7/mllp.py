"""An MLLP listener (HL7 v2 over TCP): the same processing and ACKs as the HTTP route.

Framing per the MLLP release 2 spec: each message is ``<VT>`` (0x0B) … ``<FS><CR>`` (0x1C 0x0D),
and each is answered by one framed ACK (the ACKs of a batch, concatenated). Bytes between
frames (a stray CR or LF some senders add) are dropped.

Limits (``MllpLimits``, from the ``MINERAL_MLLP_*`` settings):

* **Connections.** At most ``max_connections`` at a time; a connection beyond that is closed on
  arrival, before anything is read (the sender sees a clean close and retries later).
* **Idle timeout.** A connection that completes no frame for ``idle_timeout`` seconds is
  closed. The clock restarts only when a frame has been answered: stray bytes between frames
  do not extend it.
* **Frame deadline.** A frame must be complete ``read_timeout`` seconds after its start byte,
  or the connection is closed (nothing of the partial frame is processed; a client that
  disconnects mid-frame is simply dropped).
* **Size.** A frame over ``max_message_bytes`` is answered with one ``AR`` ACK (built from the
  MSH at its start, when readable) naming the limit, then the connection is closed: the rest
  of the frame is not read or stored.
* **Segments.** A frame of more than ``max_segments`` segments (``MINERAL_HL7_MAX_SEGMENTS``,
  as on the HTTP route) is answered ``AR`` per message before anything is parsed.
* **Heavy parsing off the event loop.** A frame of ``offload_bytes`` or more is parsed and
  mapped in a worker thread, so one large message does not hold up other senders; its
  database work stays on the event loop.

Credentials: MLLP has none of its own. The listener runs as the principal of one API key,
given at start-up (``MINERAL_MLLP_API_KEY``), whose organization receives the results. The key
is checked at start (the listener refuses to start with a bad one) and again for every
message, through a cache of ``MINERAL_API_KEY_CACHE_SECONDS`` (as the HTTP API does): once the
key is revoked, every message after that window is answered ``AR`` and nothing is stored; an
expired key is refused from its expiry time on. Refused messages are audited as ``denied``.

Shutdown (SIGTERM or SIGINT): the listening socket closes, idle connections are closed, a
frame already started is read to its end, processed and acknowledged, then its connection
closes; after ``shutdown_grace`` seconds whatever is left is cut off (without an ACK, so the
sender resends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.audit.entries import build_entry
from app.audit.service import AuditEntry, AuditOutcome
from app.auth.principal import Principal, Rejection
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction
from app.interop.hl7 import audit as hl7_audit
from app.interop.hl7 import intake, service
from app.interop.hl7.ack import answer_body, build_ack
from app.interop.hl7.errors import ErrorCode, Issue, ParseError
from app.interop.hl7.mllp_key import ListenerKey, MllpConfigurationError, resolve_principal
from app.interop.hl7.parser import MessageHeader, read_header, split_messages
from app.interop.hl7.service import MessageOutcome
from app.ops import metrics

log = logging.getLogger("app.interop.hl7.mllp")

__all__ = [
    "END_BLOCK",
    "START_BLOCK",
    "ListenerKey",
    "MllpConfigurationError",
    "MllpLimits",
    "MllpReceiver",
    "frame",
    "resolve_principal",
    "run_mllp",
    "serve_mllp",
]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_OFFLOAD_BYTES = 64 * 1024
DEFAULT_SHUTDOWN_GRACE = 30.0
DEFAULT_MAX_SEGMENTS = 5000
_READ_CHUNK = 64 * 1024
_HEAD_BYTES = 4096  # enough of an oversized frame to read its MSH for the AR
_LINGER_SECONDS = 1.0


class FrameTooLargeError(Exception):
    def __init__(self, head: bytes) -> None:
        super().__init__("MLLP frame over the size limit")
        self.head = head


@dataclass(frozen=True, slots=True)
class MllpLimits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    offload_bytes: int = DEFAULT_OFFLOAD_BYTES
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    max_segments: int = DEFAULT_MAX_SEGMENTS

    @classmethod
    def from_settings(cls, settings: Settings) -> MllpLimits:
        return cls(
            max_message_bytes=settings.mllp_max_message_bytes,
            idle_timeout=settings.mllp_idle_timeout_seconds,
            read_timeout=settings.mllp_frame_timeout_seconds,
            max_connections=settings.mllp_max_connections,
            shutdown_grace=settings.shutdown_grace_seconds,
            max_segments=settings.hl7_max_segments,
        )


def frame(payload: str) -> bytes:
    return START_BLOCK + payload.encode("utf-8") + END_BLOCK


class _Connection:
    __slots__ = ("task", "busy")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.busy = False  # a frame has started: it is read, answered, and only then closed


class MllpReceiver:
    """Serves MLLP connections: one transaction per frame (a large batch file: one per chunk of
    messages, ``app.interop.chunks``), one framed answer per frame."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        key: ListenerKey,
        read_sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        limits: MllpLimits | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.read_sessionmaker = read_sessionmaker or sessionmaker
        self.key = key
        self.limits = limits or MllpLimits()
        self._connections: set[_Connection] = set()
        self._closing = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def busy_count(self) -> int:
        """Connections with a frame in hand (started, not yet acknowledged)."""
        return sum(1 for c in self._connections if c.busy)

    async def start(self, host: str, port: int) -> asyncio.Server:
        self._server = await asyncio.start_server(self._accept, host, port, limit=_READ_CHUNK)
        return self._server

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, close idle connections, let frames in hand finish (ACKed), then
        cut off whatever is still running after ``grace`` seconds."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(
                tasks, timeout=self.limits.shutdown_grace if grace is None else grace
            )
            for task in pending:
                task.cancel()
            if pending:
                log.warning("MLLP shutdown: %d connection(s) cut off mid-frame", len(pending))
                await asyncio.wait(pending, timeout=_LINGER_SECONDS)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), _LINGER_SECONDS)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing.is_set() or len(self._connections) >= self.limits.max_connections:
            reason = "shutdown" if self._closing.is_set() else "capacity"
            metrics.MLLP_CONNECTIONS_REFUSED.labels(reason).inc()
            log.warning(
                "MLLP connection from %s refused (%s: %d open)",
                writer.get_extra_info("peername"),
                reason,
                len(self._connections),
            )
            await _close(writer)
            return
        connection = _Connection(asyncio.current_task())
        self._connections.add(connection)
        metrics.MLLP_CONNECTIONS.inc()
        try:
            await self.serve_connection(reader, writer, connection)
        finally:
            self._connections.discard(connection)
            metrics.MLLP_CONNECTIONS.dec()

    async def serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: _Connection | None = None,
    ) -> None:
        connection = connection or _Connection(None)
        peer = writer.get_extra_info("peername")
        buffer = bytearray()
        try:
            while True:
                payload = await self._read_frame(reader, buffer, connection)
                if payload is None:
                    break
                answer = await self.answer(payload.decode("utf-8", errors="replace"), peer)
                writer.write(frame(answer))
                await writer.drain()
                connection.busy = False
        except FrameTooLargeError as exc:
            log.warning(
                "MLLP client %s sent a frame over %d bytes", peer, self.limits.max_message_bytes
            )
            await self._refuse_oversized(reader, writer, exc.head)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("MLLP client %s disconnected", peer)
        except TimeoutError:
            log.info("MLLP client %s timed out", peer)
        except Exception:
            # Never let one connection's failure (e.g. the database is down) go unlogged or
            # take the listener with it; the sender gets no ACK and will resend.
            log.exception("MLLP connection from %s failed", peer)
        finally:
            await _close(writer)

    async def _read_frame(
        self, reader: asyncio.StreamReader, buffer: bytearray, connection: _Connection
    ) -> bytes | None:
        """The next frame's payload; None at a clean end of stream between frames, or when
        the listener shuts down between frames. TimeoutError when idle too long."""
        loop = asyncio.get_running_loop()
        idle_deadline = loop.time() + self.limits.idle_timeout
        while True:
            start = buffer.find(START_BLOCK)
            if start >= 0:
                del buffer[:start]
                break
            buffer.clear()  # bytes between frames: dropped, and the idle clock runs on
            chunk = await self._read_between_frames(reader, idle_deadline)
            if not chunk:
                return None
            buffer += chunk
        connection.busy = True
        limit = self.limits.max_message_bytes
        scanned = 1
        async with asyncio.timeout(self.limits.read_timeout):
            while True:
                end = buffer.find(END_BLOCK, max(1, scanned - 1))
                if end >= 0:
                    if end - 1 > limit:
                        raise FrameTooLargeError(bytes(buffer[1 : 1 + _HEAD_BYTES]))
                    payload = bytes(buffer[1:end])
                    del buffer[: end + len(END_BLOCK)]
                    return payload
                if len(buffer) - 1 > limit:
                    raise FrameTooLargeError(bytes(buffer[1 : 1 + _HEAD_BYTES]))
                scanned = len(buffer)
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    raise asyncio.IncompleteReadError(bytes(buffer), None)
                buffer += chunk

    async def _read_between_frames(
        self, reader: asyncio.StreamReader, deadline: float
    ) -> bytes | None:
        """Bytes from the client, b"" at end of stream, None when the listener shuts down
        first; TimeoutError at ``deadline``."""
        if self._closing.is_set():
            return None
        read = asyncio.ensure_future(reader.read(_READ_CHUNK))
        closing = asyncio.ensure_future(self._closing.wait())
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            done, _ = await asyncio.wait(
                {read, closing}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closing.cancel()
        if read in done:
            return read.result()
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await read
        if closing in done:
            return None
        raise TimeoutError

    async def _refuse_oversized(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        issue = Issue(
            ErrorCode.INTERNAL_ERROR,
            f"the message exceeds the MLLP limit of {self.limits.max_message_bytes} bytes and "
            "was not read; nothing was stored: send fewer results per message",
        )
        text = head.decode("utf-8", errors="replace")
        header = _header_or_none(text)
        metrics.count_acks("mllp", ["AR"])
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            writer.write(frame(build_ack(header, "AR", [issue])))
            await asyncio.wait_for(writer.drain(), _LINGER_SECONDS)
            # Half-close and discard what the sender is still sending for a moment, so the
            # AR is not lost to a reset (closing with unread data sends RST).
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(_LINGER_SECONDS):
                while await reader.read(_READ_CHUNK):
                    pass

    async def answer(self, text: str, peer: object = None) -> str:
        """The ACK text for one frame's payload."""
        principal = await self.key.current(self.read_sessionmaker)
        if isinstance(principal, Rejection):
            issue = Issue(
                ErrorCode.INTERNAL_ERROR,
                "the receiving system's credentials for this interface are revoked or "
                "expired; nothing was stored: resend once the interface is configured again",
            )
            return await self._refuse(text, issue, peer, outcome="denied", status_code=401)
        # Counted before anything is parsed, as on the HTTP route (MINERAL_HL7_MAX_SEGMENTS).
        segments = intake.segment_count(text)
        if segments > self.limits.max_segments:
            issue = Issue(
                ErrorCode.INTERNAL_ERROR,
                f"the frame has {segments} segments; at most {self.limits.max_segments} are "
                "accepted in one frame: nothing was stored, send smaller messages",
            )
            return await self._refuse(text, issue, peer, outcome="error", status_code=413)
        async with transaction(self.sessionmaker) as session:
            received = await intake.receive_and_keep(
                session,
                principal,
                text=text,
                channel="hl7-mllp",
                offload_bytes=self.limits.offload_bytes,
                audit_rows=lambda outcomes: self._audit_entries(principal, outcomes, peer),
            )
            await audit.append(session, self._audit_entries(principal, received.unaudited, peer))
        metrics.count_acks("mllp", (outcome.ack_code for outcome in received.outcomes))
        return service.ack_of(received.outcomes, text)

    async def _refuse(
        self,
        text: str,
        issue: Issue,
        peer: object,
        *,
        outcome: AuditOutcome,
        status_code: int,
    ) -> str:
        """AR for every message of the frame, nothing stored, the attempt audited."""
        acks = [build_ack(header, "AR", [issue]) for header in _headers(text)]
        last = self.key.last_principal
        async with transaction(self.sessionmaker) as session:
            await audit.append(
                session,
                [
                    build_entry(
                        last,
                        action="create",
                        resource_type="panel",
                        outcome=outcome,
                        status_code=status_code,
                        method="MLLP",
                        path="mllp",
                        client_address=_address(peer),
                        principal_kind="api_key",
                    )
                ],
            )
        metrics.count_acks("mllp", ["AR"] * len(acks))
        return answer_body(acks, text)

    def _audit_entries(
        self, principal: Principal, outcomes: Sequence[MessageOutcome], peer: object
    ) -> list[AuditEntry]:
        """One row per patient the frame touched, with each message's real outcome (a message
        refused with AE / AR is an `error`, against the patient it named when one is known)."""
        template = hl7_audit.template(
            principal, method="MLLP", path="mllp", client_address=_address(peer)
        )
        return hl7_audit.entries(template, outcomes)


def _address(peer: object) -> str | None:
    address = peer[0] if isinstance(peer, tuple) and peer else None
    return str(address) if address else None


def _header_or_none(text: str) -> MessageHeader | None:
    try:
        return read_header(text)
    except ParseError:
        return None


def _headers(text: str) -> list[MessageHeader | None]:
    """The MSH of each message of a frame (None where unreadable), for one ACK each."""
    try:
        messages = split_messages(text)
    except ParseError:
        return [_header_or_none(text)]
    return [_header_or_none(message) for message in messages] or [None]


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
        await asyncio.wait_for(writer.wait_closed(), _LINGER_SECONDS)


async def serve_mllp(
    settings: Settings,
    *,
    host: str,
    port: int,
    api_key: str,
    limits: MllpLimits | None = None,
    metrics_port: int | None = None,
) -> None:
    """Listen until SIGTERM or SIGINT, then shut down gracefully (see the module docstring)."""
    engine = make_engine(settings)
    metrics.instrument_engine(engine)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled = (signal.SIGTERM, signal.SIGINT)
    try:
        sessionmaker = make_sessionmaker(engine)
        principal = await resolve_principal(sessionmaker, api_key)
        key = ListenerKey(api_key, cache_seconds=settings.api_key_cache_seconds)
        await key.current(sessionmaker)
        receiver = MllpReceiver(
            sessionmaker=sessionmaker,
            read_sessionmaker=make_sessionmaker(engine, read_only=True),
            key=key,
            limits=limits or MllpLimits.from_settings(settings),
        )
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=host)
        await receiver.start(host, port)
        for signum in handled:
            loop.add_signal_handler(signum, stop.set)
        log.info(
            "MLLP listener on %s:%d for organization %s", host, port, principal.organization_id
        )
        await stop.wait()
        log.info("MLLP listener stopping: finishing the frames in hand")
        await receiver.shutdown()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await engine.dispose()


def run_mllp(
    settings: Settings,
    *,
    host: str,
    port: int,
    api_key: str,
    metrics_port: int | None = None,
) -> None:
    """The CLI entry point (``python -m app mllp``): serve until SIGTERM / SIGINT."""
    asyncio.run(
        serve_mllp(settings, host=host, port=port, api_key=api_key, metrics_port=metrics_port)
    )
