"""Side-by-side benchmark: this service against the floor app (../shared/bench/floor_app.py).

For each database (PostgreSQL, SQLite) it creates scratch databases, starts both services on
free loopback ports with the same worker count, checks one sample request of each kind, warms
both up, then loads each service ALONE with the same wrk load (POST a 4-analyte panel, GET a
panel by id), alternating the order between repeats. It prints floor req/s, ours req/s, the
ratio and the target per database, and writes everything to bench/results/latest.json.

    python bench/run.py                       # both databases, 10 s per load, 16 connections
    python bench/run.py --db sqlite --repeat 3 --duration 20

Standard library + httpx only. Processes run in their own process groups and are killed, and
scratch databases dropped, whatever happens (errors, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import httpx

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


# --------------------------------------------------------------------------- prerequisites


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is missing: installing it with `apt-get install -y wrk`")
    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        log("apt-get install failed; running `apt-get update` and trying again")
        subprocess.run([*prefix, "apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise HarnessError("wrk is still not on PATH after apt-get install")
    return found


def ensure_psycopg() -> None:
    if importlib.util.find_spec("psycopg") is not None:
        return
    log(f"psycopg is missing: pip install 'psycopg[binary]' into {sys.prefix}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "psycopg[binary]"], check=True)
    importlib.invalidate_caches()


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_process(
    name: str, cmd: Sequence[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> Proc:
    with log_path.open("wb") as out:
        popen = subprocess.Popen(
            list(cmd),
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: killpg reaches uvicorn's workers too
        )
    return Proc(name=name, popen=popen, log_path=log_path)


def stop_process(proc: Proc, *, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of the group."""
    pgid = proc.popen.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{proc.name} did not stop within {grace:.0f} s: SIGKILL")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers (workers) even if the parent has exited
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=5)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat; None where there is none."""
    try:
        fields = Path("/proc/stat").read_text("ascii").splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def _process_ticks() -> dict[int, int]:
    """utime + stime (clock ticks) of every process, from /proc/<pid>/stat."""
    ticks: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text("utf-8", errors="replace")
                rest = raw[raw.rindex(")") + 2 :].split()
                ticks[int(entry.name)] = int(rest[11]) + int(rest[12])
            except (OSError, ValueError, IndexError):
                continue
    return ticks


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [w.decode("utf-8", errors="replace") for w in argv if w]
    command = " ".join(Path(w).name if i == 0 else w for i, w in enumerate(words))
    return f"pid {pid} {command[:70]}"


@dataclass
class Busy:
    percent: float  # of all CPUs
    top: list[str]  # the busiest processes meanwhile, "<% of one CPU> <pid> <command>"


def busy_cpu(seconds: float) -> Busy | None:
    """Sleep `seconds` and return how busy the machine was during the last three quarters of
    it (the first quarter lets the previous load's tail settle), and by which processes."""
    time.sleep(seconds / 4)
    before, procs_before = _cpu_times(), _process_ticks()
    window = seconds * 3 / 4
    time.sleep(window)
    after, procs_after = _cpu_times(), _process_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    percent = round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)
    hz = os.sysconf("SC_CLK_TCK")
    deltas = sorted(
        ((t - procs_before[pid], pid) for pid, t in procs_after.items() if pid in procs_before),
        reverse=True,
    )
    # the processes that used at least a tenth of a CPU meanwhile
    top = [
        f"{100.0 * d / hz / window:.0f}% {_describe(pid)}"
        for d, pid in deltas[:3]
        if d / hz / window >= 0.1
    ]
    return Busy(percent=percent, top=top)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(proc: Proc, url: str, *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise HarnessError(
                    f"{proc.name} exited with {proc.popen.returncode} before it was ready:\n"
                    f"{proc.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.2)
    raise HarnessError(f"{proc.name} not ready at {url} after {timeout:.0f} s:\n{proc.log_tail()}")


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str

    def url(self, database: str, driver: str = "") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"


_PG_ADMIN_SCRIPT = """
import json, sys
import psycopg
conninfo, statements = sys.argv[1], json.loads(sys.argv[2])
with psycopg.connect(conninfo, autocommit=True) as conn:
    for statement in statements:
        cursor = conn.execute(statement)
        if cursor.description is not None:
            print(json.dumps([list(r) for r in cursor.fetchall()], default=str))
"""


def pg_run(server: PgServer, database: str, statements: Sequence[str]) -> list[str]:
    """Run SQL through psycopg in a child interpreter (keeps this file stdlib + httpx only)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PG_ADMIN_SCRIPT,
            server.url(database),
            json.dumps(list(statements)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise HarnessError(f"PostgreSQL: {'; '.join(statements)} failed:\n{done.stderr.strip()}")
    return done.stdout.splitlines()


def pg_drop(server: PgServer, name: str) -> None:
    try:
        pg_run(server, "postgres", [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
    except HarnessError:  # PostgreSQL < 13 has no FORCE
        pg_run(server, "postgres", [f'DROP DATABASE IF EXISTS "{name}"'])
    log(f"dropped database {name}")


@dataclass(frozen=True)
class Scratch:
    """Where each service keeps its data for one database kind."""

    db: Db
    floor_url: str  # FLOOR_DB
    ours_url: str  # DATABASE_URL
    count_panels: Callable[[Service], int]


def make_scratch(
    db: Db, token: str, stack: contextlib.ExitStack, args: argparse.Namespace
) -> Scratch:
    if db == "postgresql":
        server = PgServer(args.pg_host, args.pg_port, args.pg_user)
        names: dict[Service, str] = {"floor": f"bench_floor_{token}", "ours": f"bench_app_{token}"}
        for name in names.values():
            pg_run(server, "postgres", [f'CREATE DATABASE "{name}"'])
            stack.callback(_quietly, f"drop database {name}", pg_drop, server, name)
            log(f"created database {name}")

        def count_pg(service: Service) -> int:
            sql = "SELECT count(*) FROM panel"
            if service == "ours":
                sql += f" WHERE source = '{OUR_SOURCE}'"
            return int(json.loads(pg_run(server, names[service], [sql])[0])[0][0])

        return Scratch(
            db=db,
            floor_url=server.url(names["floor"], "psycopg"),
            ours_url=server.url(names["ours"]),
            count_panels=count_pg,
        )

    folder = Path(tempfile.mkdtemp(prefix=f"bench_sqlite_{token}_"))
    stack.callback(_quietly, f"remove {folder}", shutil.rmtree, folder, True)
    files: dict[Service, Path] = {"floor": folder / "floor.db", "ours": folder / "app.db"}
    log(f"SQLite files in {folder}")

    def count_sqlite(service: Service) -> int:
        sql = "SELECT count(*) FROM panel"
        if service == "ours":
            sql += f" WHERE source = '{OUR_SOURCE}'"
        with contextlib.closing(sqlite3.connect(files[service], timeout=30)) as conn:
            return int(conn.execute(sql).fetchone()[0])

    return Scratch(
        db=db,
        floor_url=f"sqlite:///{files['floor']}",
        ours_url=f"sqlite:///{files['ours']}",
        count_panels=count_sqlite,
    )


def _quietly(what: str, fn: Callable[..., object], *fn_args: object) -> None:
    try:
        fn(*fn_args)
    except Exception as exc:  # cleanup must go on with the next item
        log(f"cleanup: {what} failed: {exc}")


# --------------------------------------------------------------------------- wrk


_REPORTER_LUA = """
-- Appended to every script so each load costs wrk the same: count statuses per thread and
-- print one machine-readable line at the end.
local bench_threads = {}
function setup(thread)
  table.insert(bench_threads, thread)
  thread:set("tid", #bench_threads)
end
statuses = {}
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(bench_threads) do
    for k, v in pairs(t:get("statuses") or {}) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},"statuses":{%s}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, table.concat(parts, ",")))
