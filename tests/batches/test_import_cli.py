"""``python -m app import FILE``: the same batch service from a shell, progress on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_stores_good_lines_refuses_bad_ones_and_is_safe_to_rerun(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'import.db'}"
    env.pop("MINERAL_DATABASE_URL", None)
    assert _run(["migrate"], tmp_path, env).returncode == 0
    assert _run(["demo-data"], tmp_path, env).returncode == 0
    panel = {
        "patient": {"identifier": {"system": "urn:demo:mrn", "value": "DEMO-001"}},
        "source": "import-lab",
        "accession": "IMP-1",
        "collected_at": "2026-11-20T08:00:00Z",
        "results": [{"analyte": "magnesium", "value": "0.62", "unit": "mmol/L"}],
    }
    file = tmp_path / "panels.ndjson"
    file.write_text(json.dumps(panel) + "\n{not json}\n")

    first = _run(["import", str(file)], tmp_path, env)
    again = _run(["import", str(file)], tmp_path, env)

    assert first.returncode == 0, first.stderr
    assert "1 stored, 0 unchanged, 1 refused" in first.stdout
    assert "0 stored, 1 unchanged, 1 refused" in again.stdout
