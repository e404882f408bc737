"""ORM models, one module per aggregate; imported here so Alembic sees every table."""

from app.batches.models import PanelBatch
from app.models.api_key import ApiKey
from app.models.audit import AuditEvent
from app.models.code_map import CodeMapEntry
from app.models.hl7_message import Hl7Message
from app.models.idempotency import IdempotencyRecord
from app.models.organization import Organization
from app.models.panel import Panel, PanelInterpretation, Result
from app.models.patient import Patient, PatientIdentifier
from app.models.patient_context import PatientContext
from app.models.plan import PlanRuleSet, TreatmentPlan, TreatmentPlanVersion
from app.models.range_set import RangeSet, RatioRange, ReferenceRange
from app.models.refused_input import RefusedInput
from app.models.sleep_assessment import SleepAssessment

__all__ = [
    "ApiKey",
    "AuditEvent",
    "CodeMapEntry",
    "Hl7Message",
    "IdempotencyRecord",
    "Organization",
    "Panel",
    "PanelBatch",
    "PanelInterpretation",
    "Patient",
    "PatientContext",
    "PatientIdentifier",
    "PlanRuleSet",
    "RangeSet",
    "RatioRange",
    "RefusedInput",
    "ReferenceRange",
    "Result",
    "SleepAssessment",
    "TreatmentPlan",
    "TreatmentPlanVersion",
]
