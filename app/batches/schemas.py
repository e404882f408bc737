from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class LineOutcome(BaseModel):
    """One NDJSON line's fate: `stored` (created or corrected), `unchanged` (already stored:
    nothing written) or `refused` (with the RFC 9457 problem the single POST would answer)."""

    line: int
    outcome: Literal["stored", "unchanged", "refused"]
    status: int
    panel_id: uuid.UUID | None = None
    has_critical: bool | None = None
    # A comparator value ("<0.5") that might be critical: surfaced like has_critical.
    has_possible_critical: bool | None = None
    corrected: bool = False
    problem: dict[str, Any] | None = None


def outcome_lines(outcomes: Sequence[LineOutcome]) -> bytes:
    """The outcomes as NDJSON, one line each, as the batch route answers them."""
    return b"".join(
        outcome.model_dump_json(exclude_none=True).encode() + b"\n" for outcome in outcomes
    )


class BatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: Literal["running", "completed", "failed"]
    lines: int
    stored: int
    unchanged: int
    refused: int
    critical: int = Field(
        description="Stored or unchanged lines whose panel has a critical value "
        "(`has_critical`): review them."
    )
    possibly_critical: int = Field(
        description="Stored or unchanged lines whose panel has a value that may be critical "
        "(`has_possible_critical`: a comparator such as `<0.5` on the critical side)."
    )
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
