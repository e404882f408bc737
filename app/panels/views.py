"""Shape stored panels and results into the API's output models."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from app.domain.precision import as_reported, display_value, plain
from app.domain.result_status import ResultStatus
from app.models.panel import Panel, Result
from app.panels.interpretation import INTERPRETATION_DISPLAY
from app.panels.schemas import (
    AppliedRangeOut,
    CanonicalValueOut,
    InterpretationOut,
    LabReportedOut,
    PanelOut,
    RatioOut,
    ReportedValueOut,
    ResultOut,
)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def applied_range(snapshot: dict[str, Any] | None) -> AppliedRangeOut | None:
    if not snapshot:
        return None
    return AppliedRangeOut(
        range_set=snapshot.get("range_set"),
        basis=snapshot.get("basis", "reference"),
        row_id=snapshot.get("row_id"),
        unit=snapshot["unit"],
        specimen=snapshot.get("specimen"),
        sex=snapshot.get("sex"),
        age_min_years=_dec(snapshot.get("age_min_years")),
        age_max_years=_dec(snapshot.get("age_max_years")),
        low=_dec(snapshot.get("low")),
        high=_dec(snapshot.get("high")),
        critical_low=_dec(snapshot.get("critical_low")),
        critical_high=_dec(snapshot.get("critical_high")),
        source=snapshot.get("source"),
    )


def result_out(result: Result) -> ResultOut:
    has_lab = (
        result.lab_range_text
        or result.lab_flag
        or result.lab_range_low is not None
        or (result.lab_range_high is not None)
        or result.lab_comment
    )
    return ResultOut(
        id=result.id,
        analyte=result.analyte,
        status=cast(ResultStatus, result.status or "final"),
        loinc=result.loinc,
        code_sent=result.code_sent,
        reported=ReportedValueOut(
            text=result.value_text,
            value=result.value,
            comparator=result.comparator,
            unit=result.unit,
        ),
        canonical=CanonicalValueOut(
            value=result.canonical_value,
            comparator=result.comparator,
            unit=result.canonical_unit,
            display_value=plain(
                display_value(
                    result.canonical_value,
                    reported=as_reported(result.value_text, result.value),
                    converted=result.unit != result.canonical_unit,
                )
            ),
        ),
        interpretation=InterpretationOut(
            code=result.interpretation,
            display=INTERPRETATION_DISPLAY.get(result.interpretation or ""),
            critical=result.critical,
            possibly_critical=result.possibly_critical,
            status=result.interpretation_status,
            note=result.interpretation_note,
            reference_range=applied_range(result.reference_range),
        ),
        lab=LabReportedOut(
            range_text=result.lab_range_text,
            low=result.lab_range_low,
            high=result.lab_range_high,
            flag=result.lab_flag,
            disagreement=result.lab_disagreement,
            comment=result.lab_comment,
        )
        if has_lab
        else None,
    )


def ratio_out(ratio: dict[str, Any]) -> RatioOut:
    return RatioOut(
        code=ratio["code"],
        display=ratio["display"],
        value=_dec(ratio.get("value")),
        interpretation=ratio.get("interpretation"),
        low=_dec(ratio.get("low")),
        high=_dec(ratio.get("high")),
        note=ratio.get("note"),
        source=ratio.get("source"),
    )


# PanelOut's fields that are the stored panel's columns as they are (the rest are built here).
_PANEL_COLUMNS = tuple(
    name for name in PanelOut.model_fields if name not in {"range_set", "results", "ratios"}
)


def panel_out(
    panel: Panel,
    results: list[Result],
    range_set_name: str | None,
    range_set_version: int | None,
) -> PanelOut:
    range_set: dict[str, str | int] | None = None
    if panel.range_set_id is not None and range_set_name is not None:
        range_set = {
            "id": str(panel.range_set_id),
            "name": range_set_name,
            "version": range_set_version or 0,
        }
    return PanelOut(
        **{name: getattr(panel, name) for name in _PANEL_COLUMNS},
        range_set=range_set,
        results=[result_out(r) for r in results],
        ratios=[ratio_out(r) for r in panel.ratios or []],
    )


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
