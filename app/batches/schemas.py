from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class LineOutcome(BaseModel):
    """One NDJSON line's fate: `stored` (created or corrected), `unchanged` (already stored:
    nothing written) or `refused` (with the RFC 9457 problem the single POST would answer)."""

    line: int
    outcome: Literal["stored", "unchanged", "refused"]
    status: int
    panel_id: uuid.UUID | None = None
    has_critical: bool | None = None
    corrected: bool = False
    problem: dict[str, Any] | None = None


class BatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: Literal["running", "completed", "failed"]
    lines: int
    stored: int
    unchanged: int
    refused: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