end
"""


def _lua_long_string(text: str) -> str:
    level = "=" * 4
    if f"]{level}]" in text:
        raise ValueError("body contains the Lua long-string terminator")
    return f"[{level}[{text}]{level}]"


def our_panel_body(patient_id: str, accession: str, collected_at: str) -> dict[str, Any]:
    return {
        "patient": {"id": patient_id},
        "source": OUR_SOURCE,
        "accession": accession,
        "collected_at": collected_at,
        "results": [
            {"analyte": code, "value": value, "unit": unit} for code, value, unit in ANALYTES
        ],
    }


def write_scripts(
    folder: Path, floor_dir: Path, patient_id: str, collected_at: str, api_key: str
) -> dict[str, Path]:
    """wrk scripts: the floor's POST (post_panel.lua verbatim), ours with a unique accession
    and a unique Idempotency-Key per request (prefix from the script argument, wrk thread
    number, counter) and our API key, and the GETs (ours authenticated)."""
    floor_post = (floor_dir / "post_panel.lua").read_text("utf-8")
    marker = "@@ACCESSION@@"
    template = json.dumps(
        our_panel_body(patient_id, marker, collected_at), separators=(",", ":")
    ).replace("%", "%%")
    template = template.replace(marker, "%s-%d-%d")
    ours_post = f"""
