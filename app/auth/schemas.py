from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict, Field

from app.auth import keys
from app.auth.principal import Role
from app.auth.service import ApiKeyStatus, api_key_status
from app.kit.pagination import Page
from app.kit.schemas_common import InputModel, Instant, OutputModel, Text100
from app.models.api_key import ApiKey


class ApiKeyCreate(InputModel):
    """A new API key. Its id, prefix, secret, organization (yours) and author (you) are set by
    the server."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "LIS interface", "role": "integration"},
                {
                    "name": "Clinic front-end",
                    "role": "clinician",
                    "expires_at": "2027-12-31T00:00:00Z",
                },
            ]
        }
    )

    name: Text100 = Field(
        description="What the key is for, shown in listings.", examples=["LIS interface"]
    )
    display_name: Text100 | None = Field(
        default=None,
        description="The name people read where the key acts as a person (a plan's author or "
        "approver), e.g. the clinician's name for a personal key. Defaults to `name`.",
        examples=["Dr Anna Keller"],
    )
    role: Role = Field(
        description="`integration` posts patients and panels; `clinician` reads them and writes "
        "plans; `admin` manages reference ranges, keys and reads the audit trail."
    )
    expires_at: Instant | None = Field(
        default=None,
        description="When the key stops working (with a UTC offset, in the future); omit it "
        "for a key that works until revoked.",
        examples=["2027-12-31T00:00:00Z"],
    )


# The columns ApiKeyOut shows unchanged (never the secret's hash). Every field of the model is
# required, so a misspelt name fails validation, not silently.
_SHOWN_AS_STORED = (
    "id",
    "name",
    "created_at",
    "created_by",
    "expires_at",
    "revoked_at",
    "revoked_by",
    "last_used_at",
)


class ApiKeyOut(OutputModel):
    id: uuid.UUID
    name: str
    display_name: str = Field(description="The name plans show as author or approver.")
    role: Role
    prefix: str = Field(
        description="The key's public first characters, to recognise it; never the secret.",
        examples=["mlk_k3v7q2mzt4ab"],
    )
    status: ApiKeyStatus = Field(description="`active`, `revoked` or `expired`.")
    created_at: datetime
    created_by: str | None = Field(
        description="Who issued the key: the admin's principal (`key:<id>`, "
        "`oidc:<issuer>|<subject>`) or `cli` for the operator's command line."
    )
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None = Field(description="Who revoked the key (a principal, or `cli`).")
    last_used_at: datetime | None = Field(
        description="Last successful use; updated at most about once a minute."
    )

    @classmethod
    def from_key(cls, api_key: ApiKey, *, now: datetime) -> ApiKeyOut:
        return cls(
            **{name: getattr(api_key, name) for name in _SHOWN_AS_STORED},
            display_name=api_key.display_name or api_key.name,
            role=Role(api_key.role),
            prefix=keys.display_prefix(api_key.prefix),
            status=api_key_status(api_key, now=now),
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="The full API key. Shown in this response only: store it now, it cannot be "
        "retrieved again.",
        examples=["mlk_k3v7q2mzt4ab_Zb0cS7r1m0Qp4oN6JzXy8lH2dVwE3uTf9gK5aR1sCqI"],
    )

    @classmethod
    def from_new_key(cls, api_key: ApiKey, full_key: str, *, now: datetime) -> ApiKeyCreated:
        return cls(**ApiKeyOut.from_key(api_key, now=now).model_dump(), key=full_key)


class ApiKeyPage(Page[ApiKeyOut]):
    pass
