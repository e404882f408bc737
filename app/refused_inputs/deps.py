"""The refused input a route acts on: named as the audit row's resource before any lookup (so a
refused read of another organization's input is audited with the id that was asked for), with
who acts and the request's session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, Request, Security
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.context import audit_target
from app.auth.deps import require
from app.auth.principal import Principal, Scope
from app.core.deps import AuditedSession

CanManageRefused = Annotated[Principal, Security(require(Scope.REFUSED_INPUTS))]


class RefusedInputKey(TypedDict):
    organization_id: uuid.UUID
    refused_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class RefusedInputTarget:
    refused_id: uuid.UUID
    request: Request
    session: AsyncSession
    principal: Principal

    @property
    def key(self) -> RefusedInputKey:
        """What the service looks the input up by (`**target.key`)."""
        return {"organization_id": self.principal.organization_id, "refused_id": self.refused_id}


async def _target(
    refused_id: uuid.UUID, request: Request, session: AuditedSession, principal: CanManageRefused
) -> RefusedInputTarget:
    audit_target(request, resource_id=refused_id)
    return RefusedInputTarget(refused_id, request, session, principal)


RefusedTarget = Annotated[RefusedInputTarget, Depends(_target)]
