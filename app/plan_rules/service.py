"""Plan rule sets: import, validate, version, activate. A loaded set's `document` is the typed
`RuleSetDocument` the plan engine reads (app/models/plan_rule_set.py)."""

from __future__ import annotations

import uuid
from functools import cache
from importlib import resources

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError, UnprocessableError
from app.domain.catalog import default_catalog
from app.domain.plans.rules import RuleSetDocument, parse_rule_set_yaml
from app.kit.versioned_sets.service import SetLifecycle
from app.models.plan_rule_set import PlanRuleSet, with_defaults_written
from app.plan_rules import repository

RATIO_CODES = frozenset({"ca_mg_molar", "zn_cu_molar"})
RULE_SET_LIFECYCLE = SetLifecycle(repository.RULE_SETS, noun="rule set", title="plan rule set")


class RuleSetInvalidError(
    UnprocessableError, slug="invalid-rule-set", title="The plan rule set is not valid"
): ...


class NoActiveRuleSetError(
    AppError, status=409, slug="no-active-rule-set", title="No plan rule set is active"
): ...


@cache
def default_document() -> RuleSetDocument:
    text = resources.files("app.data").joinpath("plan_rules/default.yaml").read_text("utf-8")
    return parse_rule_set_yaml(text)


def check_document(document: RuleSetDocument) -> None:
    """Refuse a set that names unknown analytes, ratios, templates or codes."""
    analytes = {analyte.code for analyte in default_catalog().all()}
    problems = document.problems(analytes=analytes, ratios=set(RATIO_CODES))
    if problems:
        raise RuleSetInvalidError(
            f"{len(problems)} problem(s) in the rule set; see 'errors'.", errors=problems
        )


async def get_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, rule_set_id: uuid.UUID
) -> PlanRuleSet:
    return await RULE_SET_LIFECYCLE.get_or_raise(
        session, organization_id=organization_id, set_id=rule_set_id
    )


async def active_or_raise(session: AsyncSession, *, organization_id: uuid.UUID) -> PlanRuleSet:
    rule_set = await repository.RULE_SETS.get_active(session, organization_id=organization_id)
    if rule_set is None:
        raise NoActiveRuleSetError(
            "The organization has no active plan rule set; an admin must import and activate one."
        )
    return rule_set


async def import_document(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    document: RuleSetDocument,
    activate: bool,
) -> PlanRuleSet:
    check_document(document)
    rule_set = await RULE_SET_LIFECYCLE.draft(
        session,
        organization_id=organization_id,
        header=document,
        document=with_defaults_written(document),
    )
    return await RULE_SET_LIFECYCLE.store(session, rule_set, activate=activate)


async def ensure_default(session: AsyncSession, *, organization_id: uuid.UUID) -> bool:
    """Load and activate the shipped rule set when the organization has none yet."""
    return await RULE_SET_LIFECYCLE.ensure_default(
        session, organization_id, import_document, default_document
    )
