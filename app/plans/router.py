from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from fastapi.types import DecoratedCallable

from app.audit.context import audit_target, audited
from app.auth.deps import AUTH_RESPONSES, CanReadPlans
from app.core.deps import AuditedSession, SettingsDep
from app.domain.plans.diff import diff_versions
from app.kit.problems import PROBLEM_RESPONSES, problem_doc
from app.models.plan import TreatmentPlan
from app.patients.deps import PatientListing
from app.plans import activation, drafting, editing, openapi, service, views
from app.plans import worklist as plan_worklist
from app.plans.deps import PlanChangeDep, PlanDraftingDep, ReadablePlan, plan_etag
from app.plans.negotiation import Negotiated, Representation
from app.plans.schemas import (
    ItemsUpdate,
    PlanCreate,
    PlanDiffOut,
    PlanOut,
    PlanPage,
    PlanStatus,
    PlanVersionDetailOut,
    PlanVersionList,
    PlanVersionOut,
    RegenerateIn,
    StatusChange,
    WorklistOut,
)

router = APIRouter(
    prefix="/api/v1",
    tags=["treatment plans"],
    responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES},
)


async def _plan_response_checked(
    session: AuditedSession, plan: TreatmentPlan, response: Response
) -> PlanOut:
    """A plan read on its own: `can_activate` also weighs results that arrived since drafting."""
    response.headers["ETag"] = plan_etag(plan)
    return views.plan_out(plan, await activation.activation_blockers(session, plan=plan))


