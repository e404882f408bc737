"""The one way an audit row is put together: who from the principal, where from the request.

The request's own rows (app.audit.context), an OIDC login, an MLLP frame and a FHIR Bundle's
records all describe the same caller and request the same way, so a new column is filled in
one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from app.audit.service import AuditEntry, AuditOutcome
from app.auth.principal import Principal


def build_entry(
    principal: Principal | None,
    *,
    action: str,
    resource_type: str,
    outcome: AuditOutcome,
    scope: Mapping[str, Any] | None = None,
    resource_id: str | None = None,
    patient_id: uuid.UUID | None = None,
    status_code: int | None = None,
    method: str | None = None,
    path: str | None = None,
    client_address: str | None = None,
    principal_kind: str | None = None,
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
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        outcome=outcome,
        status_code=status_code,
        method=method or scope.get("method"),
        path=path or scope.get("path"),
        request_id=state.get("request_id") if isinstance(state, dict) else None,
        client_address=client_address or (client[0] if client else None),
    )
