"""Per-request audit bookkeeping: exactly one audit row for every request to a PHI route.

A PHI route declares ``dependencies=[audited("read", "panel")]``. The route (or its service)
names the record it touched with :func:`audit_target`. Then:

* on success the row is appended by the request's own write session just before it commits,
  so the change and its audit row are one transaction (see ``app.deps``);
* on any refusal or failure (401, 403, 404, 409, 422, 500, ...) the transaction has rolled
  back, so :func:`record_unwritten` writes a ``denied`` / ``error`` row in a transaction of
  its own before the response leaves (called by ``app.middleware``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service
from app.audit.service import AuditEntry, AuditOutcome
from app.db import transaction

log = logging.getLogger("app.audit")

STATE_KEY = "audit"


@dataclass
class AuditDraft:
    action: str
    resource_type: str
    resource_id: str | None = None
    patient_id: uuid.UUID | None = None
    status_code: int | None = None
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
) -> None:
    """Name the record this request touched (and, if different, the action and status)."""
    draft = draft_of(request.state)
    if draft is None:
        return
    if resource_id is not None:
        draft.resource_id = str(resource_id)
    if patient_id is not None:
        draft.patient_id = patient_id
    if action is not None:
        draft.action = action
    if status_code is not None:
        draft.status_code = status_code


def _entry(
    state: Any,
    scope: MutableMapping[str, Any],
    draft: AuditDraft,
    outcome: AuditOutcome,
    status: int,
) -> AuditEntry:
    principal = state.get("principal") if isinstance(state, dict) else None
    client = scope.get("client")
    return AuditEntry(
        organization_id=getattr(principal, "organization_id", None),
        principal_id=getattr(principal, "id", None),
        principal_kind=getattr(principal, "kind", None),
        role=str(principal.role) if principal is not None else None,
        action=draft.action,
        resource_type=draft.resource_type,
        resource_id=draft.resource_id,
        patient_id=draft.patient_id,
        outcome=outcome,
        status_code=status,
        method=scope.get("method"),
        path=scope.get("path"),
        request_id=state.get("request_id") if isinstance(state, dict) else None,
        client_address=client[0] if client else None,
    )


async def append_success(session: AsyncSession, request: Request, default_status: int) -> None:
    """In the request's transaction, as its last statement: the row for a successful access."""
    draft = draft_of(request.state)
    if draft is None or draft.written:
        return
    status = draft.status_code or default_status
    await service.append(
        session, [_entry(request.scope.get("state", {}), request.scope, draft, "success", status)]
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
    entry = _entry(state, scope, draft, outcome, status)
    async with transaction(scope["app"].state.sessionmaker) as session:
        await service.append(session, [entry])
    draft.written = True
