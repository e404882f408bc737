"""app.audit.entries.build_entry: who from the principal, where from the request's scope."""

from __future__ import annotations

import uuid
from typing import Any

from app.audit.entries import build_entry
from app.auth.principal import Principal, Role

ORGANIZATION = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def _principal() -> Principal:
    return Principal(
        id="key:abc",
        organization_id=ORGANIZATION,
        role=Role.CLINICIAN,
        kind="api_key",
        scopes=frozenset(),
        display="test key",
    )


def _scope() -> dict[str, Any]:
    return {
        "method": "GET",
        "path": "/api/v1/patients/1",
        "client": ("10.0.0.7", 5123),
        "state": {"request_id": "req-1"},
    }


def test_the_principal_and_the_request_fill_the_entry() -> None:
    entry = build_entry(
        _principal(), action="read", resource_type="patient", outcome="success", scope=_scope()
    )

    assert (entry.organization_id, entry.principal_id, entry.principal_kind, entry.role) == (
        ORGANIZATION,
        "key:abc",
        "api_key",
        "clinician",
    )
    assert (entry.method, entry.path, entry.request_id, entry.client_address) == (
        "GET",
        "/api/v1/patients/1",
        "req-1",
        "10.0.0.7",
    )


def test_an_unknown_caller_leaves_who_empty_but_may_name_its_kind() -> None:
    entry = build_entry(
        None,
        action="create",
        resource_type="panel",
        outcome="denied",
        method="MLLP",
        path="mllp",
        client_address="10.0.0.8",
        principal_kind="api_key",
    )

    assert (entry.organization_id, entry.principal_id, entry.role) == (None, None, None)
    assert entry.principal_kind == "api_key"
    assert (entry.method, entry.path, entry.request_id, entry.client_address) == (
        "MLLP",
        "mllp",
        None,
        "10.0.0.8",
    )
