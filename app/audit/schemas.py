from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from app.kit.pagination import Page
from app.kit.schemas_common import OutputModel


class AuditEventOut(OutputModel):
    seq: int = Field(description="Position in the audit trail; higher is later.")
    id: uuid.UUID
    occurred_at: datetime = Field(description="When the access happened (UTC).")
    organization_id: uuid.UUID | None
    principal_id: str | None = Field(
        description="Who: `key:<api key id>` or `oidc:<issuer>|<subject>`."
    )
    principal_kind: str | None
    role: str | None
    action: str = Field(
        description="`read`, `search`, `create`, `update`, `delete`, `reinterpret`, ..."
    )
    resource_type: str = Field(description="What was accessed, e.g. `patient`, `panel`.")
    resource_id: str | None
    patient_id: uuid.UUID | None = Field(description="The patient whose data was accessed.")
    outcome: str = Field(description="`success`, `denied` or `error`.")
    status_code: int | None = Field(description="HTTP status returned to the caller.")
    method: str | None
    path: str | None
    request_id: str | None = Field(description="The request's `X-Request-ID`.")
    client_address: str | None
    hash: str = Field(
        description="HMAC-SHA256 (keyed with a secret the database never holds) linking this "
        "event to the previous one (the audit chain)."
    )


class AuditEventPage(Page[AuditEventOut]):
    pass
