"""Who is calling: a principal with one organization, one role and the scopes that role grants."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Role(StrEnum):
    INTEGRATION = "integration"
    CLINICIAN = "clinician"
    ADMIN = "admin"


class Scope(StrEnum):
    PATIENTS_READ = "patients:read"
    PATIENTS_WRITE = "patients:write"
    PANELS_READ = "panels:read"
    PANELS_WRITE = "panels:write"
    PANELS_REINTERPRET = "panels:reinterpret"
    PLANS_READ = "plans:read"
    PLANS_WRITE = "plans:write"
    RANGES_READ = "ranges:read"
    RANGES_WRITE = "ranges:write"
    RULES_READ = "rules:read"
    RULES_WRITE = "rules:write"
    KEYS_ADMIN = "keys:admin"
    AUDIT_READ = "audit:read"
    # Refused inputs (raw payloads: PHI): list, read, re-process, discard.
    REFUSED_INPUTS = "refused-inputs:manage"


# What each role may do. A route names the scopes it needs, never a role, so a role can change
# here without touching routes.
#   integration: a lab interface or EHR connector. It posts patients and panels and reads back
#                what it needs to reconcile (and the ranges it was interpreted against).
#   clinician:   a clinician front-end. It reads patients, results and trends, re-interprets a
#                panel against the current ranges, and writes treatment plans.
#   admin:       configures the organization (reference ranges, plan rule sets, API keys) and
#                reads the audit trail. It deliberately reads no patient data: managing keys
#                does not need PHI.
#   refused inputs (raw payloads someone sent and we refused) are PHI, but fixing the code map
#   or patient they need is an admin's or the interface's job: both roles, never clinicians.
ROLE_SCOPES: Mapping[Role, frozenset[str]] = {
    Role.INTEGRATION: frozenset(
        {
            Scope.PATIENTS_READ,
            Scope.PATIENTS_WRITE,
            Scope.PANELS_READ,
            Scope.PANELS_WRITE,
            Scope.RANGES_READ,
            Scope.REFUSED_INPUTS,
        }
    ),
    Role.CLINICIAN: frozenset(
        {
            Scope.PATIENTS_READ,
            Scope.PANELS_READ,
            Scope.PANELS_REINTERPRET,
            Scope.PLANS_READ,
            Scope.PLANS_WRITE,
            Scope.RANGES_READ,
            Scope.RULES_READ,
        }
    ),
    Role.ADMIN: frozenset(
        {
            Scope.RANGES_READ,
            Scope.RANGES_WRITE,
            Scope.RULES_READ,
            Scope.RULES_WRITE,
            Scope.KEYS_ADMIN,
            Scope.AUDIT_READ,
            Scope.REFUSED_INPUTS,
        }
    ),
}

ALL_SCOPES: frozenset[str] = frozenset(Scope)

PrincipalKind = Literal["api_key", "oidc"]


def scopes_for(role: Role) -> frozenset[str]:
    return ROLE_SCOPES[role]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `id` is stable and safe to log and audit: ``key:<api key uuid>`` or
    ``oidc:<issuer>|<subject>``. `display` is a human label (key name or user name) for the
    audit trail and admin screens, never a secret.
    """

    id: str
    organization_id: uuid.UUID
    role: Role
    kind: PrincipalKind
    scopes: frozenset[str]
    display: str
    # The person's or key's name as people read it (an API key's display name, the OIDC
    # display-name claim); plans record it as author and approver.
    display_name: str | None = None

    @property
    def label(self) -> str:
        """The name to show people: the display name, else ``display``."""
        return self.display_name or self.display

    def has_scopes(self, *scopes: str) -> bool:
        return all(scope in self.scopes for scope in scopes)

    def missing_scopes(self, *scopes: str) -> list[str]:
        return [scope for scope in scopes if scope not in self.scopes]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a credential was refused: for the logs only, never the response body. Never holds
    any part of the credential or of a token's claims."""

    reason: str


def api_key_principal_id(key_id: uuid.UUID) -> str:
    return f"key:{key_id}"


def oidc_principal_id(issuer: str, subject: str) -> str:
    return f"oidc:{issuer}|{subject}"
