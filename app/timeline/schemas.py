from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field

from app.domain.result_status import ResultStatus
from app.kit.pagination import Page
from app.kit.schemas_common import JsonDecimal, OutputModel
from app.panels.schemas import RatioOut


class TimelineResultOut(OutputModel):
    analyte: str
    value: JsonDecimal = Field(description="In the analyte's canonical unit.")
    comparator: Literal["<", "<=", ">", ">="] | None = Field(
        description="Set when the lab reported a bound (e.g. below detection)."
    )
    unit: str = Field(description="The canonical unit (UCUM).")
    interpretation: Literal["L", "N", "H", "LL", "HH", "IND"] | None
    critical: bool
    status: ResultStatus = Field(
        default="final",
        description="preliminary, final, corrected or amended (withdrawn results are left out).",
    )


class TimelinePanelEntry(OutputModel):
    kind: Literal["panel"]
    at: datetime = Field(description="When the specimen was collected.")
    panel_id: uuid.UUID
    status: str = Field(description="preliminary, final, corrected or cancelled.")
    specimen: str
    results: list[TimelineResultOut]
    ratios: list[RatioOut]


class TimelineSleepEntry(OutputModel):
    kind: Literal["sleep-assessment"]
    at: datetime = Field(description="The day answered (`assessed_on`) at 00:00 UTC.")
    id: uuid.UUID
    instrument: Literal["ISI"]
    assessed_on: date
    total: int
    category: Literal["none", "subthreshold", "moderate", "severe"]


TimelineEntry = Annotated[TimelinePanelEntry | TimelineSleepEntry, Field(discriminator="kind")]


class TimelinePage(Page[TimelineEntry]):
    pass
