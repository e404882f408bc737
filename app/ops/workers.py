"""``serve --workers N`` (N > 1) with one listening socket per worker (issue 15, scale-out).

uvicorn's workers share ONE listening socket, and whichever worker's event loop wakes first
accepts every connection waiting (uvloop accepts until the queue is empty). Clients that keep
their connections open (an EHR's or a lab interface's HTTP pool, a proxy, wrk) open them
together, so one worker often gets all of them while the other idles: measured with 2 workers
and 16 connections, 3 loads in 10 split 16/0. With SO_REUSEPORT each worker listens on a socket
of its own, bound to the same address, and the kernel spreads new connections over them.

The supervisor stays uvicorn's (health pings, restarts, signals, graceful shutdown); only the
sockets its workers listen on change. Before it binds the address for sharing, it binds it once
WITHOUT SO_REUSEPORT: a second ``serve`` on a port in use still fails to start instead of
silently taking part of the traffic.

Keep this module's imports light: a new worker unpickles ``BalancedWorker`` (importing this
module) before its answer to the supervisor's health pings starts, and a slow import there
gets it killed as hung and restarted, again and again (the app package's CLI imports took
longer than uvicorn's 5 s on a loaded machine).
"""

from __future__ import annotations

import logging
import socket
import sys

from uvicorn import Config
from uvicorn.supervisors import multiprocess

_STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start

logger = logging.getLogger("uvicorn.error")


class BalancedWorker(multiprocess.Process):
    """uvicorn's worker process, serving on a socket of its own bound to the shared address."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        own = [own_socket(shared) for shared in sockets or []]
        for shared in sockets or []:
            shared.close()  # the supervisor keeps its copy: the address stays held
        super().target(own)


def serve_workers(config: Config) -> None:
    """uvicorn's ``Multiprocess`` supervisor, its workers each on their own socket."""
    listener = reserve(config.host, config.port)
    if listener is None:
        sys.exit(_STARTUP_FAILURE)
    # The supervisor makes its workers with this module-level name; this process is the
    # supervisor and nothing else, so the replacement stays here.
    setattr(multiprocess, "Process", BalancedWorker)  # noqa: B010
    try:
        multiprocess.Multiprocess(config, sockets=[listener]).run()
    except KeyboardInterrupt:  # pragma: no cover
        pass
    finally:
        listener.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _shareable(family: socket.AddressFamily, *, reuse_address: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def reserve(host: str, port: int) -> socket.socket | None:
    """The supervisor's socket: the address bound for sharing (SO_REUSEPORT), never listening,
    so it takes no connection and only holds the address; None when the address is taken."""
    family = _family(host)
    try:
        with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # not shareable: fails while anyone holds the address
        # SO_REUSEPORT alone: with SO_REUSEADDR too, Linux would let an ordinary
        # SO_REUSEADDR bind (another server's) share the address while no worker listens yet.
        listener = _shareable(family, reuse_address=False)
        try:
            listener.bind((host, port))
        except OSError:
            listener.close()
            raise
    except OSError as exc:
        logger.error(exc)
        return None
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    logger.info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", shown, listener.getsockname()[1]
    )
    listener.set_inheritable(True)
    return listener


def own_socket(shared: socket.socket) -> socket.socket:
    """A worker's listening socket, bound with SO_REUSEPORT to `shared`'s address."""
    own = _shareable(shared.family, reuse_address=True)
    try:
        own.bind(shared.getsockname())
    except OSError:
        own.close()
        raise
    return own
