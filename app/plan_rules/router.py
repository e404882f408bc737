from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import ValidationError

from app import uploads
from app.audit.context import audit_target, audited
from app.auth.deps import AUTH_RESPONSES, CanReadRules, CanWriteRules
from app.concurrency import activation_etag, require_if_match
from app.deps import ReadSession, SettingsDep, WriteSession
from app.domain.plans.rules import (
    RuleSetDocument,
    RuleSetFormatError,
    format_error,
    parse_rule_set_yaml,
)
from app.idempotency.deps import IDEMPOTENCY_RESPONSES, IdempotencyKey
from app.idempotency.http import idempotent, json_response
from app.idempotency.service import StoredResponse
from app.models.plan import PlanRuleSet
from app.pagination import Cursor, Limit, decode_cursor, encode_cursor, link_next
from app.plan_rules import repository, service
from app.plan_rules.schemas import RuleSetDetailOut, RuleSetOut, RuleSetPage
from app.problems import PROBLEM_RESPONSES, problem_doc

router = APIRouter(
    prefix="/api/v1/plan-rule-sets",
    tags=["plan rule sets"],
    responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES},
)

_EXAMPLE_YAML = """name: clinic-rules
source: Clinic protocol 2027, reviewed by the medical director
description: Adds a stricter magnesium limit in pregnancy
# ... upper_limits, templates, rules and safety sections as in GET /active
"""

_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The rule set as YAML (`application/yaml`, the format shipped in "
        "`app/data/plan_rules/default.yaml`) or the same structure as JSON. Read the active set "
        "(`GET /api/v1/plan-rule-sets/active`) for a complete example to start from.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}, "example": _EXAMPLE_YAML},
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "name": "clinic-rules",
                    "source": "Clinic protocol 2027, reviewed by the medical director",
                },
            },
        },
    }
}


def _etag(rule_set: PlanRuleSet) -> str:
    return activation_etag("rule-set", rule_set.id, rule_set.status, rule_set.activated_at)


