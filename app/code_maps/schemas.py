from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict, Field, JsonValue

from app.kit.pagination import Page
from app.kit.schemas_common import InputModel, OutputModel

# One entry as the API shows it: the schema's example and the routes' response examples.
ENTRY_EXAMPLE: dict[str, JsonValue] = {
    "id": "0b9f5f5e-3b8e-4a53-9d0e-6f1a3c2b7d10",
    "sending_facility": "ACME-LAB",
    "local_code": "MAGS",
    "analyte": "magnesium",
    "note": "ACME sends MAGS",
    "created_at": "2026-11-25T15:00:00Z",
}


class CodeMapEntryIn(InputModel):
    analyte: str = Field(
        min_length=1,
        max_length=50,
        description="Our analyte code (as in `/api/v1/panels` results), e.g. `magnesium`.",
    )
    note: str | None = Field(
        default=None, max_length=500, description="Why the mapping exists, who asked for it."
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"analyte": "magnesium", "note": "ACME sends MAGS"}]}
    )


class CodeMapEntryOut(OutputModel):
    id: uuid.UUID
    sending_facility: str = Field(description="MSH-4 (upper-case), or `*` for any facility.")
    local_code: str = Field(description="The sender's OBX-3 code (upper-case).")
    analyte: str
    note: str | None
    created_at: datetime

    model_config = ConfigDict(json_schema_extra={"examples": [ENTRY_EXAMPLE]})


class CodeMapPage(Page[CodeMapEntryOut]):
    pass