wrk.method = "POST"
local body_format = {_lua_long_string(template)}
local prefix = "bench"
local counter = 0
function init(args)
  if args[1] then prefix = args[1] end
end
function request()
  counter = counter + 1
  local headers = {{
    ["Content-Type"] = "application/json",
    ["X-API-Key"] = "{api_key}",
    ["Idempotency-Key"] = string.format("%s-%d-%d", prefix, tid or 0, counter),
  }}
  return wrk.format(nil, nil, headers, string.format(body_format, prefix, tid or 0, counter))
end
"""
    ours_get = f"""
wrk.headers["X-API-Key"] = "{api_key}"
"""
    scripts = {
        "floor_post": floor_post + "\n" + _REPORTER_LUA,
        "ours_post": ours_post + _REPORTER_LUA,
        "get": _REPORTER_LUA,
        "ours_get": ours_get + _REPORTER_LUA,
    }
    paths: dict[str, Path] = {}
    for name, text in scripts.items():
        path = folder / f"{name}.lua"
        path.write_text(text, "utf-8")
        paths[name] = path
    return paths


@dataclass
class WrkResult:
    service: Service
    endpoint: Endpoint
    phase: str  # "warmup" or "round N"
    rps: float
    requests: int
    duration_s: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    statuses: dict[str, int]
    latency_ms: dict[str, float]
    unexpected_statuses: int = 0
    # CPU in use on the machine (%) just before this load, while both services were idle:
    # anything well above 0 is someone else's work competing with the benchmark.
    busy_cpu_before: float | None = None
    busy_top: list[str] = field(default_factory=list)

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())


def run_wrk(
    wrk: str,
    *,
    url: str,
    script: Path,
    script_args: Sequence[str],
    args: argparse.Namespace,
    duration: float,
    service: Service,
    endpoint: Endpoint,
    phase: str,
) -> WrkResult:
    cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(duration))}s",
        "-s",
        str(script),
        url,
    ]
    if script_args:
        cmd += ["--", *script_args]
    popen = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc = Proc(name="wrk", popen=popen, log_path=Path(os.devnull))
    try:
        out_bytes, _ = popen.communicate(timeout=duration + 60)
    finally:  # also on Ctrl-C: wrk runs in its own session and would not see the SIGINT
        with signals_held():
            stop_process(proc, grace=2.0)
    out = out_bytes.decode("utf-8", errors="replace")
    if popen.returncode != 0:
        raise HarnessError(f"wrk failed ({popen.returncode}): {' '.join(cmd)}\n{out}")
    return parse_wrk(out, service=service, endpoint=endpoint, phase=phase)


def parse_wrk(out: str, *, service: Service, endpoint: Endpoint, phase: str) -> WrkResult:
    data: dict[str, Any] | None = None
    rps: float | None = None
    non_2xx = 0
    for line in out.splitlines():
        stripped = line.strip()
        if stripped.startswith("BENCH_RESULT "):
            data = json.loads(stripped.removeprefix("BENCH_RESULT "))
        elif stripped.startswith("Requests/sec:"):
            rps = float(stripped.split(":", 1)[1])
        elif stripped.startswith("Non-2xx or 3xx responses:"):
            non_2xx = int(stripped.split(":", 1)[1])
    if data is None:
        raise HarnessError(f"no BENCH_RESULT line in wrk's output:\n{out}")
    duration_s = data["duration_us"] / 1e6
    requests = int(data["requests"])
    errors = {k: int(v) for k, v in data["errors"].items() if k != "status"}
    statuses = {str(k): int(v) for k, v in data["statuses"].items()}
    expected = str(EXPECTED_STATUS[endpoint])
    latency = {k: round(float(v) / 1000, 2) for k, v in data["latency_us"].items()}
    return WrkResult(
        service=service,
        endpoint=endpoint,
        phase=phase,
        rps=rps if rps is not None else requests / duration_s,
        requests=requests,
        duration_s=round(duration_s, 3),
        non_2xx_3xx=non_2xx,
        socket_errors=errors,
        statuses=statuses,
        latency_ms=latency,
        unexpected_statuses=sum(v for k, v in statuses.items() if k != expected),
    )


# --------------------------------------------------------------------------- services


@dataclass
class Target:
    service: Service
    base: str
    post_path: str
    get_path: str
    post_script: Path
    proc: Proc


def start_floor(
    scratch: Scratch, args: argparse.Namespace, work: Path, stack: contextlib.ExitStack
) -> tuple[Proc, str]:
    port = free_port()
    env = {**os.environ, "FLOOR_DB": scratch.floor_url}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "floor_app:app",
        "--app-dir",
        str(args.floor_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--log-level",
        args.log_level.lower(),
    ]
    proc = start_process(
        "floor", cmd, env=env, cwd=args.floor_dir, log_path=work / f"floor_{scratch.db}.log"
    )
    stack.callback(_quietly, "stop floor", stop_process, proc)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{base}/raw")
    return proc, base


def start_ours(
    scratch: Scratch, args: argparse.Namespace, work: Path, stack: contextlib.ExitStack
) -> tuple[Proc, str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": scratch.ours_url,
        "MINERAL_LOG_LEVEL": args.log_level.upper(),
    }
    env.pop("MINERAL_DATABASE_URL", None)
    migrate = subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if migrate.returncode != 0:
        raise HarnessError(f"`python -m app migrate` failed:\n{migrate.stdout}{migrate.stderr}")
    log(f"ours: {migrate.stdout.strip() or 'migrated'}")
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "create-api-key",
            "--org",
            "default",
            "--role",
            "integration",
            "--name",
            "bench",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if created.returncode != 0:
        raise HarnessError(f"`python -m app create-api-key` failed:\n{created.stderr}")
    api_key = created.stdout.strip().splitlines()[-1].strip()
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "app",
        "serve",
        "--no-migrate",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    ]
    proc = start_process(
        "ours", cmd, env=env, cwd=REPO_ROOT, log_path=work / f"ours_{scratch.db}.log"
    )
    stack.callback(_quietly, "stop ours", stop_process, proc)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{base}/health/ready")
    return proc, base, api_key


def _expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise HarnessError(
            f"{what}: expected {status}, got {response.status_code}: {response.text[:2000]}"
        )
    body: dict[str, Any] = response.json()
    return body


def sample_floor(base: str, floor_dir: Path) -> tuple[str, dict[str, Any]]:
    """POST the README's panel once (201) and read it back (200); the id GET loads use."""
    lua = (floor_dir / "post_panel.lua").read_text("utf-8")
    start = lua.index("wrk.body = '") + len("wrk.body = '")
    body = lua[start : lua.index("'", start)]
    with httpx.Client(base_url=base, timeout=10) as client:
        created = _expect(
            client.post("/panels", content=body, headers={"Content-Type": "application/json"}),
            201,
            "floor sample POST /panels",
        )
        panel_id = str(created["id"])
        _expect(client.get(f"/panels/{panel_id}"), 200, "floor sample GET /panels/{id}")
    flags = {r["analyte"]: r["flag"] for r in created["results"]}
    return panel_id, {"panel_id": panel_id, "flags": flags}


