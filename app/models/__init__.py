"""ORM models, one module per aggregate; imported here so Alembic sees every table."""

from app.models.organization import Organization
from app.models.panel import Panel, PanelInterpretation, Result
from app.models.patient import Patient, PatientIdentifier
from app.models.range_set import RangeSet, RatioRange, ReferenceRange

__all__ = [
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