def _plan_route(
    method: str,
    path: str,
    *,
    action: str,
    summary: str,
    **extra: Any,
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """Every plan route is audited as `action` on a plan; `extra` goes to `api_route` as is
    (the response model is the function's return annotation unless `extra` names one)."""
    return router.api_route(
        path,
        methods=[method],
        summary=summary,
        dependencies=[Depends(audited(action, "plan"))],
        **extra,
    )


def _draft_route(path: str, *, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A route that drafts a new plan: 201, replayed for a repeated `Idempotency-Key`."""
    return _plan_route(
        "POST",
        path,
        action="create",
        summary=summary,
        response_model=PlanOut,
        status_code=status.HTTP_201_CREATED,
        responses=openapi.CREATE_RESPONSES,
    )


# The drafting routes' bodies, with their documented examples.
_PlanCreateBody = Annotated[PlanCreate, Body(openapi_examples=openapi.CREATE_EXAMPLES)]
_RegenerateBody = Annotated[RegenerateIn, Body(openapi_examples=openapi.REGENERATE_EXAMPLES)]


def _change_route(
    method: str, path: str, *, summary: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A route that changes a plan under `If-Match`, audited as an update."""
    return _plan_route(
        method, path, action="update", summary=summary, responses=openapi.CHANGE_RESPONSES
    )


@_draft_route("/patients/{patient_id}/plans", summary="Draft a treatment plan")
async def create_plan(
    patient_id: uuid.UUID, draft: PlanDraftingDep, body: _PlanCreateBody
) -> Response:
    """Drafts a plan from the organization's **active rule set**: the latest result of each
    analyte in the chosen panels (default: the patient's panels of the last 365 days), their
    mineral ratios, the latest Insomnia Severity Index and the patient's clinical context.
    Each item carries a patient-readable instruction and a clinician rationale naming the
    findings and rule behind it; a critical result always puts an urgent referral first.

    The safety engine runs at once (upper intake limits, interactions, contraindications);
    its findings come back with the plan. The plan is a **draft** for a clinician to review:
    it is never final until activated. **422** when there are no results to draft from or a
    panel is not this patient's; **409** when no rule set is active."""
    audit_target(draft.request, patient_id=patient_id)
    return await draft.created(drafting.generate, body, patient_id=patient_id)


@_plan_route(
    "GET", "/patients/{patient_id}/plans", action="search", summary="A patient's treatment plans"
)
async def list_patient_plans(
    principal: CanReadPlans,
    query: PatientListing,
    status_: Annotated[
        list[PlanStatus] | None,
        Query(alias="status", description="Only plans in these statuses (repeat to combine)."),
    ] = None,
) -> PlanPage:
    """The patient's plans, newest first, optionally by status. Pages are keyset-based: follow
    `next_cursor` until it is null. An unknown patient (or another organization's) is 404."""
    page = await service.patient_plans(
        query.session,
        **await query.patient(),
        statuses=status_,
        limit=query.limit,
        cursor=query.cursor,
    )
    return query.linked(page).page(PlanPage, views.plan_summary)


@_plan_route("GET", "/plans/worklist", action="search", summary="Clinician worklist")
async def worklist(
    request: Request,
    session: AuditedSession,
    principal: CanReadPlans,
    due_within_days: Annotated[
        int, Query(ge=0, le=365, description="Retests due within this many days from today.")
    ] = 14,
    limit: Annotated[int, Query(ge=1, le=200, description="Entries per section.")] = 50,
    drafts_cursor: Annotated[
        str | None,
        Query(max_length=200, description="`drafts.next_cursor` of the previous page."),
    ] = None,
    retests_cursor: Annotated[
        str | None,
        Query(max_length=200, description="`retests_due.next_cursor` of the previous page."),
    ] = None,
) -> WorklistOut:
    """What needs a clinician: **drafts awaiting review** (the longest-waiting first) and
    **retests due** in active plans by `today + due_within_days` (overdue ones first). Each
    section says how many entries it has in all (`retests_due.total` counts retests, not
    plans), whether this page was cut at `limit`, and its own `next_cursor` (pass it as
    `drafts_cursor` / `retests_cursor`). Every row names its patient (first MRN, and name where
    recorded); the audit trail records each patient listed."""
    out = await plan_worklist.worklist(
        session,
        organization_id=principal.organization_id,
        due_within_days=due_within_days,
        limit=limit,
        drafts_cursor=drafts_cursor,
        retests_cursor=retests_cursor,
    )
    audit_target(request, patient_ids=plan_worklist.patients_listed(out))
    return out


@_plan_route(
    "GET",
    "/plans/{plan_id}",
    action="read",
    summary="Read a treatment plan (JSON, or the printable page)",
    response_model=PlanOut,
    responses={
        200: {
            "description": "The plan as JSON, or with `Accept: text/html` the patient's "
            "printable page (plain language, no internal codes).",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        406: problem_doc("Accept names neither application/json nor text/html."),
    },
)
async def get_plan(
    response: Response,
    session: AuditedSession,
    principal: CanReadPlans,
    settings: SettingsDep,
    representation: Negotiated,
    plan: ReadablePlan,
) -> PlanOut | HTMLResponse:
    """One plan with its items grouped by category (urgent referral first), every safety
    finding with severity and source, overrides, the rules that fired with the findings that
    triggered them, the facts it was drafted from, its rule-set version, author and approver,
    and an `ETag` for edits.

    Send `Accept: text/html` for the patient's printable page of the same plan. A draft is
    marked as not yet approved on the page."""
    if representation is Representation.HTML:
        page = await service.printable_page(
            session,
            plan=plan,
            clinic_name=settings.clinic_name,
            clinic_contact=settings.clinic_contact,
        )
        return HTMLResponse(
            page,
            headers={
                "ETag": plan_etag(plan),
                "Vary": "Accept",
                "Cache-Control": "no-store",
            },
        )
    response.headers["Vary"] = "Accept"
    return await _plan_response_checked(session, plan, response)


@_change_route("PUT", "/plans/{plan_id}/items", summary="Edit a plan's items")
async def edit_items(
    change: PlanChangeDep,
    body: Annotated[ItemsUpdate, Body(openapi_examples=openapi.ITEMS_EXAMPLES)],
) -> PlanOut:
    """Replaces the plan's item list (send every item to keep; items are matched by `id`, and
    existing items keep their rule provenance). The safety engine runs again with the
    patient's current context; findings come back with the plan. A **draft** accepts any
    edit (findings are shown); an **active** plan only accepts an edit that leaves no blocking
    finding unresolved (**409** `blocking-findings`, with overrides allowed in `overrides`).
    Completed, revoked and entered-in-error plans are not editable (**409**).

    Needs `If-Match: <ETag>`: **428** without it, **412** when the plan changed since. Every
    edit makes a new version."""
    return await change.apply(
        editing.edit_items, items=body.items, overrides=body.overrides, reason=body.reason
    )


@_change_route(
    "POST", "/plans/{plan_id}/status", summary="Activate, complete, revoke or retract a plan"
)
async def change_status(
    change: PlanChangeDep,
    body: Annotated[StatusChange, Body(openapi_examples=openapi.STATUS_EXAMPLES)],
) -> PlanOut:
    """Moves the plan along `draft → active → completed`, or to `revoked` /
    `entered-in-error` (which need a `reason`). Any other change is **409**
    `illegal-status-transition`.

    Activation runs the safety engine again with the patient's current context and is refused
    (**409** `blocking-findings`) while a blocking finding is unresolved. Findings that allow
    it can be overridden in `overrides` with a reason, which is recorded with who and when;
    hard stops can never be overridden (**422** `invalid-override` saying why): a tolerable
    upper intake level exceeded, a critical or possibly critical result without an urgent
    referral, items contradicting each other about one mineral, and every finding the rule set
    marks `overridable: false` (shipped: magnesium with eGFR < 30 or kidney disease, iron with
    high ferritin or hemochromatosis, calcium or magnesium supplements with a high level).

    Activation also re-checks the plan against the present (**409** `blocking-findings`):
    a critical or possibly critical result that arrived after drafting (`new-critical-result`:
    regenerate the plan, it cannot be acknowledged), a newer result for an analyte the plan
    relies on (`newer-result:<analyte>`: regenerate, or list the result ids in
    `acknowledge_results`), and a plan marked for review because a result it rests on was
    withdrawn or corrected (`basis-under-review`: regenerate, or `acknowledge_review: true`).
    Acknowledgements are recorded in the plan version with who and when; acknowledging a
    critical result is **422** `cannot-acknowledge`. The activating clinician is recorded as
    approver.

    Needs `If-Match: <ETag>`: **428** without it, **412** when the plan changed since."""
    return await change.apply(activation.change_status, request=body)


@_draft_route("/plans/{plan_id}/regenerate", summary="Draft a new plan from the current rules")
async def regenerate_plan(
    plan_id: uuid.UUID, draft: PlanDraftingDep, body: _RegenerateBody
) -> Response:
    """Drafts a **new** plan for the same patient from the **currently active** rule set
    (default: the patient's latest results, as for a new plan, so it sees what arrived
    since). The new plan names the plan it replaces and, in
    `regenerated_from`, the rule-set version that plan used, so a change of rules is visible.
    The old plan is not changed; revoke it if the new one replaces it."""
    audit_target(draft.request, resource_id=plan_id)
    return await draft.created(drafting.regenerate, body, plan_id=plan_id)


@_plan_route("GET", "/plans/{plan_id}/versions", action="read", summary="A plan's version history")
async def list_versions(
    session: AuditedSession, principal: CanReadPlans, plan: ReadablePlan
) -> PlanVersionList:
    """Every version of the plan, oldest first: what changed (`generated`, `items-edited`,
    `status:<status>`), why, by whom and when."""
    rows = await service.versions(
        session, organization_id=principal.organization_id, plan_id=plan.id
    )
    return PlanVersionList(plan_id=plan.id, items=[PlanVersionOut.model_validate(r) for r in rows])


@_plan_route(
    "GET",
    "/plans/{plan_id}/versions/{version}",
    action="read",
    summary="Read one version of a plan",
)
async def get_version(
    # Declared (though `plan` loads it) so the OpenAPI path parameters keep URL order:
    # generated clients take them positionally.
    plan_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    plan: ReadablePlan,
    session: AuditedSession,
    principal: CanReadPlans,
) -> PlanVersionDetailOut:
    """The plan exactly as it was at `version`: items, findings, overrides and basis."""
    row = await service.version_or_raise(
        session, organization_id=principal.organization_id, plan_id=plan.id, version=version
    )
    return PlanVersionDetailOut.model_validate(row)


@_plan_route(
    "GET", "/plans/{plan_id}/diff", action="read", summary="What changed between two versions"
)
async def diff(
    session: AuditedSession,
    principal: CanReadPlans,
    plan: ReadablePlan,
    from_version: Annotated[
        int, Query(alias="from", ge=1, le=1_000_000, description="The earlier version.")
    ],
    to_version: Annotated[
        int | None,
        Query(alias="to", ge=1, le=1_000_000, description="The later version (default: current)."),
    ] = None,
) -> PlanDiffOut:
    """Items added, removed and changed (field by field, matched by item id), status change,
    safety findings added and resolved, and overrides added between two versions."""
    organization_id = principal.organization_id
    before = await service.version_or_raise(
        session, organization_id=organization_id, plan_id=plan.id, version=from_version
    )
    after = await service.version_or_raise(
        session,
        organization_id=organization_id,
        plan_id=plan.id,
        version=to_version or plan.version,
    )
    changes = diff_versions(
        {"status": before.status, "document": before.document.model_dump(mode="json")},
        {"status": after.status, "document": after.document.model_dump(mode="json")},
    )
    return PlanDiffOut(
        plan_id=plan.id, from_version=before.version, to_version=after.version, **changes
    )
