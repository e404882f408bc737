"""Refusals in HL7 terms: a patient match or an ingestion error as ERR issues, each located
at the segment and field (PID-3, OBR-3, OBX-n) it came from."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from app.core.errors import AppError
from app.interop.hl7.errors import ErrorCode, Issue, Location, MessageError
from app.interop.hl7.locations import issue_location
from app.interop.hl7.mapping import PanelDraft
from app.panels.service import AccessionConflictError
from app.patients import matching
from app.patients import service as patients_service


class PatientMatchRefusedError(MessageError):
    """PID names no patient safely (no matching key, keys naming different patients, or a
    patient whose recorded sex or birth date contradicts PID-7 / PID-8)."""

    def __init__(self, issues: Sequence[Issue], *, patient_id: uuid.UUID | None = None) -> None:
        super().__init__(issues)
        self.patient_id = patient_id


def match_refused(exc: matching.MatchError, draft: PanelDraft) -> PatientMatchRefusedError:
    """A refused patient match in HL7 terms, at the PID fields that caused it."""
    pid = draft.patient_location.sequence
    if isinstance(exc, matching.DemographicsConflictError):
        fields = {"birth_date": (7, "PID-7 (birth date)"), "sex": (8, "PID-8 (sex)")}
        return PatientMatchRefusedError(
            [
                Issue(
                    ErrorCode.UNKNOWN_KEY,
                    f"{fields[name][1]} differs from the patient PID-3 names; nothing was "
                    "stored: check that the identifier belongs to this person",
                    Location("PID", pid, fields[name][0]),
                )
                for name in sorted(exc.fields, key=lambda f: fields[f][0])
            ],
            patient_id=exc.patient_id,
        )
    if isinstance(exc, matching.IdentifiersConflictError):
        repetitions = ", ".join(str(p + 1) for p in exc.positions)
        return PatientMatchRefusedError(
            [
                Issue(
                    ErrorCode.DUPLICATE_KEY,
                    f"PID-3 repetitions {repetitions} name different registered patients; "
                    "nothing was stored",
                    Location("PID", pid, 3),
                )
            ]
        )
    return PatientMatchRefusedError(
        [
            Issue(
                ErrorCode.REQUIRED_FIELD_MISSING,
                "PID-3 has no identifier that can name the patient: send the medical record "
                "number with its type (CX-5 MR) and assigning authority (CX-4); SS and "
                "placeholder values are never used",
                Location("PID", pid, 3),
            )
        ]
    )


_CODES_BY_FIELD = {
    "analyte": ErrorCode.TABLE_VALUE_NOT_FOUND,
    "unit": ErrorCode.TABLE_VALUE_NOT_FOUND,
}
_FIELD_NAME = re.compile(r"\.(\w+)$")


def message_error(exc: AppError, draft: PanelDraft) -> MessageError:
    """An ingestion refusal in HL7 terms, each problem located at the segment it came from."""
    if isinstance(exc, AccessionConflictError):
        return MessageError(
            [
                Issue(
                    ErrorCode.DUPLICATE_KEY,
                    f"{exc.conflict} Send changed results as a correction (OBX-11 C).",
                    Location("OBR", draft.order_location.sequence, 3),
                )
            ]
        )
    if isinstance(exc, patients_service.IdentifierInUseError):
        return MessageError([Issue(ErrorCode.DUPLICATE_KEY, exc.detail, Location("PID", 1, 3))])
    errors = exc.extensions.get("errors") or []
    issues = []
    for error in errors:
        field = str(error.get("field", ""))
        match = _FIELD_NAME.search(field)
        code = _CODES_BY_FIELD.get(match.group(1) if match else "", ErrorCode.DATA_TYPE)
        location = issue_location(field, draft.order_location, draft.result_locations)
        issues.append(Issue(code, str(error.get("message", exc.detail)), location))
    if not issues:
        status = ErrorCode.DUPLICATE_KEY if exc.status == 409 else ErrorCode.DATA_TYPE
        issues.append(Issue(status, exc.detail, draft.order_location))
    return MessageError(issues)
