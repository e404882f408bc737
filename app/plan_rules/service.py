"""Plan rule sets: import, validate, version, activate; parsed documents for the plan engine."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from importlib import resources

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.concurrency import lock_for_update
from app.db import utcnow
from app.domain.catalog import default_catalog
from app.domain.plans.rules import RuleSetDocument, parse_rule_set_yaml
from app.errors import AppError, ConflictError, NotFoundError, UnprocessableError
from app.models.plan import PlanRuleSet
from app.plan_rules import repository

RATIO_CODES = frozenset({"ca_mg_molar", "zn_cu_molar"})
_CACHE_SIZE = 32
_documents: OrderedDict[uuid.UUID, RuleSetDocument] = OrderedDict()


class RuleSetInvalidError(UnprocessableError):
    type_slug = "invalid-rule-set"
    title = "The plan rule set is not valid"


class NoActiveRuleSetError(AppError):
    status = 409
    type_slug = "no-active-rule-set"
    title = "No plan rule set is active"


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


def document_of(rule_set: PlanRuleSet) -> RuleSetDocument:
    """The parsed document of a stored set (immutable, so cached by id)."""
    cached = _documents.get(rule_set.id)
    if cached is not None:
        _documents.move_to_end(rule_set.id)
        return cached
    document = RuleSetDocument.model_validate(rule_set.document)
    _documents[rule_set.id] = document
    while len(_documents) > _CACHE_SIZE:
        _documents.popitem(last=False)
    return document


async def get_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, rule_set_id: uuid.UUID
) -> PlanRuleSet:
    rule_set = await repository.get(
        session, organization_id=organization_id, rule_set_id=rule_set_id
    )
    if rule_set is None:
        raise NotFoundError("No such plan rule set.")
    return rule_set


async def active_or_raise(session: AsyncSession, *, organization_id: uuid.UUID) -> PlanRuleSet:
    rule_set = await repository.get_active(session, organization_id=organization_id)
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
    version = await repository.next_version(
        session, organization_id=organization_id, name=document.name
    )
    rule_set = PlanRuleSet(
        id=uuid.uuid4(),
        organization_id=organization_id,
        name=document.name,
        version=version,
        status="draft",
        description=document.description,
        source=document.source,
        document=document.model_dump(mode="json", by_alias=True),
        created_at=utcnow(),
    )
    try:
        async with session.begin_nested():
            await repository.add(session, rule_set)
            if activate:
                await _activate(session, organization_id=organization_id, rule_set=rule_set)
    except IntegrityError as exc:
        raise ConflictError(
            "Another import of this rule set finished at the same time; retry."
        ) from exc
    return rule_set


async def activate(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    rule_set_id: uuid.UUID,
    precondition: Callable[[PlanRuleSet], None] | None = None,
) -> PlanRuleSet:
    """Activate the set. ``precondition`` (the caller's If-Match check) runs on the row locked
    for this transaction, so it sees every activation committed before it."""
    rule_set = await get_or_raise(session, organization_id=organization_id, rule_set_id=rule_set_id)
    # Concurrent activations with one If-Match: exactly one wins, the others get 412.
    await lock_for_update(session, rule_set)
    if precondition is not None:
        precondition(rule_set)
    if rule_set.status != "active":
        try:
            async with session.begin_nested():
                await _activate(session, organization_id=organization_id, rule_set=rule_set)
        except IntegrityError as exc:
            raise ConflictError("Another rule set was activated at the same time; retry.") from exc
    return rule_set


async def _activate(
    session: AsyncSession, *, organization_id: uuid.UUID, rule_set: PlanRuleSet
) -> None:
    now = utcnow()
    await repository.activate(
        session, organization_id=organization_id, rule_set_id=rule_set.id, now=now
    )
    rule_set.status = "active"
    rule_set.activated_at = now


async def ensure_default(session: AsyncSession, *, organization_id: uuid.UUID) -> bool:
    """Load and activate the shipped rule set when the organization has none yet."""
    if await repository.count_sets(session, organization_id=organization_id):
        return False
    await import_document(
        session, organization_id=organization_id, document=default_document(), activate=True
    )
    return True
