"""A new panel's stored document is written from its fields directly (``views.render``), not
through the output models: byte for byte what the models wrote before, for every kind of
result. The renderer it replaced (``PanelOut`` built from validated models, then
``model_dump_json()``) is kept below as the reference, verbatim, and the two are compared over
generated panels: comparators, converted units, lab ranges, flags and comments, withdrawn
results, ratios, no range set, criticals, decimals such as ``1.60``, ``0.0001`` and ``1E+2``,
any time zone. The view ``new_panel`` returns and the read path's ``panel_out`` are compared
with the reference models too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from types import SimpleNamespace
from typing import Any, cast

import pytest
from asyncpg.pgproto.pgproto import UUID as PgUUID
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import UnprocessableError
from app.domain.catalog import default_catalog
from app.domain.precision import as_reported, display_value, plain
from app.domain.result_status import ResultStatus
from app.models.panel import Panel, Result
from app.panels import service, views
from app.panels.interpretation import INTERPRETATION_DISPLAY, normalize
from app.panels.repository import PatientForPanel
from app.panels.schemas import (
    AppliedRangeOut,
    CanonicalValueOut,
    InterpretationOut,
    LabReportedOut,
    PanelCreate,
    PanelOut,
    RatioOut,
    ReportedValueOut,
    ResultOut,
)
from app.panels.service import new_panel, new_panel_rows
from app.ranges.compiled import CompiledRangeSet, compile_rows, ratio_definitions
from app.ranges.service import default_document

# --- the reference: the renderer before (app/panels/views.py) --------------------------------


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def legacy_applied_range(snapshot: dict[str, Any] | None) -> AppliedRangeOut | None:
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


def legacy_result_out(result: Result) -> ResultOut:
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
                    reported=legacy_as_reported(result.value_text, result.value),
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
            reference_range=legacy_applied_range(result.reference_range),
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


def legacy_ratio_out(ratio: dict[str, Any]) -> RatioOut:
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


_LEGACY_COLUMNS = tuple(
    name for name in PanelOut.model_fields if name not in {"range_set", "results", "ratios"}
)


def legacy_panel_out(
    panel: Panel, results: list[Result], range_set_name: str | None, version: int | None
) -> PanelOut:
    range_set: dict[str, str | int] | None = None
    if panel.range_set_id is not None and range_set_name is not None:
        range_set = {"id": str(panel.range_set_id), "name": range_set_name, "version": version or 0}
    return PanelOut(
        **{name: getattr(panel, name) for name in _LEGACY_COLUMNS},
        range_set=range_set,
        results=[legacy_result_out(r) for r in results],
        ratios=[legacy_ratio_out(r) for r in panel.ratios or []],
    )


def legacy_as_reported(value_text: str | None, stored: Decimal) -> Decimal:
    from app.domain.errors import DomainError
    from app.domain.values import parse_result_value

    if value_text:
        try:
            parsed = parse_result_value(value_text).value
        except DomainError:
            return stored
        if parsed == stored:
            return parsed
    return stored


# --- generated panels -------------------------------------------------------------------------


@cache
def _range_set() -> CompiledRangeSet:
    document = default_document()
    rows, original_units = compile_rows(document.rows, default_catalog())
    return CompiledRangeSet(
        id=uuid.UUID(int=5),
        name=document.name,
        version=3,
        rows_by_analyte=rows,
        ratios=ratio_definitions(document.ratios),
        original_units=original_units,
    )


def _names() -> dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """Per analyte: the names labs send, the units it accepts (with lab spellings), and the
    specimens it is measured in."""
    catalog = default_catalog()
    aliases = catalog.unit_aliases
    named = {}
    for analyte in catalog.all():
        spellings = (a for a, u in aliases.items() if u in analyte.accepted_units)
        names = (analyte.code, *analyte.synonyms[:2], *(c.code for c in analyte.loinc_codes))
        units = (*analyte.accepted_units, *spellings)
        named[analyte.code] = (names, units, analyte.specimens)
    return named


def _typical(code: str) -> list[str]:
    """Values around the default set's limits for ``code``, in its canonical unit: low, normal,
    high and critical results, at a few precisions."""
    limits = [
        value
        for row in _range_set().rows_for(code)
        for value in (
            row.limits.low,
            row.limits.high,
            row.limits.critical_low,
            row.limits.critical_high,
        )
        if value is not None
    ]
    values = [v * factor for v in limits for factor in (Decimal("0.8"), Decimal(1), Decimal("1.2"))]
    return [format(round(v, places), "f") for v in values for places in (1, 2, 3)] or ["1"]


NAMES = _names()
NUMBERS = st.sampled_from(
    ["1.6", "1.60", "0.0001", "1E+2", "1e2", "9.1", "55", "80", "0", "0.00", "190", "12345"]
    + ["0.62", "2.5", "0.3", "7", "1000", "0.05", "150.0", "3.14159265", "4E-3", "+2", "-0"]
)
VALUES = (
    st.tuples(st.sampled_from(["", "", "<", "<=", ">", ">=", "\u2264", "\u2265 "]), NUMBERS).map(
        "".join
    )
    | st.decimals(min_value=0, max_value=2000, places=3).map(str)
    | st.integers(0, 3000)
    | st.floats(min_value=0, max_value=3000, allow_nan=False)
)
LAB_RANGES = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "text": st.sampled_from(["0.70-1.00", "< 5", "8.5 - 10.2", "see report", "60–170"]),
        "low": st.decimals(min_value=0, max_value=100, places=2),
        "high": st.decimals(min_value=0, max_value=300, places=2),
    },
)
FLAGS = st.sampled_from([None, "L", "H", "N", "LL", "HH", "AA", "panic high", ""])
STATUSES = st.sampled_from([None, None, "final", "corrected", "entered-in-error", "cancelled"])
TEXT = st.text(max_size=30)  # any character but lone surrogates: quotes, controls, U+2028, emoji
TYPICAL = {
    code: st.tuples(st.sampled_from(["", "", "", "<", ">="]), st.sampled_from(_typical(code))).map(
        "".join
    )
    for code in NAMES
}
OFFSETS = st.sampled_from([0, 0, 60, -300, 330, 840, -720]).map(
    lambda minutes: UTC if minutes == 0 else timezone(timedelta(minutes=minutes))
)


@st.composite
def results(draw: st.DrawFn, code: str) -> dict[str, Any]:
    names, units, _ = NAMES[code]
    canonical = default_catalog().get(code).canonical_unit
    value: str | int | float
    if draw(st.booleans()):
        unit, value = canonical, draw(TYPICAL[code])
    else:
        unit, value = draw(st.sampled_from(units)), draw(VALUES)
    result: dict[str, Any] = {"analyte": draw(st.sampled_from(names)), "value": value, "unit": unit}
    if (lab := draw(LAB_RANGES)) is not None:
        result["reference_range"] = {
            key: str(v) if isinstance(v, Decimal) else v for key, v in lab.items()
        }
    if (flag := draw(FLAGS)) is not None:
        result["flag"] = flag
    if draw(st.booleans()):
        result["lab_comment"] = draw(TEXT)
    if status := draw(STATUSES):
        result["status"] = status
    return result


@st.composite
def panels(draw: st.DrawFn) -> dict[str, Any]:
    collected = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2026, 1, 1)))
    collected = collected.replace(tzinfo=draw(OFFSETS))
    if not draw(st.booleans()):
        collected = collected.replace(microsecond=0)
    specimen = draw(st.sampled_from(["serum", "serum", "plasma", "whole-blood", "rbc"]))
    measured = sorted(code for code, (_, _, specimens) in NAMES.items() if specimen in specimens)
    codes = draw(st.lists(st.sampled_from(measured), min_size=1, max_size=6, unique=True))
    body: dict[str, Any] = {
        "patient": {"id": str(uuid.UUID(int=9))},
        "source": draw(st.sampled_from(["acme", "lab \u00e9", 'x"y'])),
        "accession": draw(st.sampled_from(["A-1", "B/2", "\u00fc-3"])),
        "specimen": specimen,
        "status": draw(st.sampled_from(["final", "preliminary", "corrected", "amended"])),
        "collected_at": collected.isoformat(),
        "results": [draw(results(code)) for code in codes],
    }
    if draw(st.booleans()):
        body["received_at"] = (collected + timedelta(hours=draw(st.integers(0, 48)))).isoformat()
    if draw(st.booleans()):
        body["performing_lab"] = draw(TEXT)
    return body


# Ids read from PostgreSQL are asyncpg's UUID subclass, which orjson does not know as a UUID.
PATIENT_IDS = st.sampled_from([uuid.UUID(int=9), PgUUID(str(uuid.UUID(int=10)))])
PATIENTS = st.builds(
    PatientForPanel,
    id=PATIENT_IDS,
    sex=st.sampled_from(["female", "male", "other", "unknown"]),
    birth_date=st.none() | st.dates(min_value=date(1920, 1, 1), max_value=date(2025, 12, 31)),
    range_set_id=st.none(),
)


@settings(max_examples=600, deadline=None)
@given(body=panels(), patient=PATIENTS, with_ranges=st.sampled_from([True, True, True, False]))
def test_a_new_panels_document_is_what_the_output_models_wrote(
    body: dict[str, Any], patient: PatientForPanel, with_ranges: bool
) -> None:
    data = PanelCreate.model_validate(body)
    range_set = _range_set() if with_ranges else None
    try:
        normalized = normalize(data, specimen=data.specimen.value, catalog=default_catalog())
        panel, rows, out = new_panel(
            data,
            normalized,
            organization_id=uuid.UUID(int=1),
            patient=patient,
            range_set=range_set,
            source_format="json",
        )
    except UnprocessableError:
        return  # refused panels render nothing
    stored = [cast(Result, SimpleNamespace(**row)) for row in rows]
    name, version = (range_set.name, range_set.version) if range_set else (None, None)
    reference = legacy_panel_out(panel, stored, name, version)
    assert panel.document == reference.model_dump_json()
    assert out == reference
    assert out.model_dump_json() == panel.document
    assert views.panel_out(panel, stored, name, version) == reference


def test_a_snapshot_stored_before_bases_and_sources_reads_as_before() -> None:
    """Range snapshots kept by older versions lack keys the view defaults (``basis``...)."""
    snapshot = {"unit": "mmol/L", "low": "0.7", "high": "1.0", "row_id": "3"}
    assert views.applied_range(snapshot) == legacy_applied_range(snapshot)
    assert views.applied_range(None) is None
    assert views.applied_range({}) is None


@settings(max_examples=500, deadline=None)
@given(
    text=st.none() | st.text(max_size=8) | VALUES.map(str) | st.decimals().map(str),
    stored=st.decimals(allow_nan=False),
)
def test_the_reported_digits_are_read_as_before(text: str | None, stored: Decimal) -> None:
    expected = legacy_as_reported(text, stored)
    got = as_reported(text, stored)
    assert (str(got), type(got)) == (str(expected), type(expected))
    same = as_reported(str(stored), stored)
    assert str(same) == str(legacy_as_reported(str(stored), stored))


def test_a_panel_built_without_its_view_is_the_same_panel(monkeypatch: pytest.MonkeyPatch) -> None:
    """``new_panel_rows`` (for callers that answer with the document) builds what
    ``new_panel`` does, only without validating the view."""
    body = {
        "patient": {"id": str(uuid.UUID(int=9))},
        "source": "acme",
        "accession": "A-1",
        "collected_at": "2026-01-05T08:00:00Z",
        "results": [
            {"analyte": "magnesium", "value": "1.6", "unit": "mg/dL"},
            {"analyte": "calcium", "value": "<5", "unit": "mg/dL", "flag": "LL"},
        ],
    }
    data = PanelCreate.model_validate(body)
    patient = PatientForPanel(uuid.UUID(int=9), "female", date(1980, 1, 1), None)
    built = []
    for build in (new_panel, new_panel_rows):
        ids = iter(range(1, 100))
        monkeypatch.setattr(
            service,
            "new_ids",
            lambda count: [uuid.UUID(int=next(ids)) for _ in range(count)],  # noqa: B023
        )
        monkeypatch.setattr(service, "utcnow", lambda: datetime(2026, 1, 6, tzinfo=UTC))
        normalized = normalize(data, specimen="serum", catalog=default_catalog())
        panel, rows, *_ = build(
            data,
            normalized,
            organization_id=uuid.UUID(int=1),
            patient=patient,
            range_set=_range_set(),
            source_format="json",
        )
        built.append((vars(panel), rows))
    assert built[0] == built[1]
