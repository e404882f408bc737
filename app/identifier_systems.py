"""The deployment's identifier-system aliases (MINERAL_IDENTIFIER_SYSTEMS_FILE, else the shipped
`app/data/identifier_systems.yaml`), applied through `app.domain.identifier_systems`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from app.core.config import get_settings
from app.domain import identifier_systems as uris

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "identifier_systems.yaml"


@dataclass(frozen=True)
class Aliases:
    identifier_systems: dict[str, str]
    panel_sources: dict[str, str]


@cache
def load(path: str) -> Aliases:
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    aliases = Aliases(
        identifier_systems={
            str(k): str(v) for k, v in (document.get("identifier_systems") or {}).items()
        },
        panel_sources={str(k): str(v) for k, v in (document.get("panel_sources") or {}).items()},
    )
    for name, uri in {**aliases.identifier_systems, **aliases.panel_sources}.items():
        if not uris.is_absolute_uri(uri):
            raise ValueError(f"{path}: the alias of {name!r} must be an absolute URI, not {uri!r}")
    return aliases


def current() -> Aliases:
    return load(get_settings().identifier_systems_file or str(DEFAULT_PATH))


def system_uri(name: str) -> str:
    return uris.system_uri(name, current().identifier_systems)


def source_uri(source: str) -> str:
    return uris.source_uri(source, current().panel_sources)
