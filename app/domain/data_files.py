"""Reading the packaged YAML reference files (catalog, ISI instrument, context vocabulary).

Each file has its own error type so a broken file names itself at start-up; the read and the
top-level check are the same for all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(source: Path, error: type[ValueError], what: str) -> Any:
    """The parsed document, or `error` naming the file when it cannot be read or parsed."""
    try:
        return yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{source}: cannot read {what}: {exc}") from exc


def read_yaml_mapping(source: Path, error: type[ValueError], what: str) -> dict[str, Any]:
    """As `read_yaml`, for files whose top level must be a mapping."""
    document = read_yaml(source, error, what)
    if not isinstance(document, dict):
        raise error(f"{source}: expected a mapping at the top level")
    return document