def sample_ours(
    base: str, token: str, collected_at: str, api_key: str
) -> tuple[str, str, dict[str, Any]]:
    """Register the patient, POST one panel (must be 201), re-send it (must be 200, nothing
    written) and read it back (200). Returns the patient id and the panel id GET loads use."""
    with httpx.Client(base_url=base, timeout=10, headers={"X-API-Key": api_key}) as client:
        patient = _expect(
            client.post(
                "/api/v1/patients",
                json={
                    "identifiers": [{"system": "urn:bench", "value": f"bench-{token}"}],
                    "sex": "female",
                    "birth_date": "1980-01-01",
                },
            ),
            201,
            "ours POST /api/v1/patients",
        )
        patient_id = str(patient["id"])
        body = our_panel_body(patient_id, f"sample-{token}", collected_at)
        created = _expect(client.post("/api/v1/panels", json=body), 201, "ours sample POST panel")
        panel_id = str(created["id"])
        if len(created["results"]) != len(ANALYTES):
            raise HarnessError(f"ours stored {len(created['results'])} results, not 4")
        again = _expect(client.post("/api/v1/panels", json=body), 200, "ours re-sent panel")
        if again["id"] != panel_id:
            raise HarnessError("ours answered a re-sent panel with a different panel")
        _expect(client.get(f"/api/v1/panels/{panel_id}"), 200, "ours sample GET panel")
    flags = {r["analyte"]: r["interpretation"]["code"] for r in created["results"]}
    return patient_id, panel_id, {"patient_id": patient_id, "panel_id": panel_id, "flags": flags}


