"""Where a native field came from in an HL7 message: ``body.results[2].unit`` → OBX[n]-6, so
every refusal of the panel schema or the ingestion service names the segment and field."""

from __future__ import annotations

import re

from pydantic import ValidationError

from app.interop.hl7.errors import ErrorCode, Issue, Location

# ResultIn / PanelCreate field → the HL7 field it came from, for error locations.
_RESULT_FIELDS = {"analyte": 3, "value": 5, "unit": 6, "reference_range": 7, "flag": 8}
_PANEL_FIELDS = {"accession": ("OBR", 3), "collected_at": ("OBR", 7), "source": ("MSH", 4)}


_RESULT_INDEX = re.compile(r"results\[(\d+)\]\.?(\w+)?")


def issue_location(
    field: str, order_location: Location, result_locations: tuple[Location, ...] | list[Location]
) -> Location:
    """The HL7 location of a native field path (``body.results[2].unit`` → OBX[n]-6)."""
    match = _RESULT_INDEX.search(field)
    if match is not None:
        index = int(match.group(1))
        if index < len(result_locations):
            obx = result_locations[index]
            return Location("OBX", obx.sequence, _RESULT_FIELDS.get(match.group(2) or "", 5))
    if "patient" in field:
        return Location("PID", 1, 3)
    for name, (segment, number) in _PANEL_FIELDS.items():
        if name in field:
            sequence = order_location.sequence if segment == "OBR" else 1
            return Location(segment, sequence, number)
    return order_location


def validation_issues(
    exc: ValidationError,
    order_location: Location,
    result_locations: list[Location],
    result_index: int | None = None,
) -> list[Issue]:
    issues = []
    for error in exc.errors():
        loc = [str(part) if isinstance(part, str) else f"[{part}]" for part in error["loc"]]
        path = ".".join(loc).replace(".[", "[")
        if result_index is not None:
            path = f"results[{result_index}].{path}"
        issues.append(
            Issue(
                ErrorCode.DATA_TYPE,
                error.get("msg", "invalid value"),
                issue_location(path, order_location, result_locations),
            )
        )
    return issues
