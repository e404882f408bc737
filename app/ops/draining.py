"""Graceful shutdown of the HTTP service.

On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets in-flight requests finish
(up to ``MINERAL_SHUTDOWN_GRACE_SECONDS``), then runs the application's shutdown. This module
adds the part uvicorn does not do: from the moment the signal arrives the worker is *draining*,
and any request that still reaches it (one already queued on a kept-alive connection, one
accepted before the listening socket closed) is answered ``503`` with ``Retry-After`` and
``Connection: close`` instead of starting work the worker may not finish. ``/health/live``
keeps answering 200 (the process is alive); ``/health/ready`` is 503 like every other route.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import problem_response

log = logging.getLogger("app.ops")

RETRY_AFTER_SECONDS = 5
_ALWAYS_ANSWERED = frozenset({"/health/live"})


class Drain:
    """Whether this worker is shutting down."""

    def __init__(self) -> None:
        self.draining = False

    def start(self) -> None:
        if not self.draining:
            log.info("draining: new requests are answered 503 while in-flight ones finish")
        self.draining = True


def chain_signal_handlers(drain: Drain) -> None:
    """Start draining as soon as SIGTERM/SIGINT arrives, then let the server's own handler run.

    Called from the application's startup, when uvicorn has installed its handlers (it uses
    ``signal.signal`` in the main thread). Does nothing off the main thread (the test client
    runs the app in a worker thread) or when no Python handler is installed."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(received: int, frame: FrameType | None, _previous: Any = previous) -> None:
            drain.start()
            _previous(received, frame)

        signal.signal(signum, handler)


class DrainMiddleware:
    """Answers 503 (problem+json, ``Retry-After``, ``Connection: close``) while draining."""

    def __init__(self, app: ASGIApp, *, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.drain.draining
            or scope.get("path") in _ALWAYS_ANSWERED
        ):
            await self.app(scope, receive, send)
            return
        response = problem_response(
            503,
            title="The service is shutting down",
            detail="This instance is restarting or stopping; retry the request.",
            type_slug="shutting-down",
            instance=scope.get("path"),
            headers={"retry-after": str(RETRY_AFTER_SECONDS), "connection": "close"},
        )
        await response(scope, receive, send)