def our_collected_at() -> str:
    """The floor's collection time, unless this machine's clock says it is in the future."""
    fixed = datetime.fromisoformat(FLOOR_COLLECTED_AT)
    now = datetime.now(UTC)
    if fixed > now - timedelta(minutes=10):
        fixed = (now - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    return fixed.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- one database


@dataclass
class Row:
    endpoint: Endpoint
    floor_rps: float
    ours_rps: float
    ratio: float
    target: float
    passed: bool
    floor_runs: list[float]
    ours_runs: list[float]


@dataclass
class DbReport:
    db: Db
    rows: list[Row] = field(default_factory=list)
    runs: list[WrkResult] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)
    stored: dict[str, Any] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)


def bench_database(db: Db, args: argparse.Namespace, wrk: str, work: Path) -> DbReport:
    report = DbReport(db=db)
    token = f"{os.getpid()}_{secrets.token_hex(3)}"
    collected_at = our_collected_at()
    stack = contextlib.ExitStack()  # unwinds: stop services, then drop databases
    try:
        scratch = make_scratch(db, token, stack, args)
        floor_proc, floor_base = start_floor(scratch, args, work, stack)
        log(f"floor ready at {floor_base} (pid {floor_proc.popen.pid})")
        ours_proc, ours_base, api_key = start_ours(scratch, args, work, stack)
        log(f"ours ready at {ours_base} (pid {ours_proc.popen.pid})")
        if args.workers > 1:
            # floor_app drops and recreates its tables in every worker on import: let all of
            # them finish before storing the panel the GET loads read.
            time.sleep(1.0 + 0.5 * args.workers)

        floor_panel, report.samples["floor"] = sample_floor(floor_base, args.floor_dir)
        patient_id, our_panel, report.samples["ours"] = sample_ours(
            ours_base, token, collected_at, api_key
        )
        log(f"sample requests OK: floor panel {floor_panel}, ours panel {our_panel}")
        scripts = write_scripts(work, args.floor_dir, patient_id, collected_at, api_key)
        targets: dict[Service, Target] = {
            "floor": Target(
                "floor",
                floor_base,
                "/panels",
                f"/panels/{floor_panel}",
                scripts["floor_post"],
                floor_proc,
            ),
            "ours": Target(
                "ours",
                ours_base,
                "/api/v1/panels",
                f"/api/v1/panels/{our_panel}",
                scripts["ours_post"],
                ours_proc,
            ),
        }

        def load(
            target: Target,
            endpoint: Endpoint,
            phase: str,
            duration: float,
            busy: Busy | None = None,
        ) -> WrkResult:
            if target.proc.popen.poll() is not None:
                raise HarnessError(f"{target.service} died:\n{target.proc.log_tail()}")
            path = target.post_path if endpoint == "POST" else target.get_path
            get_script = scripts["ours_get"] if target.service == "ours" else scripts["get"]
            script = target.post_script if endpoint == "POST" else get_script
            script_args = [f"{phase.replace(' ', '')}-{token}"] if target.service == "ours" else []
            result = run_wrk(
                wrk,
                url=target.base + path,
                script=script,
                script_args=script_args if endpoint == "POST" else [],
                args=args,
                duration=duration,
                service=target.service,
                endpoint=endpoint,
                phase=phase,
            )
            if busy is not None:
                result.busy_cpu_before = busy.percent
                result.busy_top = busy.top
            report.runs.append(result)
            log(
                f"{DB_LABELS[db]:<10} {phase:<8} {target.service:<5} {endpoint:<4} "
                f"{result.rps:9.1f} req/s  p50 {result.latency_ms['p50']:.1f} ms  "
                f"p99 {result.latency_ms['p99']:.1f} ms  statuses {result.statuses}  "
                f"socket errors {result.socket_error_total}"
                + (
                    f"  (machine {result.busy_cpu_before:.0f}% busy before)"
                    if result.busy_cpu_before
                    else ""
                )
            )
            return result

        if args.warmup > 0:
            for service in SERVICES:
                for endpoint in ENDPOINTS:
                    load(targets[service], endpoint, "warmup", args.warmup)

        measured: dict[tuple[Service, Endpoint], list[float]] = {}
        for round_no in range(1, args.repeat + 1):
            order: tuple[Service, Service] = (
                ("floor", "ours") if round_no % 2 == 1 else ("ours", "floor")
            )
            for service in order:  # one service under load at a time
                for endpoint in ENDPOINTS:
                    busy = busy_cpu(max(args.pause, 0.5))
                    result = load(
                        targets[service], endpoint, f"round {round_no}", args.duration, busy
                    )
                    measured.setdefault((service, endpoint), []).append(result.rps)

        for endpoint in ENDPOINTS:
            floor_runs = measured[("floor", endpoint)]
            ours_runs = measured[("ours", endpoint)]
            floor_rps = statistics.median(floor_runs)
            ours_rps = statistics.median(ours_runs)
            ratio = ours_rps / floor_rps if floor_rps > 0 else 0.0
            target_ratio = TARGETS[db][endpoint]
            report.rows.append(
                Row(
                    endpoint=endpoint,
                    floor_rps=round(floor_rps, 1),
                    ours_rps=round(ours_rps, 1),
                    ratio=round(ratio, 3),
                    target=target_ratio,
                    passed=ratio >= target_ratio,
                    floor_runs=[round(x, 1) for x in floor_runs],
                    ours_runs=[round(x, 1) for x in ours_runs],
                )
            )

        # Every 201 must have stored a panel: compare the rows in each database with the 201s
        # wrk saw (+1 sample panel; in-flight requests at wrk's stop may add up to -c more).
        for service in SERVICES:
            created = sum(
                r.statuses.get("201", 0)
                for r in report.runs
                if r.service == service and r.endpoint == "POST"
            )
            stored = scratch.count_panels(service)
            report.stored[service] = {"panels_stored": stored, "post_201_seen": created + 1}
            slack = args.connections * (args.repeat + 1) * 2
            if not created + 1 <= stored <= created + 1 + slack:
                report.anomalies.append(
                    f"{service}: {stored} panels stored but {created + 1} POSTs answered 201"
                )
        for r in report.runs:
            what = f"{r.service} {r.endpoint} ({r.phase})"
            if r.unexpected_statuses:
                report.anomalies.append(
                    f"{what}: {r.unexpected_statuses} responses other than "
                    f"{EXPECTED_STATUS[r.endpoint]}: {r.statuses}"
                )
            if r.non_2xx_3xx and not r.unexpected_statuses:
                report.anomalies.append(f"{what}: wrk counted {r.non_2xx_3xx} non-2xx/3xx")
            if r.socket_error_total:
                report.anomalies.append(f"{what}: socket errors {r.socket_errors}")
            if r.busy_cpu_before is not None and r.busy_cpu_before > BUSY_CPU_WARNING:
                report.anomalies.append(
                    f"{what}: machine busy before the load ({r.busy_cpu_before:.0f}% CPU "
                    f"in use while both services were idle; busiest: {', '.join(r.busy_top)})"
                )
            if r.requests == 0:
                report.anomalies.append(f"{what}: no request completed")
        for proc in (floor_proc, ours_proc):
            if proc.popen.poll() is not None:
                report.anomalies.append(f"{proc.name} exited with {proc.popen.returncode}")
    finally:
        log(f"{DB_LABELS[db]}: stopping services and removing scratch databases")
        with signals_held():
            stack.close()
    return report


