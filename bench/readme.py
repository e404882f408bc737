"""The figures section of bench/README.md, rewritten by the run that measured them.

Only the text between the two markers is replaced; everything else in the README is kept as
written. Without the markers the section is appended.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

START = "<!-- bench/run.py figures: start (generated, do not edit by hand) -->"
END = "<!-- bench/run.py figures: end -->"


def compare_lines(reports: Sequence[Any], labels: Mapping[Any, str]) -> list[str]:
    """The side-by-side table from run.py's DbReport objects."""
    lines = [
        "| database | endpoint | floor req/s | ours req/s | ratio | target | p99 ours ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for report in reports:
        for row in report.rows:
            p99 = [
                r.latency_ms["p99"]
                for r in report.runs
                if r.service == "ours" and r.endpoint == row.endpoint and r.phase != "warmup"
            ]
            verdict = "" if row.passed else " (missed)"
            lines.append(
                f"| {labels[report.db]} | {row.endpoint} panel | {row.floor_rps:.0f} | "
                f"{row.ours_rps:.0f} | {row.ratio:.2f}x | {row.target:g}x{verdict} | "
                f"{max(p99) if p99 else 0:.0f} |"
            )
    for report in reports:  # below the table: a line between rows would end it
        if report.anomalies:
            lines.append("")
            lines.append(f"{labels[report.db]} anomalies: " + "; ".join(report.anomalies)[:1500])
    return lines


def section(command: str, started: str, blocks: Sequence[tuple[str, list[str]]]) -> str:
    cpus = platform.machine(), _cpu_count()
    body = [
        START,
        f"## Latest figures ({started}, `{command}`)",
        "",
        f"Written by the command itself; machine: {cpus[1]} CPUs, {cpus[0]}. Compare ratios, "
        "not absolute figures (other work on the machine shows under anomalies).",
    ]
    for title, lines in blocks:
        body += ["", f"### {title}", "", *lines]
    body.append(END)
    return "\n".join(body) + "\n"


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


def replace_section(readme: Path, text: str) -> None:
    current = readme.read_text("utf-8") if readme.exists() else ""
    if START in current and END in current:
        head, rest = current.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        updated = head + text + ("\n" + tail if tail else "")
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    readme.write_text(updated, "utf-8")
