"""``serve`` (the HTTP service) and ``mllp`` (the HL7 v2 listener)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from app.cli.database import migrate
from app.cli.options import options
from app.core.config import Settings


def serve(settings: Settings, *, host: str, port: int, workers: int, migrate_first: bool) -> None:
    import uvicorn

    from app.ops.metrics import prepare_multiprocess_dir

    if migrate_first:
        migrate(settings)
    prepare_multiprocess_dir()
    server_options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": settings.log_level.lower(),
        "proxy_headers": True,
        "server_header": False,
        # uvicorn's access log prints query strings, which can hold identifiers (an MRN in
        # ?identifier=...): the app logs its own access lines, without them.
        "access_log": False,
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then stop.
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_grace_seconds)),
    }
    if workers > 1 and settings.audit_chains <= 1:
        # Measured (issue 15): 2 workers on one chain miss their tail guess on 70-95 % of
        # appends (one more statement each) and some one-statement GETs lose the race five
        # times in a row (a 500).
        print(
            "warning: several workers append to ONE audit chain; set MINERAL_AUDIT_CHAINS=64 "
            "(README, Scaling out)",
            file=sys.stderr,
        )
    if workers > 1 and hasattr(socket, "SO_REUSEPORT"):
        # A listening socket per worker (app.ops.workers): connections spread over them.
        from app.ops.workers import serve_workers

        serve_workers(uvicorn.Config(APP, **server_options))
    else:
        uvicorn.run(APP, **server_options)


APP = "app.main:create_app"


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        migrate_first=not args.no_migrate,
    )
    return 0


def _mllp(args: argparse.Namespace, settings: Settings) -> int:
    from app.interop.hl7.mllp import run_mllp

    if not args.api_key:
        print("error: give --api-key or set MINERAL_MLLP_API_KEY", file=sys.stderr)
        return 2
    run_mllp(settings, **options(args, "host", "port", "api_key", "metrics_port"))
    return 0


def register(commands: Any) -> None:
    serve_cmd = commands.add_parser("serve", help="apply migrations and run the HTTP service")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000)
    serve_cmd.add_argument("--workers", type=int, default=1)
    serve_cmd.add_argument(
        "--no-migrate", action="store_true", help="do not apply migrations before serving"
    )
    serve_cmd.set_defaults(handler=_serve)

    mllp = commands.add_parser("mllp", help="run the HL7 v2 MLLP listener")
    mllp.add_argument("--host", default="127.0.0.1")
    mllp.add_argument("--port", type=int, default=2575)
    mllp.add_argument(
        "--api-key",
        default=os.environ.get("MINERAL_MLLP_API_KEY"),
        help="integration API key whose organization receives the results "
        "(default: $MINERAL_MLLP_API_KEY; prefer it, command lines are visible to others)",
    )
    mllp.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="also serve Prometheus metrics of the listener on this port (default: off)",
    )
    mllp.set_defaults(handler=_mllp)
