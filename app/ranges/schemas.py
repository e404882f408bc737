from __future__ import annotations

import uuid
from datetime import date, datetime

from app.kit.pagination import PageMeta
from app.kit.schemas_common import JsonDecimal, OutputModel


class RangeRowOut(OutputModel):
    id: uuid.UUID
    analyte: str
    specimen: str | None
    sex: str | None
    age_min_years: JsonDecimal | None
    age_max_years: JsonDecimal | None
    unit: str
    low: JsonDecimal | None
    high: JsonDecimal | None
    critical_low: JsonDecimal | None
    critical_high: JsonDecimal | None
    absolute_low: JsonDecimal | None
    absolute_high: JsonDecimal | None
    source: str
    note: str | None


class RatioRangeOut(OutputModel):
    code: str
    display: str
    numerator: str
    denominator: str
    low: JsonDecimal | None
    high: JsonDecimal | None
    source: str
    note: str | None


class RangeSetOut(OutputModel):
    id: uuid.UUID
    name: str
    version: int
    status: str
    description: str | None
    source: str
    effective_from: date | None
    created_at: datetime
    activated_at: datetime | None


class RangeSetDetailOut(RangeSetOut):
    rows: list[RangeRowOut]
    ratios: list[RatioRangeOut]


class RangeSetPage(PageMeta):
    items: list[RangeSetOut]
