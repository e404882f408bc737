"""Shape stored panels and results into the API's output models."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson

from app.domain.precision import as_reported, display_value, plain
from app.models.panel import Panel, Result
from app.panels.interpretation import INTERPRETATION_DISPLAY
from app.panels.schemas import (
    AppliedRangeOut,
    PanelOut,
    RatioOut,
    ResultOut,
)


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value if isinstance(value, str) else str(value))


# Each output model below is first built as a plain dict of its fields, in the model's field
# order: ``panel_out`` validates the tree into the models, and a new panel's stored document
# is the same tree serialized directly (``render``), byte for byte what ``PanelOut``'s
# ``model_dump_json()`` writes (tests/panels/test_panel_document.py compares them).


def applied_range_fields(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """``AppliedRangeOut``'s fields of a stored range snapshot."""
    if not snapshot:
        return None
    range_set = snapshot.get("range_set")
    # The snapshots of one range set's few applied ranges recur in every panel: their fields
    # (and their JSON, for ``render``) are worked out once. Only snapshots of text are kept
    # (as ``range_snapshot`` writes them), so one equal to a kept one (compared in full) is
    # text too and has the same fields; the range set's own dict is the snapshot's, as below
    # (its items, in order, are part of the key: the JSON kept writes them in that order).
    if type(range_set) is dict and type(range_set.get("version")) is int:
        key = (tuple(range_set.items()), snapshot.get("row_id"), snapshot.get("basis"))
        try:
            kept = _RANGE_FIELDS.get(key)
        except TypeError:  # not a snapshot as written (a list in it): read as it is
            return _applied_range_fields(snapshot)
        if kept is not None:
            for seen, fields in kept:
                if seen == snapshot:
                    found = _RangeFields(fields)
                    found.json = fields.json
                    found["range_set"] = range_set
                    return found
        if not _all_text(snapshot):
            return _applied_range_fields(snapshot)
        fields = _RangeFields(_applied_range_fields(snapshot))
        fields.json = orjson.Fragment(orjson.dumps(fields, default=_json_value))
        if len(_RANGE_FIELDS) >= _RANGE_FIELDS_LIMIT:
            _RANGE_FIELDS.clear()
        variants = _RANGE_FIELDS.setdefault(key, [])
        if len(variants) >= _VARIANTS_LIMIT:
            return fields
        variants.append((_copy_snapshot(snapshot), fields))
        return applied_range_fields(snapshot)  # a copy, as every caller gets
    return _applied_range_fields(snapshot)


class _RangeFields(dict[str, Any]):
    """``applied_range_fields`` of a snapshot seen before, with the JSON ``render`` writes for
    them (``json``, from the kept snapshot: each caller gets its own copy of the fields, and
    nothing changes the view's fields between building and rendering them)."""

    __slots__ = ("json",)
    json: orjson.Fragment


# Kept fields by (range set, row id, basis): a list, as one row recurs with other limits
# (critical limits borrowed or not). Bounded by clearing; each entry keeps its snapshot.
_RANGE_FIELDS: dict[tuple[Any, Any, Any], list[tuple[dict[str, Any], _RangeFields]]] = {}
_RANGE_FIELDS_LIMIT = 4096
_VARIANTS_LIMIT = 16


def _all_text(snapshot: dict[str, Any]) -> bool:
    """True when every value is text or None (the range set's: text, and an int version)."""
    range_set = snapshot["range_set"]
    return all(
        value is None or type(value) is str for key, value in snapshot.items() if key != "range_set"
    ) and all(type(range_set.get(key)) is str for key in ("id", "name"))


def _copy_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {**snapshot, "range_set": dict(snapshot["range_set"])}


def _applied_range_fields(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        "range_set": snapshot.get("range_set"),
        "basis": snapshot.get("basis", "reference"),
        "row_id": snapshot.get("row_id"),
        "unit": snapshot["unit"],
        "specimen": snapshot.get("specimen"),
        "sex": snapshot.get("sex"),
        "age_min_years": _dec(snapshot.get("age_min_years")),
        "age_max_years": _dec(snapshot.get("age_max_years")),
        "low": _dec(snapshot.get("low")),
        "high": _dec(snapshot.get("high")),
        "critical_low": _dec(snapshot.get("critical_low")),
        "critical_high": _dec(snapshot.get("critical_high")),
        "source": snapshot.get("source"),
    }


def applied_range(snapshot: dict[str, Any] | None) -> AppliedRangeOut | None:
    fields = applied_range_fields(snapshot)
    return None if fields is None else AppliedRangeOut.model_validate(fields)


