"""The filters of the audit-trail search, as one dependency (`**filters` for the repository)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, TypedDict

from fastapi import Depends, Query

from app.audit.service import AuditOutcome
from app.kit.schemas_common import Instant


class AuditEventFilters(TypedDict):
    """What `GET /api/v1/audit-events` narrows the trail by; every filter may be absent."""

    patient_id: uuid.UUID | None
    principal_id: str | None
    action: str | None
    outcome: AuditOutcome | None
    occurred_from: datetime | None
    occurred_to: datetime | None


def _filters(
    patient_id: Annotated[
        uuid.UUID | None, Query(description="Only accesses to this patient's data.")
    ] = None,
    principal_id: Annotated[
        str | None, Query(max_length=300, description="Only this caller (`key:...`, `oidc:...`).")
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=20,
            pattern=r"^[a-z_-]+$",
            description="Only this action: `read`, `search`, `create`, `update`, `delete`, "
            "`reinterpret`, ...",
        ),
    ] = None,
    outcome: Annotated[
        AuditOutcome | None, Query(description="Only `success`, `denied` or `error`.")
    ] = None,
    occurred_from: Annotated[
        Instant | None,
        Query(description="Only events at or after this time (with UTC offset)."),
    ] = None,
    occurred_to: Annotated[
        Instant | None, Query(description="Only events before this time.")
    ] = None,
) -> AuditEventFilters:
    return {
        "patient_id": patient_id,
        "principal_id": principal_id,
        "action": action,
        "outcome": outcome,
        "occurred_from": occurred_from,
        "occurred_to": occurred_to,
    }


AuditFilters = Annotated[AuditEventFilters, Depends(_filters)]
