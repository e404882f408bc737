"""Generate the typed Python client of the JSON API with openapi-python-client.

    .venv/bin/python scripts/generate_client.py                    # spec from the app itself
    .venv/bin/python scripts/generate_client.py --spec http://127.0.0.1:8000/openapi.json
    .venv/bin/python scripts/generate_client.py --output build/client --openapi-out openapi.json

The package `mineral_labs_client` is written to `<output>/mineral_labs_client` (default
`build/client`); add `<output>` to `sys.path` (or copy the package) to use it:

    from mineral_labs_client import AuthenticatedClient
    from mineral_labs_client.api.panels import get_panel
    client = AuthenticatedClient("http://127.0.0.1:8000", token="mlk_...")
    panel = get_panel.sync(panel_id, client=client)

The client covers the JSON API. openapi-python-client cannot express non-JSON request bodies,
so two things are left out of the document it is given, and only these: the YAML and CSV
alternatives of the range-set and rule-set imports (their JSON form stays), and operations
whose body is never JSON (HL7 v2 ER7 ingestion, which labs send over MLLP or raw HTTP). Any
generator warning fails the run (exit 1), so a schema the generator cannot read is caught here,
not by the front-end team. tests/test_generated_client.py runs this on every test run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

PACKAGE = "mineral_labs_client"
CONFIG = {
    "project_name_override": "mineral-labs-client",
    "package_name_override": PACKAGE,
    # Formatting hooks left out: the output depends only on the spec and the generator version.
    "post_hooks": [],
}
JSON_MEDIA_TYPES = ("application/json",)
# Words in the generator's output that mean something was skipped or could not be read.
WARNING_MARKERS = ("warning", "unable to", "cannot ", "could not", "unsupported", "skipping")


class GeneratorWarningError(RuntimeError):
    """openapi-python-client warned about a schema or an endpoint."""


def load_spec(source: str | None) -> dict[str, Any]:
    """The OpenAPI document from a URL, a file, or (None) the app built in this process."""
    if source is None:
        from app.main import create_app

        return create_app().openapi()
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 (our server)
            document: dict[str, Any] = json.load(response)
            return document
    loaded: dict[str, Any] = json.loads(Path(source).read_text(encoding="utf-8"))
    return loaded


def json_api_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The document without what the generator cannot express (see the module docstring), and
    a list of what was left out."""
    out = copy.deepcopy(spec)
    left_out: list[str] = []
    for path, item in out.get("paths", {}).items():
        for method in list(item):
            operation = item[method]
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content")
            if not content:
                continue
            json_types = {k: v for k, v in content.items() if k in JSON_MEDIA_TYPES}
            if not json_types:
                del item[method]
                left_out.append(f"{method.upper()} {path} (no JSON body)")
                continue
            for media_type in sorted(set(content) - set(json_types)):
                left_out.append(f"{method.upper()} {path} as {media_type}")
            operation["requestBody"]["content"] = json_types
    out["paths"] = {path: item for path, item in out.get("paths", {}).items() if item}
    return out, left_out


def generator_warnings(output: str) -> list[str]:
    return [
        line.strip()
        for line in output.splitlines()
        if any(marker in line.lower() for marker in WARNING_MARKERS)
    ]


def generate(spec: dict[str, Any], output: Path) -> Path:
    """Write the client package to `output/mineral_labs_client`; raise GeneratorWarningError
    when the generator warns about anything."""
    client_spec, _ = json_api_spec(spec)
    output.mkdir(parents=True, exist_ok=True)
    target = output / PACKAGE
    with tempfile.TemporaryDirectory() as work:
        spec_file = Path(work) / "openapi.json"
        spec_file.write_text(json.dumps(client_spec), encoding="utf-8")
        config_file = Path(work) / "config.json"
        config_file.write_text(json.dumps(CONFIG), encoding="utf-8")
        generated = Path(work) / "out"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "openapi_python_client",
                "generate",
                "--path",
                str(spec_file),
                "--config",
                str(config_file),
                "--meta",
                "none",
                "--output-path",
                str(generated),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"},
        )
        printed = result.stdout + result.stderr
        warnings = generator_warnings(printed)
        if result.returncode != 0 or warnings:
            raise GeneratorWarningError(printed)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(generated, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", help="URL or file of the OpenAPI document (default: the app)")
    parser.add_argument("--output", default="build/client", help="directory for the package")
    parser.add_argument("--openapi-out", help="also write the app's OpenAPI document here")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    if args.openapi_out:
        Path(args.openapi_out).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    try:
        target = generate(spec, Path(args.output))
    except GeneratorWarningError as exc:
        sys.stderr.write(f"openapi-python-client warned; no client written:\n{exc}\n")
        return 1
    sys.stdout.write(f"{target}\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