# --------------------------------------------------------------------------- output


def format_table(report: DbReport, args: argparse.Namespace) -> str:
    title = (
        f"{DB_LABELS[report.db]}: workers={args.workers} connections={args.connections} "
        f"threads={args.threads} duration={args.duration:g}s repeat={args.repeat}"
        + (" (median)" if args.repeat > 1 else "")
    )
    header = (
        f"{'endpoint':<11} {'floor req/s':>11} {'ours req/s':>11} "
        f"{'ratio':>7} {'target':>7}  result"
    )
    lines = [title, header, "-" * len(header)]
    for row in report.rows:
        lines.append(
            f"{ENDPOINT_LABELS[row.endpoint]:<11} {row.floor_rps:>11.1f} {row.ours_rps:>11.1f} "
            f"{row.ratio:>6.2f}x {row.target:>6.2f}x  {'PASS' if row.passed else 'MISS'}"
        )
    measured = [r for r in report.runs if r.phase != "warmup"]
    for service in SERVICES:
        parts = []
        for endpoint in ENDPOINTS:
            runs = [r for r in measured if r.service == service and r.endpoint == endpoint]
            non2xx = sum(r.non_2xx_3xx for r in runs)
            unexpected = sum(r.unexpected_statuses for r in runs)
            sock = sum(r.socket_error_total for r in runs)
            statuses: dict[str, int] = {}
            for r in runs:
                for k, v in r.statuses.items():
                    statuses[k] = statuses.get(k, 0) + v
            status_text = " ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
            parts.append(
                f"{endpoint} non-2xx={non2xx} unexpected={unexpected} socket={sock} [{status_text}]"
            )
        lines.append(f"errors {service:<5}: " + " | ".join(parts))
    stored = report.stored
    if stored:
        lines.append(
            "stored panels: "
            + ", ".join(
                f"{s} {v['panels_stored']} (201s seen {v['post_201_seen']})"
                for s, v in stored.items()
            )
        )
    lines.append("anomalies: " + ("; ".join(report.anomalies) if report.anomalies else "none"))
    return "\n".join(lines)


