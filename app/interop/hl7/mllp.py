"""An MLLP listener (HL7 v2 over TCP): the same processing and ACKs as the HTTP route.

Framing per the MLLP release 2 spec: each message is ``<VT>`` (0x0B) … ``<FS><CR>`` (0x1C 0x0D),
and each is answered by one framed ACK (the ACKs of a batch, concatenated). A frame larger than
``max_message_bytes``, a connection silent for ``idle_timeout`` seconds, or a frame that does
not complete within ``read_timeout`` seconds closes the connection; a client that disconnects
mid-message is simply dropped (nothing of the partial message is processed).

MLLP has no credentials of its own: the listener runs as the principal of one API key, given
at start-up (``python -m app mllp --port 2575 --api-key mlk_...``), whose organization
receives the results. Every stored message writes an audit row like the HTTP route's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.audit.service import AuditEntry
from app.auth import service as auth
from app.auth.principal import Principal, Rejection, Scope
from app.config import Settings
from app.db import make_engine, make_sessionmaker, transaction, utcnow
from app.errors import AppError
from app.interop.hl7 import service
from app.interop.hl7.service import MessageOutcome

log = logging.getLogger("app.interop.hl7.mllp")

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_READ_TIMEOUT = 30.0


class MllpConfigurationError(AppError):
    """The listener cannot start: the API key is invalid or may not post panels. (An AppError,
    so the CLI prints it as ``error: ...`` and exits 1.)"""

    status = 500
    type_slug = "mllp-configuration"
    title = "The MLLP listener is misconfigured"


@dataclass(frozen=True, slots=True)
class MllpLimits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT


def frame(payload: str) -> bytes:
    return START_BLOCK + payload.encode("utf-8") + END_BLOCK


async def resolve_principal(
    sessionmaker: async_sessionmaker[AsyncSession], api_key: str
) -> Principal:
    """The principal of ``api_key``, which must be valid and allowed to post panels."""
    async with transaction(sessionmaker) as session:
        verified = await auth.verify_api_key(session, token=api_key, now=utcnow())
    if isinstance(verified, Rejection):
        raise MllpConfigurationError(f"the API key is refused: {verified.reason}")
    principal = auth.principal_for_key(verified)
    missing = principal.missing_scopes(Scope.PANELS_WRITE)
    if missing:
        raise MllpConfigurationError(
            f"the API key's role '{principal.role}' lacks {', '.join(missing)}"
        )
    return principal


class MllpReceiver:
    """Serves MLLP connections: one transaction per frame, one framed answer per frame."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        principal: Principal,
        limits: MllpLimits | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.principal = principal
        self.limits = limits or MllpLimits()

    async def start(self, host: str, port: int) -> asyncio.Server:
        # The stream buffer limit bounds a frame: readuntil() fails beyond it.
        return await asyncio.start_server(
            self.serve_connection, host, port, limit=self.limits.max_message_bytes
        )

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                payload = await self._read_frame(reader)
                if payload is None:
                    break
                answer = await self.answer(payload.decode("utf-8", errors="replace"), peer)
                writer.write(frame(answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("MLLP client %s disconnected", peer)
        except TimeoutError:
            log.info("MLLP client %s timed out", peer)
        except (asyncio.LimitOverrunError, ValueError):
            log.warning(
                "MLLP client %s sent a frame over %d bytes", peer, self.limits.max_message_bytes
            )
        except Exception:
            # Never let one connection's failure (e.g. the database is down) go unlogged or
            # take the listener with it; the sender gets no ACK and will resend.
            log.exception("MLLP connection from %s failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next frame's payload; None at a clean end of stream between frames."""
        while True:
            try:
                first = await asyncio.wait_for(reader.readexactly(1), self.limits.idle_timeout)
            except asyncio.IncompleteReadError:
                return None
            if first == START_BLOCK:
                break
            # Bytes between frames (stray CR/LF from some senders) are skipped.
        framed = await asyncio.wait_for(reader.readuntil(END_BLOCK), self.limits.read_timeout)
        return framed[: -len(END_BLOCK)]

    async def answer(self, text: str, peer: object = None) -> str:
        async with transaction(self.sessionmaker) as session:
            outcomes = await service.receive(
                session, organization_id=self.principal.organization_id, text=text
            )
            await audit.append(session, [self._audit_entry(outcomes, peer)])
        return service.ack_of(outcomes)

    def _audit_entry(self, outcomes: list[MessageOutcome], peer: object) -> AuditEntry:
        stored = [panel for outcome in outcomes for panel in outcome.panels]
        first = stored[0] if stored else None
        unchanged = bool(stored) and all(p.change == "unchanged" for p in stored)
        address = peer[0] if isinstance(peer, tuple) and peer else None
        return AuditEntry(
            organization_id=self.principal.organization_id,
            principal_id=self.principal.id,
            principal_kind=self.principal.kind,
            role=str(self.principal.role),
            action="read" if unchanged else "create",
            resource_type="panel",
            resource_id=str(first.panel_id) if first else None,
            patient_id=first.patient_id if first else None,
            outcome="success",
            status_code=200,
            method="MLLP",
            path="mllp",
            client_address=str(address) if address else None,
        )


async def serve_mllp(
    settings: Settings,
    *,
    host: str,
    port: int,
    api_key: str,
    limits: MllpLimits | None = None,
) -> None:
    engine = make_engine(settings)
    try:
        sessionmaker = make_sessionmaker(engine)
        principal = await resolve_principal(sessionmaker, api_key)
        receiver = MllpReceiver(sessionmaker=sessionmaker, principal=principal, limits=limits)
        server = await receiver.start(host, port)
        log.info(
            "MLLP listener on %s:%d for organization %s", host, port, principal.organization_id
        )
        async with server:
            await server.serve_forever()
    finally:
        await engine.dispose()


def run_mllp(settings: Settings, *, host: str, port: int, api_key: str) -> None:
    """The CLI entry point (``python -m app mllp``): serve until interrupted."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_mllp(settings, host=host, port=port, api_key=api_key))
