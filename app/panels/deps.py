"""What a patient's panel lists and trends take: the collection-time window, and the page of a
trend (100 points by default)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypedDict

from fastapi import Depends, Query

from app.kit.schemas_common import Instant
from app.patients.deps import PatientQuery, patient_query

CollectedFrom = Annotated[
    Instant | None,
    Query(description="Only panels collected at or after this time (with UTC offset)."),
]
CollectedTo = Annotated[
    Instant | None, Query(description="Only panels collected before this time.")
]


class CollectedBounds(TypedDict):
    """Specimens collected at or after `collected_from` and before `collected_to`."""

    collected_from: datetime | None
    collected_to: datetime | None


def _collected(
    collected_from: CollectedFrom = None, collected_to: CollectedTo = None
) -> CollectedBounds:
    return {"collected_from": collected_from, "collected_to": collected_to}


Collected = Annotated[CollectedBounds, Depends(_collected)]
"""The `collected_from` and `collected_to` query parameters (`**collected`)."""


PatientTrend = Annotated[PatientQuery, Depends(patient_query(default_limit=100))]
"""A patient's trend: 100 points a page by default."""
