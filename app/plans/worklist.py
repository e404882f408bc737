"""The clinician worklist: drafts awaiting review and retests due in active plans.

Both sections are selected, sorted and paged here; the router only shapes HTTP. Retests are
items inside plan documents, so they are counted and keyset-paged in memory over the active
plans with a retest due (the `next_retest_date` column narrows that set in SQL)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.domain.plans.items import PlanItem, Retest
from app.kit.pagination import decode_keyset, decode_optional, encode_keyset, keyset
from app.kit.schemas_common import IdentifierOut
from app.models.plan import TreatmentPlan
from app.plans import repository, views
from app.plans.schemas import (
    DraftDue,
    DraftsSection,
    RetestDue,
    RetestsSection,
    WorklistOut,
    WorklistPatient,
)
from app.results.labels import PatientLabel, patient_labels


@dataclass(frozen=True, slots=True)
class _DueRetest:
    plan: TreatmentPlan
    item: PlanItem
    retest: Retest

    @property
    def key(self) -> tuple[str, str, str]:
        """The sort (and cursor) key: due date, plan, item."""
        return (self.retest.due_date.isoformat(), str(self.plan.id), self.item.id)


async def _drafts_page(
    session: AsyncSession, *, organization_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[TreatmentPlan], int, str | None]:
    drafts, total = await repository.drafts(
        session, organization_id=organization_id, limit=limit + 1, after=decode_optional(cursor)
    )
    page = keyset(drafts, limit, lambda plan: (plan.created_at, plan.id))
    return page.rows, total, page.next_cursor


async def _retests_page(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    due_by: date,
    limit: int,
    cursor: str | None,
) -> tuple[list[_DueRetest], int, str | None]:
    due = [
        _DueRetest(plan, item, item.retest)
        for plan in await repository.retests_due(
            session, organization_id=organization_id, due_by=due_by
        )
        for item in plan.document.items
        if item.retest is not None and item.retest.due_date <= due_by
    ]
    due.sort(key=lambda entry: entry.key)
    total = len(due)
    if cursor:
        after = decode_keyset(cursor, 3)
        due = [entry for entry in due if entry.key > after]
    page = keyset(due, limit, cursor_of=lambda entry: encode_keyset(*entry.key))
    return page.rows, total, page.next_cursor


def _who(label: PatientLabel | None) -> WorklistPatient:
    if label is None:
        return WorklistPatient()
    identifier = (
        IdentifierOut(system=label.identifier_system, value=label.identifier_value)
        if label.identifier_system is not None and label.identifier_value is not None
        else None
    )
    return WorklistPatient(patient_identifier=identifier, patient_name=label.name)


def _retest_row(entry: _DueRetest, who: WorklistPatient, today: date) -> RetestDue:
    due_date = entry.retest.due_date
    return RetestDue(
        plan_id=entry.plan.id,
        patient_id=entry.plan.patient_id,
        item_id=entry.item.id,
        title=entry.item.title,
        analytes=list(entry.retest.analytes),
        due_date=due_date,
        overdue=due_date < today,
        **who.model_dump(exclude_unset=True),
    )


def _draft_row(plan: TreatmentPlan, who: WorklistPatient) -> DraftDue:
    return DraftDue(**views.plan_summary(plan).model_dump(), **who.model_dump(exclude_unset=True))


async def worklist(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    due_within_days: int,
    limit: int,
    drafts_cursor: str | None,
    retests_cursor: str | None,
) -> WorklistOut:
    """Drafts awaiting review (oldest first) and the retests due in active plans (earliest
    first), each section with its own total (drafts: plans; retests: retest items, not plans)
    and cursor, each row naming its patient (first MRN, and name where recorded)."""
    today = utcnow().date()
    due_by = today + timedelta(days=due_within_days)
    drafts, drafts_total, drafts_next = await _drafts_page(
        session, organization_id=organization_id, limit=limit, cursor=drafts_cursor
    )
    retests, retests_total, retests_next = await _retests_page(
        session, organization_id=organization_id, due_by=due_by, limit=limit, cursor=retests_cursor
    )
    labels = await patient_labels(
        session,
        organization_id=organization_id,
        patient_ids=[p.patient_id for p in drafts] + [e.plan.patient_id for e in retests],
    )
    return WorklistOut(
        as_of=today,
        due_by=due_by,
        drafts=DraftsSection(
            total=drafts_total,
            truncated=drafts_next is not None,
            next_cursor=drafts_next,
            items=[_draft_row(p, _who(labels.get(p.patient_id))) for p in drafts],
        ),
        retests_due=RetestsSection(
            total=retests_total,
            truncated=retests_next is not None,
            next_cursor=retests_next,
            items=[_retest_row(e, _who(labels.get(e.plan.patient_id)), today) for e in retests],
        ),
    )


def patients_listed(out: WorklistOut) -> list[uuid.UUID]:
    """Every patient a worklist page names, once each, in page order (for the audit trail)."""
    patient_ids: Sequence[uuid.UUID] = [d.patient_id for d in out.drafts.items] + [
        r.patient_id for r in out.retests_due.items
    ]
    return list(dict.fromkeys(patient_ids))
