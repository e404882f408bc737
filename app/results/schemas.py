from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from app.kit.pagination import Page
from app.kit.schemas_common import IdentifierOut, OutputModel
from app.panels.schemas import ResultOut

ResultFlag = Literal["abnormal", "critical", "possibly-critical"]


class FlaggedResultOut(OutputModel):
    patient_id: uuid.UUID
    patient_identifier: IdentifierOut | None = Field(
        description="The patient's first MRN (identifier type `MR`), else its first identifier."
    )
    patient_name: str | None = Field(
        default=None, description="The patient's name as a page shows it, when one is recorded."
    )
    panel_id: uuid.UUID
    collected_at: datetime
    result: ResultOut


class FlaggedResultPage(Page[FlaggedResultOut]):
    pass
