"""The shared list SQL (time windows, newest-first keyset pages) and load-or-fail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Select, select

from app.core.errors import NotFoundError
from app.kit.list_sql import newest_first, within
from app.kit.lookup import found
from app.models.mixins import PatientKey
from app.models.sleep_assessment import SleepAssessment

MOMENT = datetime(2026, 11, 2, tzinfo=UTC)


def _sql(query: Select[Any]) -> str:
    return str(query)


def test_newest_first_continues_strictly_after_the_last_row() -> None:
    query = newest_first(
        select(SleepAssessment),
        SleepAssessment.timeline_at,
        SleepAssessment.id,
        after=(MOMENT, uuid.uuid4()),
        limit=11,
    )
    sql = _sql(query)
    # One row comparison (an index bound on PostgreSQL), strictly after (moment, id).
    assert "(sleep_assessment.timeline_at, sleep_assessment.id) < (" in sql
    assert "ORDER BY sleep_assessment.timeline_at DESC, sleep_assessment.id DESC" in sql
    assert "LIMIT" in sql


def test_the_first_page_has_no_keyset_condition() -> None:
    sql = _sql(
        newest_first(
            select(SleepAssessment),
            SleepAssessment.timeline_at,
            SleepAssessment.id,
            after=None,
            limit=5,
        )
    )
    assert "WHERE" not in sql


def test_within_includes_both_ends_and_leaves_open_sides_open() -> None:
    both = _sql(within(select(SleepAssessment), SleepAssessment.timeline_at, (MOMENT, MOMENT)))
    assert ">=" in both
    assert "<=" in both
    assert "WHERE" not in _sql(
        within(select(SleepAssessment), SleepAssessment.timeline_at, (None, None))
    )


def test_a_patient_key_filters_on_the_organization_and_the_patient() -> None:
    key = PatientKey(uuid.uuid4(), uuid.uuid4())
    sql = _sql(select(SleepAssessment).where(key.owns(SleepAssessment)))
    assert "sleep_assessment.organization_id = " in sql
    assert "sleep_assessment.patient_id = " in sql


def test_found_returns_the_value_or_raises_the_given_error() -> None:
    assert found(0, NotFoundError("none")) == 0
    with pytest.raises(NotFoundError, match="No patient"):
        found(None, NotFoundError("No patient with this id."))
