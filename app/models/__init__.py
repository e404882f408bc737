"""ORM models, one module per aggregate; imported here so Alembic sees every table."""

from app.models.api_key import ApiKey
from app.models.audit import AuditEvent
from app.models.code_map import CodeMapEntry
from app.models.idempotency import IdempotencyRecord
from app.models.organization import Organization
from app.models.panel import Panel, PanelInterpretation, Result
from app.models.patient import Patient, PatientIdentifier
from app.models.range_set import RangeSet, RatioRange, ReferenceRange

__all__ = [
    "ApiKey",
    "AuditEvent",
    "CodeMapEntry",
    "IdempotencyRecord",
    "Organization",
    "Panel",
    "PanelInterpretation",
    "Patient",
    "PatientIdentifier",
    "RangeSet",
    "RatioRange",
    "ReferenceRange",
    "Result",
]
