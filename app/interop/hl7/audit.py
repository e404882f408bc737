"""Audit rows of an HL7 v2 request (HTTP or MLLP): one per patient it touched, with the real
outcome of each message: a stored panel is a `success` (`create`, or `read` when it was already
stored unchanged); a message refused with AE / AR stored nothing and is an `error`, against
the patient it named when one is known."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from app.audit.context import audit_also, audit_target
from app.audit.entries import build_entry
from app.audit.service import AuditEntry, AuditOutcome
from app.auth.principal import Principal
from app.interop.hl7.service import MessageOutcome


@dataclass(frozen=True, slots=True)
class Part:
    patient_id: uuid.UUID | None
    outcome: AuditOutcome
    resource_id: uuid.UUID | None


def parts(outcomes: Sequence[MessageOutcome]) -> tuple[str, list[Part]]:
    """The request's action and its rows: each patient once per outcome, in message order."""
    stored = [panel for outcome in outcomes for panel in outcome.panels]
    action = "read" if stored and all(p.change == "unchanged" for p in stored) else "create"
    rows: list[Part] = []
    seen: set[tuple[uuid.UUID | None, AuditOutcome]] = set()
    for outcome in outcomes:
        found: list[Part] = [Part(p.patient_id, "success", p.panel_id) for p in outcome.panels]
        if not outcome.panels and outcome.ack_code != "AA":
            found = [Part(outcome.refused_patient_id, "error", None)]
        for part in found:
            if (part.patient_id, part.outcome) not in seen:
                seen.add((part.patient_id, part.outcome))
                rows.append(part)
    return action, rows


def audit_http(request: Request, outcomes: Sequence[MessageOutcome]) -> None:
    """Name every row of the HTTP request (answered 200 whatever each message's fate)."""
    action, rows = parts(outcomes)
    if not rows:
        return  # e.g. a re-sent control id acknowledged again: one row, nothing touched
    first, *rest = rows
    audit_target(
        request,
        resource_id=first.resource_id,
        patient_id=first.patient_id,
        action=action,
        outcome=first.outcome,
    )
    for part in rest:
        audit_also(
            request, patient_id=part.patient_id, outcome=part.outcome, resource_id=part.resource_id
        )


def template(
    principal: Principal,
    *,
    scope: Mapping[str, Any] | None = None,
    method: str | None = None,
    path: str | None = None,
    client_address: str | None = None,
) -> AuditEntry:
    """The row of an HL7 request (an HTTP request's ASGI ``scope``, or an MLLP frame's method,
    path and client address) before its messages' outcomes fill it in (``entries``)."""
    return build_entry(
        principal,
        action="create",
        resource_type="panel",
        outcome="success",
        status_code=200,
        scope=scope,
        method=method,
        path=path,
        client_address=client_address,
    )


def entries(template: AuditEntry, outcomes: Sequence[MessageOutcome]) -> list[AuditEntry]:
    """The rows of one MLLP frame, from a template naming who, where and how."""
    action, rows = parts(outcomes)
    if not rows:
        return [template]
    return [
        dataclasses.replace(
            template,
            action=action,
            patient_id=part.patient_id,
            outcome=part.outcome,
            resource_id=str(part.resource_id) if part.resource_id else None,
        )
        for part in rows
    ]
