"""Per-request audit bookkeeping: audit rows for every request to a PHI route (and to every
route that changes who may see what: keys, range and rule sets, code maps, audit reads).

One row per request, or one per patient when it touched several (a search's results, an HL7
batch), all with the request's id.

A PHI route declares ``dependencies=[audited("read", "panel")]``. The route (or its service)
names the record it touched with :func:`audit_target`. Then:

* on success the row is appended by the request's own write session just before it commits,
  so the change and its audit row are one transaction (see ``app.core.deps``);
* on any refusal or failure (401, 403, 404, 409, 422, 500, ...) the transaction has rolled
  back, so :func:`record_unwritten` writes a ``denied`` / ``error`` row in a transaction of
  its own before the response leaves (called by ``app.core.middleware``).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service
from app.audit.entries import build_entry
from app.audit.service import AuditEntry, AuditOutcome
from app.auth.principal import Principal
from app.core.db import transaction

log = logging.getLogger("app.audit")

STATE_KEY = "audit"


@dataclass
class AuditDraft:
    action: str
    resource_type: str
    resource_id: str | None = None
    patient_id: uuid.UUID | None = None
    status_code: int | None = None
    # A request answered 200 that still refused what it was asked (an HL7 ACK AE naming a
    # patient it would not file under): recorded as "error" instead of "success".
    outcome: AuditOutcome | None = None
    # Further patients the request touched (a batch, a search's results): one row each, after
    # the main one, with the request's outcome unless one is given.
    more: list[tuple[uuid.UUID | None, AuditOutcome | None, str | None]] = field(
        default_factory=list
    )
    written: bool = False


def audited(action: str, resource_type: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency marking the route as an access to patient data."""

    async def dependency(request: Request) -> None:
        request.state.audit = AuditDraft(action=action, resource_type=resource_type)

    dependency.__name__ = f"audit_{action}_{resource_type}"
    dependency.audit_spec = (action, resource_type)  # type: ignore[attr-defined]
    return dependency


def start_draft_for_route(request: Request) -> None:
    """For a request refused before its route's dependencies ran (a body that is not JSON is
    rejected while FastAPI reads it, before `audited` and authentication): start the PHI
    route's draft, so the middleware still writes its one (`error`) row. No principal is known:
    the credentials were never checked."""
    if draft_of(request.state) is not None:
        return
    route = request.scope.get("route")
    for depends in getattr(route, "dependencies", None) or ():
        spec = getattr(depends.dependency, "audit_spec", None)
        if spec is not None:
            action, resource_type = spec
            request.state.audit = AuditDraft(action=action, resource_type=resource_type)
            return


def draft_of(state: Any) -> AuditDraft | None:
    draft = getattr(state, STATE_KEY, None) if not isinstance(state, dict) else state.get(STATE_KEY)
    return draft if isinstance(draft, AuditDraft) else None


def audit_target(
    request: Request,
    *,
    resource_id: uuid.UUID | str | None = None,
    patient_id: uuid.UUID | None = None,
    action: str | None = None,
    status_code: int | None = None,
    outcome: AuditOutcome | None = None,
    patient_ids: Iterable[uuid.UUID] = (),
) -> None:
    """Name the record this request touched (and, if different, the action, status and
    outcome). `patient_ids`: every patient the request disclosed or changed (a search's
    results, a batch's patients); each gets its own row, the first also `patient_id`'s."""
    draft = draft_of(request.state)
    if draft is None:
        return
    for touched in patient_ids:
        if patient_id is None and draft.patient_id is None:
            patient_id = touched
        else:
            audit_also(request, patient_id=touched)
    # Only what this call names overrides the draft: a route that names the resource, then
    # the patient once it has loaded the record, keeps both.
    given = {
        "resource_id": None if resource_id is None else str(resource_id),
        "patient_id": patient_id,
        "action": action,
        "status_code": status_code,
        "outcome": outcome,
    }
    for attribute, value in given.items():
        if value is not None:
            setattr(draft, attribute, value)


def audit_also(
    request: Request,
    *,
    patient_id: uuid.UUID | None,
    outcome: AuditOutcome | None = None,
    resource_id: uuid.UUID | str | None = None,
) -> None:
    """One more row for this request: another patient it touched, or (with `outcome`) a part
    of it that fared differently (a refused message of a batch)."""
    draft = draft_of(request.state)
    if draft is not None:
        draft.more.append((patient_id, outcome, str(resource_id) if resource_id else None))


def _entries(
    state: Any,
    scope: MutableMapping[str, Any],
    draft: AuditDraft,
    outcome: AuditOutcome,
    status: int,
) -> list[AuditEntry]:
    """The main row, then one per further patient (each patient once per outcome)."""
    main = _entry(state, scope, draft, outcome, status)
    entries = [main]
    seen = {(main.patient_id, outcome)}
    for patient_id, own_outcome, resource_id in draft.more:
        # A refused or failed request (nothing committed) is the outcome of every part of it.
        row_outcome = own_outcome if own_outcome is not None and status < 400 else outcome
        if (patient_id, row_outcome) in seen:
            continue
        seen.add((patient_id, row_outcome))
        entries.append(
            dataclasses.replace(
                main, patient_id=patient_id, outcome=row_outcome, resource_id=resource_id
            )
        )
    return entries


def _entry(
    state: Any,
    scope: MutableMapping[str, Any],
    draft: AuditDraft,
    outcome: AuditOutcome,
    status: int,
) -> AuditEntry:
    principal = state.get("principal") if isinstance(state, dict) else None
    return build_entry(
        principal if isinstance(principal, Principal) else None,
        action=draft.action,
        resource_type=draft.resource_type,
        resource_id=draft.resource_id,
        patient_id=draft.patient_id,
        outcome=outcome,
        status_code=status,
        scope=scope,  # its "state" is `state`
    )


async def append_success(session: AsyncSession, request: Request, default_status: int) -> None:
    """In the request's transaction, as its last statement: the row for a successful access."""
    draft = draft_of(request.state)
    if draft is None or draft.written:
        return
    status = draft.status_code or default_status
    outcome = draft.outcome or "success"
    await service.append(
        session, _entries(request.scope.get("state", {}), request.scope, draft, outcome, status)
    )
    draft.written = True


async def record_unwritten(scope: MutableMapping[str, Any], status: int) -> None:
    """Before a response leaves: write the row a PHI request still lacks, in its own
    transaction (the request's own transaction rolled back, or never wrote one)."""
    state = scope.get("state") or {}
    draft = draft_of(state)
    if draft is None or draft.written:
        return
    if status < 400:
        log.warning("audit row written outside the request transaction for %s", scope.get("path"))
    outcome: AuditOutcome = (
        "success" if status < 400 else ("denied" if status in (401, 403, 404) else "error")
    )
    entries = _entries(state, scope, draft, outcome, status)
    async with transaction(scope["app"].state.sessionmaker) as session:
        await service.append(session, entries)
    draft.written = True
