"""Aligned series: minerals (in units the caller picks) and ISI scores on one time axis."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.catalog import Analyte, default_catalog
from app.domain.errors import DomainError
from app.domain.units import convert
from app.kit import query_params
from app.kit.pagination import encode_cursor
from app.models.mixins import PatientKey
from app.models.panel import Result
from app.models.sleep_assessment import SleepAssessment
from app.series import repository
from app.series.schemas import SeriesOut, SeriesPage, SeriesRowOut
from app.sleep.service import date_bounds

MAX_SERIES = 12
Comparator = Literal["<", "<=", ">", ">="]
# A time-only cursor: rows are distinct time points, so the time alone is the keyset.
_NO_ID = uuid.UUID(int=0)


class InvalidSeriesQueryError(query_params.InvalidQueryError):
    title = "A query parameter cannot be used"


@dataclass(frozen=True, slots=True)
class AnalyteSeries:
    key: str
    analyte: Analyte
    unit: str


def parse_analytes(specs: list[str]) -> list[AnalyteSeries]:
    """`magnesium:mg/dL` → magnesium in mg/dL; `zinc` → zinc in its canonical unit."""
    catalog = default_catalog()
    out: list[AnalyteSeries] = []
    for spec in specs:
        name, _, unit = spec.partition(":")
        try:
            analyte = catalog.resolve(name.strip())
            target = analyte.canonical_unit
            if unit.strip():
                target = catalog.normalize_unit_for(analyte, unit.strip())
                convert(
                    Decimal(1), analyte=analyte, from_unit=analyte.canonical_unit, to_unit=target
                )
        except DomainError as exc:
            message = f"analyte={spec}: {exc}"
            raise InvalidSeriesQueryError(
                message, errors=[{"field": "query.analyte", "message": message}]
            ) from exc
        out.append(AnalyteSeries(key=spec, analyte=analyte, unit=target))
    return out


def cursor_time(after: tuple[datetime, uuid.UUID] | None) -> datetime | None:
    return after[0] if after is not None else None


async def aligned(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    analytes: list[str],
    include: list[str],
    start: date | None,
    end: date | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> SeriesPage:
    if not analytes and not include:
        message = "Ask for at least one series: `analyte=magnesium` and/or `include=isi`."
        raise InvalidSeriesQueryError(message, errors=[{"field": "query", "message": message}])
    if len(analytes) + len(include) > MAX_SERIES:
        message = f"At most {MAX_SERIES} series per request."
        raise InvalidSeriesQueryError(message, errors=[{"field": "query", "message": message}])
    wanted = parse_analytes(analytes)
    with_isi = "isi" in include
    key = PatientKey(organization_id, patient_id)
    codes = [s.analyte.code for s in wanted]
    points = await repository.time_points(
        session,
        key,
        analytes=codes,
        with_isi=with_isi,
        bounds=date_bounds(start, end),
        after=cursor_time(after),
        limit=limit + 1,
    )
    more = len(points) > limit
    points = points[:limit]
    series = [
        SeriesOut(key=s.key, kind="analyte", label=s.analyte.display, unit=s.unit) for s in wanted
    ]
    if with_isi:
        series.append(SeriesOut(key="isi", kind="isi", label="Insomnia Severity Index", unit=None))
    width = len(series)
    rows: dict[datetime, SeriesRowOut] = {
        at: SeriesRowOut(
            at=at, values=[None] * width, comparators=[None] * width, flags=[None] * width
        )
        for at in (_utc(p) for p in points)
    }
    if points:
        # The page's rows are its time points: fetch only what falls between its ends.
        first, last = _utc(points[0]), _utc(points[-1])
        if wanted:
            results = await repository.results_between(
                session, key, analytes=codes, first=first, last=last
            )
            _fill_results(rows, wanted, results)
        if with_isi:
            assessments = await repository.assessments_between(session, key, first=first, last=last)
            _fill_isi(rows, width - 1, assessments)
    next_cursor = encode_cursor(_utc(points[-1]), _NO_ID) if more and points else None
    return SeriesPage(
        series=series, items=list(rows.values()), limit=limit, next_cursor=next_cursor
    )


def _fill_results(
    rows: dict[datetime, SeriesRowOut], wanted: list[AnalyteSeries], results: Sequence[Result]
) -> None:
    """Each result into its time point's row, in the column of its series' unit."""
    for result in results:
        row = rows.get(_utc(result.collected_at))
        if row is None:
            continue
        for index, s in enumerate(wanted):
            if s.analyte.code != result.analyte:
                continue
            row.values[index] = convert(
                result.canonical_value,
                analyte=s.analyte,
                from_unit=result.canonical_unit,
                to_unit=s.unit,
            )
            row.comparators[index] = cast(Comparator | None, result.comparator)
            row.flags[index] = result.interpretation


def _fill_isi(
    rows: dict[datetime, SeriesRowOut], column: int, assessments: Sequence[SleepAssessment]
) -> None:
    for assessment in assessments:
        row = rows.get(_utc(assessment.timeline_at))
        if row is not None:
            row.values[column] = Decimal(assessment.total)
            row.flags[column] = assessment.category


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
