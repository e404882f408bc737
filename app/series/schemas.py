from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.kit.pagination import PageMeta
from app.kit.schemas_common import JsonDecimal, OutputModel


class SeriesOut(OutputModel):
    key: str = Field(description="The series as asked for (`magnesium`, `isi`).")
    kind: Literal["analyte", "isi"]
    label: str
    unit: str | None = Field(description="The unit of every value; null for the ISI score.")


class SeriesRowOut(OutputModel):
    at: datetime = Field(
        description="The time point: a specimen's collection time, or an ISI assessment's "
        "day at 00:00 UTC."
    )
    values: list[JsonDecimal | None] = Field(
        description="One value per entry of `series`, in that order; null where the series "
        "has no value at this time."
    )
    comparators: list[Literal["<", "<=", ">", ">="] | None] = Field(
        description="Per series: the comparator of a censored value (`<0.5`: `values` holds "
        "0.5), else null."
    )
    flags: list[str | None] = Field(
        description="Per series: the result's interpretation (L, N, H, LL, HH, IND) or the "
        "ISI category."
    )


class SeriesPage(PageMeta):
    series: list[SeriesOut]
    items: list[SeriesRowOut] = Field(description="Time points, the oldest first.")
