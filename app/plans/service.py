"""Treatment plans: load them, write a change as a new version, edit items, read history.

Every change is a version: the plan row carries the current state, and each change appends a
`TreatmentPlanVersion` under optimistic locking (`expected_version`). Drafting lives in
`drafting.py`, status changes and the activation gate in `activation.py`, the safety re-check
in `review.py`, the clinician worklist in `worklist.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.db import new_id, utcnow
from app.core.errors import NotFoundError
from app.domain.plans.document import PlanDocument
from app.domain.plans.items import PlanItem, SafetyFinding
from app.kit.concurrency import PreconditionFailedError
from app.kit.lookup import found
from app.kit.pagination import Keyset, decode_optional, keyset
from app.models.plan import TreatmentPlan, TreatmentPlanVersion
from app.patients import service as patients
from app.plans import repository, views
from app.plans.printable import render_plan_html
from app.plans.repository import PlanChanges
from app.plans.schemas import PlanItemIn

EDITABLE = frozenset({"draft", "active"})


async def get_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID
) -> TreatmentPlan:
    return found(
        await repository.get(session, organization_id=organization_id, plan_id=plan_id),
        NotFoundError("No treatment plan with this id."),
    )


def dump_findings(findings: Sequence[SafetyFinding]) -> list[dict[str, object]]:
    """Findings as a problem's `findings` extension (the shape they are stored in)."""
    return [f.model_dump(mode="json", exclude_none=True) for f in findings]


def article(status: str) -> str:
    """`A draft` / `An active`: the status with its article, for messages."""
    return f"{'An' if status[0] in 'aeiou' else 'A'} {status}"


def version_row(
    plan: TreatmentPlan,
    *,
    version: int,
    status: str,
    change: str,
    reason: str | None,
    principal: Principal,
    document: PlanDocument,
) -> TreatmentPlanVersion:
    return TreatmentPlanVersion(
        id=new_id(),
        organization_id=plan.organization_id,
        plan_id=plan.id,
        version=version,
        status=status,
        change=change,
        reason=reason,
        changed_by=principal.id,
        changed_at=utcnow(),
        document=document,
    )


async def apply_change(
    session: AsyncSession,
    *,
    plan: TreatmentPlan,
    expected_version: int,
    principal: Principal,
    status: str,
    change: str,
    reason: str | None,
    document: PlanDocument,
    values: PlanChanges,
) -> TreatmentPlan:
    """Write the change as the next version, or 412 when someone else changed the plan since
    `expected_version`; returns the plan as stored now."""
    version = version_row(
        plan,
        version=expected_version + 1,
        status=status,
        change=change,
        reason=reason,
        principal=principal,
        document=document,
    )
    changes: PlanChanges = {
        "status": status,
        "document": document,
        "updated_at": utcnow(),
        **values,
    }
    won = await repository.update_if_version(
        session,
        plan_id=plan.id,
        expected_version=expected_version,
        values=changes,
        version=version,
    )
    if not won:
        raise PreconditionFailedError(
            "The plan was changed by someone else; read it again and reapply your change."
        )
    organization_id, plan_id = plan.organization_id, plan.id
    session.expire_all()
    return await get_or_raise(session, organization_id=organization_id, plan_id=plan_id)


async def versions(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID
) -> Sequence[TreatmentPlanVersion]:
    await get_or_raise(session, organization_id=organization_id, plan_id=plan_id)
    return await repository.versions(session, organization_id=organization_id, plan_id=plan_id)


async def version_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID, version: int
) -> TreatmentPlanVersion:
    row = await repository.get_version(
        session, organization_id=organization_id, plan_id=plan_id, version=version
    )
    if row is None:
        await get_or_raise(session, organization_id=organization_id, plan_id=plan_id)
        raise NotFoundError(f"The plan has no version {version}.")
    return row


def merge_items(current: Sequence[PlanItem], edits: Sequence[PlanItemIn]) -> list[PlanItem]:
    """The clinician's list, keeping server-owned provenance (rule, template, source) of items
    that already existed; new items are the clinician's own."""
    by_id = {item.id: item for item in current}
    merged = []
    for edit in edits:
        old = by_id.get(edit.id)
        data = edit.model_dump()
        if old is not None:
            data.update(rule_id=old.rule_id, template_id=old.template_id)
            data["source"] = data.get("source") or old.source
            # A drafted restriction ("stop extra magnesium") cannot be edited away silently.
            data["effects"] = [
                effect.model_dump() for effect in dict.fromkeys([*old.effects, *edit.effects])
            ]
        merged.append(PlanItem.model_validate(data))
    return merged


async def patient_plans(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    statuses: Sequence[str] | None,
    limit: int,
    cursor: str | None,
) -> Keyset[TreatmentPlan]:
    """A page of a patient's plans, newest first, with the cursor of the next page; 404 for
    an unknown patient (or another organization's)."""
    await patients.get_or_raise(session, organization_id=organization_id, patient_id=patient_id)
    plans = await repository.search(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        statuses=statuses,
        limit=limit + 1,
        after=decode_optional(cursor),
    )
    return keyset(plans, limit, lambda plan: (plan.created_at, plan.id))


async def printable_page(
    session: AsyncSession,
    *,
    plan: TreatmentPlan,
    clinic_name: str | None,
    clinic_contact: str | None,
) -> str:
    """The patient's printable page of the plan (HTML, plain language, no internal codes)."""
    patient = await patients.get_or_raise(
        session, organization_id=plan.organization_id, patient_id=plan.patient_id
    )
    return render_plan_html(
        views.printable(plan, patient, clinic_name=clinic_name, clinic_contact=clinic_contact)
    )
