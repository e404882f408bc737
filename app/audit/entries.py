"""The one way an audit row is put together: who from the principal, where from the request.

The request's own rows (app.audit.context), an OIDC login, an MLLP frame and a FHIR Bundle's
records all describe the same caller and request the same way, so a new column is filled in
one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, Unpack

from app.audit.service import AuditEntry, AuditOutcome
from app.auth.principal import Principal


class EntryFacts(TypedDict):
    """What was done, and how it ended: put into the entry as given."""

    action: str
    resource_type: str
    outcome: AuditOutcome
    resource_id: NotRequired[str | None]
    patient_id: NotRequired[uuid.UUID | None]
    status_code: NotRequired[int | None]


def build_entry(
    principal: Principal | None,
    *,
    scope: Mapping[str, Any] | None = None,
    method: str | None = None,
    path: str | None = None,
    client_address: str | None = None,
    principal_kind: str | None = None,
    **facts: Unpack[EntryFacts],
) -> AuditEntry:
    """An entry for `principal` (None: the caller is not known, e.g. a refused credential).

    With an ASGI `scope`, the method, path, request id and client address come from it;
    `method` / `path` / `client_address` are for callers without one (MLLP), and
    `principal_kind` names the kind of caller when there is no principal."""
    scope = scope or {}
    state = scope.get("state")
    client = scope.get("client")
    return AuditEntry(
        organization_id=principal.organization_id if principal else None,
        principal_id=principal.id if principal else None,
        principal_kind=principal.kind if principal else principal_kind,
        role=str(principal.role) if principal else None,
        method=method or scope.get("method"),
        path=path or scope.get("path"),
        request_id=state.get("request_id") if isinstance(state, dict) else None,
        client_address=client_address or (client[0] if client else None),
        **facts,
    )
