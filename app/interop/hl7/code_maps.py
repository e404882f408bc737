"""Per sending facility: local test codes → our analyte codes (``app/data/hl7_code_maps.yaml``).

Kept as data so that on-boarding a lab that sends ``MG`` or ``MAG`` instead of LOINC is a
reviewed change of one file. Every target is checked against the analyte catalog at load time,
so a typo fails the start-up, not a message at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from app.domain.catalog import Catalog, default_catalog
from app.domain.errors import DomainError

DEFAULT_CODE_MAPS_PATH = Path(__file__).resolve().parents[2] / "data" / "hl7_code_maps.yaml"
UTC_ZONE = ZoneInfo("UTC")


class CodeMapError(ValueError):
    """The code-map file is invalid: a deployment defect, never a sender's mistake."""


@dataclass(frozen=True, slots=True)
class FacilityProfile:
    codes: Mapping[str, str] = field(default_factory=dict)
    timezone: tzinfo | None = None


@dataclass(frozen=True, slots=True)
class CodeMaps:
    default: FacilityProfile
    facilities: Mapping[str, FacilityProfile]

    def analyte_for(self, facility: str, code: str) -> str | None:
        """Our analyte code for a facility's local code, or None when it is not mapped."""
        key = code.strip().casefold()
        profile = self.facilities.get(facility.casefold())
        if profile is not None and key in profile.codes:
            return profile.codes[key]
        return self.default.codes.get(key)

    def with_codes(self, facility: str, codes: Mapping[str, str]) -> CodeMaps:
        """These maps with ``codes`` (already checked analyte codes) put before every other
        code of ``facility``: an organization's own entries over the deployed defaults."""
        key = facility.casefold()
        profile = self.facilities.get(key) or FacilityProfile()
        merged = {**profile.codes, **{code.strip().casefold(): a for code, a in codes.items()}}
        facilities = {**self.facilities, key: FacilityProfile(merged, profile.timezone)}
        return CodeMaps(default=self.default, facilities=facilities)

    def timezone_for(self, facility: str) -> tzinfo:
        profile = self.facilities.get(facility.casefold())
        if profile is not None and profile.timezone is not None:
            return profile.timezone
        return self.default.timezone or UTC_ZONE


def parse_code_maps(document: Any, *, catalog: Catalog) -> CodeMaps:
    if not isinstance(document, dict):
        raise CodeMapError("the code-map file must be a mapping with `default` and `facilities`")
    unknown = set(document) - {"default", "facilities"}
    if unknown:
        raise CodeMapError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    default = _profile(document.get("default") or {}, "default", catalog)
    facilities_doc = document.get("facilities") or {}
    if not isinstance(facilities_doc, dict):
        raise CodeMapError("`facilities` must map a facility (MSH-4) to its profile")
    facilities = {
        str(name).casefold(): _profile(profile or {}, str(name), catalog)
        for name, profile in facilities_doc.items()
    }
    return CodeMaps(default=default, facilities=facilities)


def _profile(document: Any, where: str, catalog: Catalog) -> FacilityProfile:
    if not isinstance(document, dict) or set(document) - {"codes", "timezone"}:
        raise CodeMapError(f"{where}: a profile has only `codes` and `timezone`")
    codes_doc = document.get("codes") or {}
    if not isinstance(codes_doc, dict):
        raise CodeMapError(f"{where}: `codes` must map a local code to an analyte code")
    codes: dict[str, str] = {}
    for local, analyte in codes_doc.items():
        try:
            codes[str(local).strip().casefold()] = catalog.get(str(analyte)).code
        except DomainError as exc:
            raise CodeMapError(f"{where}: local code {local!r}: {exc}") from exc
    zone: tzinfo | None = None
    if document.get("timezone"):
        try:
            zone = ZoneInfo(str(document["timezone"]))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CodeMapError(f"{where}: unknown time zone {document['timezone']!r}") from exc
    return FacilityProfile(codes=codes, timezone=zone)


def load_code_maps(path: Path, *, catalog: Catalog | None = None) -> CodeMaps:
    return parse_code_maps(
        yaml.safe_load(path.read_text("utf-8")), catalog=catalog or default_catalog()
    )


@cache
def default_code_maps() -> CodeMaps:
    """The deployed code maps, loaded and validated once per process."""
    return load_code_maps(DEFAULT_CODE_MAPS_PATH)
