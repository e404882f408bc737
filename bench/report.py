"""One database's results: summary rows, checks, the printed table and the JSON file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    BUSY_CPU_WARNING,
    DB_LABELS,
    ENDPOINT_LABELS,
    ENDPOINTS,
    EXPECTED_STATUS,
    SERVICES,
    TARGETS,
    Db,
    Endpoint,
    Service,
)
from scratch import (
    Scratch,
)
from wrk import (
    WrkResult,
)


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


def summary_rows(db: Db, measured: dict[tuple[Service, Endpoint], list[float]]) -> list[Row]:
    """Median req/s per service and endpoint, their ratio and the verdict."""
    rows: list[Row] = []
    for endpoint in ENDPOINTS:
        floor_runs = measured[("floor", endpoint)]
        ours_runs = measured[("ours", endpoint)]
        floor_rps = statistics.median(floor_runs)
        ours_rps = statistics.median(ours_runs)
        ratio = ours_rps / floor_rps if floor_rps > 0 else 0.0
        target_ratio = TARGETS[db][endpoint]
        rows.append(
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

    return rows


def check_stored(report: DbReport, scratch: Scratch, args: argparse.Namespace) -> None:
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


def run_anomalies(runs: list[WrkResult]) -> list[str]:
    """Statuses, socket errors, a busy machine or an empty load, per wrk run."""
    anomalies: list[str] = []
    for r in runs:
        what = f"{r.service} {r.endpoint} ({r.phase})"
        if r.unexpected_statuses:
            anomalies.append(
                f"{what}: {r.unexpected_statuses} responses other than "
                f"{EXPECTED_STATUS[r.endpoint]}: {r.statuses}"
            )
        if r.non_2xx_3xx and not r.unexpected_statuses:
            anomalies.append(f"{what}: wrk counted {r.non_2xx_3xx} non-2xx/3xx")
        if r.socket_error_total:
            anomalies.append(f"{what}: socket errors {r.socket_errors}")
        if r.busy_cpu_before is not None and r.busy_cpu_before > BUSY_CPU_WARNING:
            anomalies.append(
                f"{what}: machine busy before the load ({r.busy_cpu_before:.0f}% CPU "
                f"in use while both services were idle; busiest: {', '.join(r.busy_top)})"
            )
        if r.requests == 0:
            anomalies.append(f"{what}: no request completed")
    return anomalies


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


def write_json(
    path: Path,
    reports: list[DbReport],
    args: argparse.Namespace,
    started: str,
    extra: dict[str, Any] | None = None,
) -> None:
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
        **(extra or {}),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