async def _document(request: Request) -> RuleSetDocument:
    media_type = uploads.media_type(request)
    raw, text = await uploads.body_text(request)
    try:
        if media_type in ("application/json", ""):
            return RuleSetDocument.model_validate_json(raw)
        if media_type in uploads.YAML_TYPES:
            return parse_rule_set_yaml(text)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise uploads.MalformedJsonError("The request body is not valid JSON.") from exc
        formatted = format_error(exc)
        raise service.RuleSetInvalidError(
            "The rule set failed validation; see 'errors'.",
            errors=[uploads.format_error_entry(error) for error in formatted.errors],
        ) from exc
    except RuleSetFormatError as exc:
        raise service.RuleSetInvalidError(
            exc.message, errors=[uploads.format_error_entry(error) for error in exc.errors]
        ) from exc
    raise uploads.UnsupportedMediaTypeError(
        f"Send application/yaml or application/json, not {media_type!r}."
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Import a plan rule set",
    response_model=RuleSetDetailOut,
    openapi_extra=_IMPORT_BODY,
    responses={
        **IDEMPOTENCY_RESPONSES,
        409: problem_doc(
            "A concurrent import or activation won, or a request with this Idempotency-Key is "
            "still in progress."
        ),
        415: problem_doc("The body is not YAML or JSON."),
    },
    dependencies=[Depends(audited("create", "plan_rule_set"))],
)
async def import_rule_set(
    request: Request,
    session: WriteSession,
    principal: CanWriteRules,
    settings: SettingsDep,
    activate: Annotated[
        bool, Query(description="Make it the set new plans are drafted from right away.")
    ] = False,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Stores a new version of a named plan rule set: upper intake limits, item templates,
    generation rules (declarative conditions over results, ratios, criticals, patient context
    and sleep scores) and safety rules. Refused (**422**, with every problem's path) when the
    structure is wrong, a rule names an unknown analyte, ratio, template or code, a clinical
    number lacks its source, or no rule refers critical results urgently. Versions number
    from 1 per name; a stored set never changes, and plans drafted from an earlier version
    keep it."""
    organization_id = principal.organization_id

    async def produce() -> StoredResponse:
        document = await _document(request)
        rule_set = await service.import_document(
            session, organization_id=organization_id, document=document, activate=activate
        )
        audit_target(request, resource_id=rule_set.id, action="activate" if activate else None)
        detail = RuleSetDetailOut.model_validate(rule_set)
        return json_response(
            detail.model_dump_json().encode(),
            201,
            location=f"/api/v1/plan-rule-sets/{rule_set.id}",
            etag=_etag(rule_set),
        )

    return await idempotent(
        request,
        session,
        principal=principal,
        settings=settings,
        key=idempotency_key,
        produce=produce,
    )


@router.get("", summary="List plan rule sets", response_model=RuleSetPage)
async def list_rule_sets(
    session: ReadSession,
    principal: CanReadRules,
    limit: Limit = 50,
    cursor: Cursor = None,
    *,
    request: Request,
    response: Response,
) -> RuleSetPage:
    """All plan rule sets of the organization, newest first, with status (`draft`, `active`,
    `retired`). Follow `next_cursor` until it is null."""
    sets = await repository.list_sets(
        session,
        organization_id=principal.organization_id,
        limit=limit + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    page = list(sets[:limit])
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(sets) > limit else None
    link_next(request, response, next_cursor)
    return RuleSetPage(
        items=[RuleSetOut.model_validate(s) for s in page], limit=limit, next_cursor=next_cursor
    )


@router.get("/active", summary="The active plan rule set", response_model=RuleSetDetailOut)
async def active_rule_set(
    response: Response, session: ReadSession, principal: CanReadRules
) -> RuleSetDetailOut:
    """The set new treatment plans are drafted from, with its whole document."""
    rule_set = await service.active_or_raise(session, organization_id=principal.organization_id)
    response.headers["ETag"] = _etag(rule_set)
    return RuleSetDetailOut.model_validate(rule_set)


@router.get("/{rule_set_id}", summary="Read a plan rule set", response_model=RuleSetDetailOut)
async def get_rule_set(
    rule_set_id: uuid.UUID, response: Response, session: ReadSession, principal: CanReadRules
) -> RuleSetDetailOut:
    """One rule set with its whole document, and an `ETag` to send as `If-Match` when
    activating it."""
    rule_set = await service.get_or_raise(
        session, organization_id=principal.organization_id, rule_set_id=rule_set_id
    )
    response.headers["ETag"] = _etag(rule_set)
    return RuleSetDetailOut.model_validate(rule_set)


@router.post(
    "/{rule_set_id}/activate",
    summary="Activate a plan rule set",
    response_model=RuleSetOut,
    responses={
        409: problem_doc("Another rule set was activated at the same time."),
        412: problem_doc("The set changed since your If-Match ETag was read."),
        428: problem_doc("If-Match is missing."),
    },
    dependencies=[Depends(audited("activate", "plan_rule_set"))],
)
async def activate_rule_set(
    rule_set_id: uuid.UUID,
    request: Request,
    response: Response,
    session: WriteSession,
    principal: CanWriteRules,
) -> RuleSetOut:
    """Makes this set the one new plans are drafted from; the previously active set is
    retired. Existing plans keep the version they were drafted from; regenerating a plan uses
    the new one and says so.

    Needs `If-Match: <ETag>` from a read of this set: **428** without it, **412** when the set
    changed since (nothing is modified)."""
    organization_id = principal.organization_id
    audit_target(request, resource_id=rule_set_id)
    current = await service.get_or_raise(
        session, organization_id=organization_id, rule_set_id=rule_set_id
    )
    require_if_match(request, _etag(current))
    rule_set = await service.activate(
        session,
        organization_id=organization_id,
        rule_set_id=rule_set_id,
        # Checked again on the locked row: of concurrent activations with one ETag, one wins.
        precondition=lambda locked: require_if_match(request, _etag(locked)),
    )
    response.headers["ETag"] = _etag(rule_set)
    return RuleSetOut.model_validate(rule_set)