def write_json(path: Path, reports: list[DbReport], args: argparse.Namespace, started: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "config": {
            "databases": list(args.db),
            "duration_s": args.duration,
            "connections": args.connections,
            "workers": args.workers,
            "threads": args.threads,
            "repeat": args.repeat,
            "warmup_s": args.warmup,
            "log_level": args.log_level,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "targets": TARGETS,
        "databases": {
            r.db: {
                "summary": [asdict(row) for row in r.rows],
                "all_pass": all(row.passed for row in r.rows),
                "runs": [asdict(run) for run in r.runs],
                "samples": r.samples,
                "stored": r.stored,
                "anomalies": r.anomalies,
            }
            for r in reports
        },
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--db", default="postgresql,sqlite", help="comma-separated: postgresql,sqlite"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load (10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per service (1)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the median is reported")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per load (3)")
    parser.add_argument("--pause", type=float, default=1.0, help="idle seconds between loads (1)")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log level of both services (warning: no access log lines)",
    )
    parser.add_argument("--floor-dir", type=Path, default=DEFAULT_FLOOR_DIR)
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="root")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any MISS or anomaly")
    args = parser.parse_args(argv)
    dbs: list[Db] = []
    for name in str(args.db).split(","):
        key = name.strip().lower()
        if key not in DB_ALIASES:
            parser.error(f"unknown database {name!r}: use postgresql and/or sqlite")
        if DB_ALIASES[key] not in dbs:
            dbs.append(DB_ALIASES[key])
    args.db = dbs
    if args.threads < 1 or args.connections < args.threads:
        parser.error("need 1 <= --threads <= --connections")
    if args.workers < 1 or args.repeat < 1 or args.duration < 1:
        parser.error("--workers, --repeat and --duration must be at least 1")
    args.floor_dir = args.floor_dir.resolve()
    if not (args.floor_dir / "floor_app.py").is_file():
        parser.error(f"no floor_app.py in {args.floor_dir}")
    return args


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    reports: list[DbReport] = []
    work = Path(tempfile.mkdtemp(prefix="bench_work_"))
    try:
        with signals_unwind():
            wrk = ensure_wrk()
            if "postgresql" in args.db:
                ensure_psycopg()
            for db in args.db:
                log(f"=== {DB_LABELS[db]} ===")
                reports.append(bench_database(db, args, wrk, work))
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({exc or type(exc).__name__}); everything was stopped and dropped")
        shutil.rmtree(work, ignore_errors=True)
        return 130
    except HarnessError as exc:
        log(f"FAILED: {exc}")
        log(f"service logs kept in {work}")
        return 2
    shutil.rmtree(work, ignore_errors=True)
    print()
    for report in reports:
        print(format_table(report, args))
        print()
    write_json(args.output, reports, args, started)
    print(f"results written to {args.output}")
    missed = any(not row.passed for r in reports for row in r.rows)
    anomalies = any(r.anomalies for r in reports)
    return 1 if args.strict and (missed or anomalies) else 0


if __name__ == "__main__":
    sys.exit(main())
