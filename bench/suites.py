"""The suites beyond the comparison (scale, bulk, history) and the README's figures."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from common import (
    DB_LABELS,
    REPO_ROOT,
    log,
)
from procs import (
    ensure_psycopg,
)
from report import DbReport


def run_suites(args: argparse.Namespace, wrk: str, work: Path) -> dict[str, Any]:
    """The suites beyond the comparison: scale-out here, bulk and history (helper modules
    bench/bulk.py and bench/history.py, each with `run_suite(args) -> dict`) when present."""
    extra: dict[str, Any] = {"text": [], "json": {}, "markdown": []}
    if args.suite in ("scale", "all"):
        import scale

        log("=== scale-out (PostgreSQL) ===")
        ensure_psycopg()
        result = scale.bench_scale(args, wrk, work)
        extra["json"]["scale"] = result
        extra["text"].append(("", scale.format_scale(result)))
        extra["markdown"].append(("Scale-out: workers and replicas", scale.markdown_scale(result)))
    if args.suite == "all":
        for name in ("bulk", "history"):
            figures = _helper_suite(name)
            if figures is None:
                continue
            extra["json"][name] = figures
            markdown = figures.get("markdown")
            lines = list(markdown) if markdown else _json_block(figures)
            extra["markdown"].append((name.capitalize(), lines))
    return extra


def _helper_suite(name: str) -> dict[str, Any] | None:
    """bench/<name>.py's `run(args) -> dict`, with that module's own default arguments (its
    `parser()`); None when the module or the hook is missing."""
    if not (REPO_ROOT / "bench" / f"{name}.py").is_file():
        log(f"bench/{name}.py not present: its suite is skipped")
        return None
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # the helpers import the app in-process
    module = importlib.import_module(name)
    hook, make_parser = getattr(module, "run", None), getattr(module, "parser", None)
    if hook is None or make_parser is None:
        log(f"bench/{name}.py has no run(args) and parser(): skipped")
        return None
    log(f"=== {name} ===")
    result = hook(make_parser().parse_args([]))
    return result if isinstance(result, dict) else {"result": result}


def _json_block(result: dict[str, Any]) -> list[str]:
    return ["```json", *json.dumps(result, indent=1, default=str)[:4000].splitlines(), "```"]


def write_readme(
    reports: list[DbReport], args: argparse.Namespace, started: str, blocks: list[Any]
) -> None:
    import readme

    command = "python bench/run.py " + " ".join(sys.argv[1:])
    parts = (
        [("Ours against the floor", readme.compare_lines(reports, DB_LABELS))] if reports else []
    )
    path = REPO_ROOT / "bench" / "README.md"
    readme.replace_section(path, readme.section(command.strip(), started, [*parts, *blocks]))
    print(f"figures written to {path}")
