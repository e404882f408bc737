from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StrictInt

from app.domain.isi import ITEM_COUNT, ITEM_MAX, ITEM_MIN
from app.kit.pagination import Page
from app.kit.schemas_common import InputModel, OutputModel
from app.patient_context.schemas import Note, PastDate

IsiAnswer = Annotated[StrictInt, Field(ge=ITEM_MIN, le=ITEM_MAX)]


class SleepAssessmentCreate(InputModel):
    instrument: Literal["ISI"] = Field(
        description="The questionnaire: the Insomnia Severity Index."
    )
    assessed_on: PastDate = Field(
        description="The day the patient answered (between 1900-01-01 and today)."
    )
    items: list[IsiAnswer] = Field(
        min_length=ITEM_COUNT,
        max_length=ITEM_COUNT,
        description="The answers to the 7 ISI items in questionnaire order, each 0 (none) to "
        "4 (very severe). The server computes the total and category.",
    )
    note: Note | None = Field(default=None, description="Free-text remark for clinicians.")


class SleepAssessmentOut(OutputModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    instrument: Literal["ISI"]
    assessed_on: date
    items: list[int]
    total: int = Field(description="Sum of the items, 0-28.")
    category: Literal["none", "subthreshold", "moderate", "severe"] = Field(
        description="0-7 none, 8-14 subthreshold, 15-21 moderate, 22-28 severe "
        "(Bastien, Vallieres & Morin, Sleep Med 2001;2:297-307)."
    )
    category_display: str
    note: str | None
    recorded_at: datetime
    recorded_by: str


class SleepAssessmentPage(Page[SleepAssessmentOut]):
    pass


ASSESSMENT_EXAMPLE = {
    "instrument": "ISI",
    "assessed_on": "2026-11-20",
    "items": [3, 2, 2, 3, 2, 2, 3],
    "note": "Before starting magnesium glycinate in the evening.",
}