def result_fields(result: Result) -> dict[str, Any]:
    """``ResultOut``'s fields (nested models as dicts) of a stored result."""
    lab_range_text = result.lab_range_text
    lab_flag = result.lab_flag
    lab_low = result.lab_range_low
    lab_high = result.lab_range_high
    lab_comment = result.lab_comment
    has_lab = (
        lab_range_text or lab_flag or lab_low is not None or lab_high is not None or lab_comment
    )
    comparator = result.comparator
    canonical_value = result.canonical_value
    interpretation = result.interpretation
    return {
        "id": result.id,
        "analyte": result.analyte,
        "status": result.status or "final",
        "loinc": result.loinc,
        "code_sent": result.code_sent,
        "reported": {
            "text": result.value_text,
            "value": result.value,
            "comparator": comparator,
            "unit": result.unit,
        },
        "canonical": {
            "value": canonical_value,
            "comparator": comparator,
            "unit": result.canonical_unit,
            "display_value": plain(
                display_value(
                    canonical_value,
                    reported=as_reported(result.value_text, result.value),
                    converted=result.unit != result.canonical_unit,
                )
            ),
        },
        "interpretation": {
            "code": interpretation,
            "display": INTERPRETATION_DISPLAY.get(interpretation or ""),
            "critical": result.critical,
            "possibly_critical": result.possibly_critical,
            "status": result.interpretation_status,
            "note": result.interpretation_note,
            "reference_range": applied_range_fields(result.reference_range),
        },
        "lab": {
            "range_text": lab_range_text,
            "low": lab_low,
            "high": lab_high,
            "flag": lab_flag,
            "disagreement": result.lab_disagreement,
            "comment": lab_comment,
        }
        if has_lab
        else None,
    }


def result_out(result: Result) -> ResultOut:
    return ResultOut.model_validate(result_fields(result))


def ratio_fields(ratio: dict[str, Any]) -> dict[str, Any]:
    """``RatioOut``'s fields of a stored ratio."""
    return {
        "code": ratio["code"],
        "display": ratio["display"],
        "value": _dec(ratio.get("value")),
        "interpretation": ratio.get("interpretation"),
        "low": _dec(ratio.get("low")),
        "high": _dec(ratio.get("high")),
        "note": ratio.get("note"),
        "source": ratio.get("source"),
    }


def ratio_out(ratio: dict[str, Any]) -> RatioOut:
    return RatioOut.model_validate(ratio_fields(ratio))


# PanelOut's fields in order, and those that are the stored panel's columns as they are (the
# rest are built here).
_PANEL_FIELDS = tuple(PanelOut.model_fields)
_BUILT = frozenset({"range_set", "results", "ratios"})
_PANEL_COLUMNS = tuple(name for name in _PANEL_FIELDS if name not in _BUILT)


def panel_fields(
    panel: Panel,
    results: Iterable[Result],
    range_set_name: str | None,
    range_set_version: int | None,
) -> dict[str, Any]:
    """``PanelOut``'s fields (nested models as dicts, in field order) of a stored panel."""
    range_set: dict[str, str | int] | None = None
    if panel.range_set_id is not None and range_set_name is not None:
        range_set = {
            "id": str(panel.range_set_id),
            "name": range_set_name,
            "version": range_set_version or 0,
        }
    built = {
        "range_set": range_set,
        "results": [result_fields(r) for r in results],
        "ratios": [ratio_fields(r) for r in panel.ratios or []],
    }
    return {name: built[name] if name in _BUILT else getattr(panel, name) for name in _PANEL_FIELDS}


def panel_out(
    panel: Panel,
    results: list[Result],
    range_set_name: str | None,
    range_set_version: int | None,
) -> PanelOut:
    return PanelOut.model_validate(panel_fields(panel, results, range_set_name, range_set_version))


def _json_value(value: object) -> object:
    """What orjson leaves to us, as the output models write it: decimals are JsonDecimal (a
    JSON number, ``float(value)``); a UUID subclass (asyncpg's, for ids read from PostgreSQL)
    is its text, as orjson writes a ``uuid.UUID``; a range's fields seen before are their JSON.
    Other subclasses of str, int, dict and list (which ``render`` has orjson hand over, so that
    it hands over ``_RangeFields``) are written as their base type, as orjson would."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, _RangeFields):
        return value.json
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not a field type of the panel document")


_RENDER_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_PASSTHROUGH_SUBCLASS


def render(fields: dict[str, Any]) -> str:
    """``panel_fields`` as JSON: the bytes ``PanelOut.model_validate(fields).model_dump_json()``
    writes (compact, field order, decimals as numbers, UTC as ``Z``), without the models."""
    return orjson.dumps(fields, default=_json_value, option=_RENDER_OPTIONS).decode()


def result_snapshot(result: Result) -> dict[str, Any]:
    """What a superseded interpretation keeps per result."""
    return {
        "result_id": str(result.id),
        "analyte": result.analyte,
        "canonical_value": str(result.canonical_value),
        "canonical_unit": result.canonical_unit,
        "status": result.status,
        "interpretation": result.interpretation,
        "critical": result.critical,
        "note": result.interpretation_note,
        "reference_range": result.reference_range,
    }


def stored_verdict(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A superseded result's verdict (from ``result_snapshot``) in the shape the API gives the
    current one, so every version of a panel's interpretation reads the same way."""
    applied = applied_range(snapshot.get("reference_range"))
    return {
        "result_id": snapshot["result_id"],
        "analyte": snapshot["analyte"],
        "status": snapshot.get("status", "final"),
        # The value as it was then (null in history kept before values were kept with it).
        "value": snapshot.get("value_text"),
        "unit": snapshot.get("unit"),
        "interpretation": snapshot["interpretation"],
        "critical": snapshot["critical"],
        "note": snapshot["note"],
        "reference_range": applied.model_dump(mode="json") if applied else None,
    }
