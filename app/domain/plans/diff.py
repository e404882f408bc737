"""The difference between two versions of a plan document, for clinicians reviewing changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _by_id(entries: Any, key: str) -> dict[str, Mapping[str, Any]]:
    return {str(entry[key]): entry for entry in entries or ()}


def _changed_fields(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        path = f"{prefix}{name}"
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes.extend(_changed_fields(old, new, f"{path}."))
        else:
            changes.append({"field": path, "from": old, "to": new})
    return changes


def diff_versions(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
) -> dict[str, Any]:
    """Compare two stored versions (`status` plus the plan `document`).

    Items are matched by id: added, removed, and changed with field-level from/to. Safety
    findings are matched by code; overrides by code."""
    old_doc, new_doc = before["document"], after["document"]
    old_items, new_items = _by_id(old_doc.get("items"), "id"), _by_id(new_doc.get("items"), "id")
    changed = []
    for item_id in new_items.keys() & old_items.keys():
        fields = _changed_fields(old_items[item_id], new_items[item_id])
        if fields:
            changed.append({"id": item_id, "changes": fields})
    old_findings = _by_id(old_doc.get("findings"), "code")
    new_findings = _by_id(new_doc.get("findings"), "code")
    old_overrides = _by_id(old_doc.get("overrides"), "code")
    new_overrides = _by_id(new_doc.get("overrides"), "code")
    status = (
        {"from": before["status"], "to": after["status"]}
        if before["status"] != after["status"]
        else None
    )
    return {
        "status": status,
        "items_added": [new_items[i] for i in sorted(new_items.keys() - old_items.keys())],
        "items_removed": [old_items[i] for i in sorted(old_items.keys() - new_items.keys())],
        "items_changed": sorted(changed, key=lambda entry: entry["id"]),
        "findings_added": [new_findings[c] for c in sorted(new_findings.keys() - old_findings)],
        "findings_resolved": [old_findings[c] for c in sorted(old_findings.keys() - new_findings)],
        "overrides_added": [new_overrides[c] for c in sorted(new_overrides.keys() - old_overrides)],
    }
