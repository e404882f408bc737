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
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from common import (
    ANALYTES,
    DB_ALIASES,
    DB_LABELS,
    DEFAULT_FLOOR_DIR,
    DEFAULT_OUTPUT,
    ENDPOINTS,
    FLOOR_COLLECTED_AT,
    REPO_ROOT,
    SERVICES,
    Db,
    Endpoint,
    HarnessError,
    Interrupted,
    Service,
    log,
    signals_held,
    signals_unwind,
)
from procs import (
    Busy,
    Proc,
    busy_cpu,
    ensure_psycopg,
    ensure_wrk,
    free_port,
    start_process,
    stop_process,
    wait_ready,
)
from report import (
    DbReport,
    check_stored,
    format_table,
    run_anomalies,
    summary_rows,
    write_json,
)
from scratch import (
    Scratch,
    _quietly,
    make_scratch,
)
from suites import (
    run_suites,
    write_readme,
)
from wrk import (
    WrkResult,
    our_panel_body,
    run_wrk,
    write_scripts,
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
        # The deployment setting for more than one process (bench/README.md, Scaling out).
        "MINERAL_AUDIT_CHAINS": "64",
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
                    scratch.settle()
                    busy = busy_cpu(max(args.pause, 0.5))
                    result = load(
                        targets[service], endpoint, f"round {round_no}", args.duration, busy
                    )
                    measured.setdefault((service, endpoint), []).append(result.rps)

        report.rows = summary_rows(db, measured)
        check_stored(report, scratch, args)
        report.anomalies += run_anomalies(report.runs)
        for proc in (floor_proc, ours_proc):
            if proc.popen.poll() is not None:
                report.anomalies.append(f"{proc.name} exited with {proc.popen.returncode}")
    finally:
        log(f"{DB_LABELS[db]}: stopping services and removing scratch databases")
        with signals_held():
            stack.close()
    return report


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
    parser.add_argument(
        "--suite",
        default="compare",
        choices=["compare", "scale", "all"],
        help="compare: ours vs the floor (default); scale: 1 vs 2 workers and 2 replicas on "
        "PostgreSQL (bench/scale.py); all: both, then bench/bulk.py and bench/history.py "
        "when present, and the README's figures section rewritten",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="rewrite the figures section of bench/README.md (implied by --suite all)",
    )
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
            if args.suite in ("compare", "all"):
                for db in args.db:
                    log(f"=== {DB_LABELS[db]} ===")
                    reports.append(bench_database(db, args, wrk, work))
            # bench/scale.py imports this file as `run`: let it find this very module (and
            # its state) rather than load a second copy of it.
            sys.modules.setdefault("run", sys.modules[__name__])
            extra = run_suites(args, wrk, work)
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
    for title, text in extra.get("text", []):
        print(f"{title}\n{text}\n")
    write_json(args.output, reports, args, started, extra.get("json", {}))
    print(f"results written to {args.output}")
    if args.write_readme or args.suite == "all":
        write_readme(reports, args, started, extra.get("markdown", []))
    missed = any(not row.passed for r in reports for row in r.rows)
    anomalies = any(r.anomalies for r in reports)
    return 1 if args.strict and (missed or anomalies) else 0


if __name__ == "__main__":
    sys.exit(main())
