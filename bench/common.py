"""Shared by the benchmark modules: paths, the loads' constants, errors, logging and signal
handling (bench/run.py is the entry point)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FLOOR_DIR = REPO_ROOT.parent / "shared" / "bench"
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "latest.json"

Db = Literal["postgresql", "sqlite"]
Service = Literal["floor", "ours"]
Endpoint = Literal["POST", "GET"]

SERVICES: tuple[Service, ...] = ("floor", "ours")
ENDPOINTS: tuple[Endpoint, ...] = ("POST", "GET")
DB_LABELS: dict[Db, str] = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
DB_ALIASES: dict[str, Db] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "pg": "postgresql",
    "sqlite": "sqlite",
}
# Minimum ours/floor throughput ratio per database and endpoint.
TARGETS: dict[Db, dict[Endpoint, float]] = {
    "postgresql": {"POST": 2.5, "GET": 3.0},
    "sqlite": {"POST": 1.2, "GET": 1.2},
}
BUSY_CPU_WARNING = 20.0  # % CPU in use while idle that makes a load's figure suspect
EXPECTED_STATUS: dict[Endpoint, int] = {"POST": 201, "GET": 200}
ENDPOINT_LABELS: dict[Endpoint, str] = {"POST": "POST panel", "GET": "GET panel"}

# The floor's panel (post_panel.lua), the same four analytes and values for our service.
ANALYTES: tuple[tuple[str, float | int, str], ...] = (
    ("magnesium", 1.6, "mg/dL"),
    ("calcium", 9.1, "mg/dL"),
    ("zinc", 55, "ug/dL"),
    ("iron", 80, "ug/dL"),
)
FLOOR_COLLECTED_AT = "2026-11-20T08:00:00Z"
OUR_SOURCE = "bench"


class HarnessError(Exception):
    """The benchmark cannot go on (a service did not start, a sample request failed, ...)."""


class Interrupted(Exception):
    """SIGTERM / SIGHUP: unwind through every finally block like Ctrl-C does."""


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore Ctrl-C / SIGTERM / SIGHUP while cleaning up, so a second Ctrl-C cannot leave a
    process or a scratch database behind."""
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind through every finally block like Ctrl-C does."""
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C even when started from a shell that ignores SIGINT for background jobs.
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
