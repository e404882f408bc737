from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import CanReadRules, CanWriteRules
from app.core.deps import ReadSession
from app.domain.plans.rules import (
    RuleSetDocument,
    RuleSetFormatError,
    format_error,
    parse_rule_set_yaml,
)
from app.kit import uploads
from app.kit.versioned_sets import http as sets_http
from app.kit.versioned_sets.upload import UploadReader, json_and_yaml
from app.models.plan_rule_set import PlanRuleSet
from app.plan_rules import service
from app.plan_rules.repository import RULE_SETS
from app.plan_rules.schemas import RuleSetDetailOut, RuleSetOut, RuleSetPage

ROUTES = sets_http.SetRoutes(
    "/api/v1/plan-rule-sets",
    "plan rule sets",
    kind="rule-set",
    resource_type="plan_rule_set",
    noun="rule set",
)
router = ROUTES.router

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


_UPLOAD = UploadReader[RuleSetDocument](
    noun="rule set",
    invalid=service.RuleSetInvalidError,
    # The rule set's own paths (rules[3].when) rather than pydantic's union-tagged ones.
    validation_entries=lambda exc: [
        uploads.format_error_entry(error) for error in format_error(exc).errors
    ],
    parsers=json_and_yaml(RuleSetDocument, parse_rule_set_yaml),
    accepted="application/yaml or application/json",
    format_errors=(RuleSetFormatError,),
)


@ROUTES.import_route(
    _IMPORT_BODY, summary="Import a plan rule set", response_model=RuleSetDetailOut
)
async def import_rule_set(
    principal: CanWriteRules,
    importing: sets_http.SetImport,
    activate: Annotated[
        bool, Query(description="Make it the set new plans are drafted from right away.")
    ] = False,
) -> Response:
    """Stores a new version of a named plan rule set: upper intake limits, item templates,
    generation rules (declarative conditions over results, ratios, criticals, patient context
    and sleep scores) and safety rules. Refused (**422**, with every problem's path) when the
    structure is wrong, a rule names an unknown analyte, ratio, template or code, a clinical
    number lacks its source, or no rule refers critical results urgently. Versions number
    from 1 per name; a stored set never changes, and plans drafted from an earlier version
    keep it."""
    return await importing.created(
        ROUTES, principal, _UPLOAD.read, service.import_document, _detail, activate=activate
    )


async def _detail(_: AsyncSession, rule_set: PlanRuleSet) -> RuleSetDetailOut:
    return RuleSetDetailOut.model_validate(rule_set)


@router.get("", summary="List plan rule sets")
async def list_rule_sets(
    session: ReadSession, principal: CanReadRules, listing: sets_http.SetList
) -> RuleSetPage:
    """All plan rule sets of the organization, newest first, with status (`draft`, `active`,
    `retired`). Follow `next_cursor` until it is null."""
    return await listing.sets_page(session, RULE_SETS, principal, RuleSetPage)


@router.get("/active", summary="The active plan rule set")
async def active_rule_set(
    response: Response, session: ReadSession, principal: CanReadRules
) -> RuleSetDetailOut:
    """The set new treatment plans are drafted from, with its whole document."""
    rule_set = await service.active_or_raise(session, organization_id=principal.organization_id)
    response.headers["ETag"] = ROUTES.etag(rule_set)
    return RuleSetDetailOut.model_validate(rule_set)


@router.get("/{rule_set_id}", summary="Read a plan rule set")
async def get_rule_set(
    rule_set_id: uuid.UUID, response: Response, session: ReadSession, principal: CanReadRules
) -> RuleSetDetailOut:
    """One rule set with its whole document, and an `ETag` to send as `If-Match` when
    activating it."""
    rule_set = await service.get_or_raise(
        session, organization_id=principal.organization_id, rule_set_id=rule_set_id
    )
    response.headers["ETag"] = ROUTES.etag(rule_set)
    return RuleSetDetailOut.model_validate(rule_set)


@ROUTES.activate_route(
    "/{rule_set_id}/activate", summary="Activate a plan rule set", response_model=RuleSetOut
)
async def activate_rule_set(
    rule_set_id: uuid.UUID, principal: CanWriteRules, activation: sets_http.SetActivation
) -> RuleSetOut:
    """Makes this set the one new plans are drafted from; the previously active set is
    retired. Existing plans keep the version they were drafted from; regenerating a plan uses
    the new one and says so.

    Needs `If-Match: <ETag>` from a read of this set: **428** without it, **412** when the set
    changed since (nothing is modified)."""
    rule_set = await activation.run(
        service.RULE_SET_LIFECYCLE, principal, rule_set_id, etag=ROUTES.etag
    )
    return RuleSetOut.model_validate(rule_set)
