"""What the plan rules and the safety engine may read about a patient, frozen at drafting time.

Values are in the analyte's canonical unit (magnesium, calcium: mmol/L; zinc, iron, copper:
umol/L; ferritin: ug/L). Codes for medications, conditions and diets come from the patient
context vocabulary (`app/data/patient_context_codes.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

# Medication classes the rules know (the context vocabulary maps each to ATC codes).
MEDICATION_CLASSES = (
    "levothyroxine",
    "tetracycline",
    "fluoroquinolone",
    "bisphosphonate",
    "proton-pump-inhibitor",
    "thiazide-diuretic",
    "loop-diuretic",
    "potassium-sparing-diuretic",
    "sedative-hypnotic",
)
CONDITIONS = (
    "hemochromatosis",
    "chronic-kidney-disease",
    "hyperparathyroidism",
    "kidney-stones",
    "malabsorption",
)
DIET_PATTERNS = ("omnivore", "vegetarian", "vegan", "pescatarian")
ISI_CATEGORIES = ("none", "subthreshold", "moderate", "severe")


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """The patient as the rules see it on the day the plan is drafted."""

    sex: str  # female | male | other | unknown
    age_years: int | None
    # None: not recorded. The rule set's `pregnancy_unknown` policy decides, before any rule
    # runs, whether such a patient is treated as possibly pregnant (see `context.py`).
    pregnant: bool | None = False
    lactating: bool = False
    egfr: Decimal | None = None  # mL/min/1.73 m2
    egfr_measured_on: date | None = None
    medications: frozenset[str] = frozenset()  # MEDICATION_CLASSES
    conditions: frozenset[str] = frozenset()  # CONDITIONS
    diet: str | None = None  # DIET_PATTERNS
    caffeine_servings_per_day: int | None = None
    alcohol_drinks_per_week: int | None = None
    # Set by `context.effective()`: pregnancy was not recorded and the patient is treated as
    # possibly pregnant (so `pregnant` is True for rules and limits).
    pregnancy_assumed: bool = False


@dataclass(frozen=True, slots=True)
class ResultFact:
    """The latest result of one analyte, as interpreted when stored."""

    analyte: str
    value: Decimal  # canonical unit
    unit: str  # canonical unit
    interpretation: str | None  # L | N | H | LL | HH | IND | None (no range applied)
    critical: bool
    panel_id: str
    result_id: str
    collected_at: datetime
    comparator: str | None = None
    # The value as the lab sent it, e.g. `55 ug/dL` (for rationales); None when not known.
    reported: str | None = None
    # A comparator value (`<0.5` mmol/L) that may lie beyond a critical limit: counts wherever
    # `critical` counts in plans (urgent referral first, activation gate).
    possibly_critical: bool = False
    status: str = "final"  # preliminary | final | corrected | amended (withdrawn ones never here)

    @property
    def needs_urgent_action(self) -> bool:
        return self.critical or self.possibly_critical


@dataclass(frozen=True, slots=True)
class RatioFact:
    code: str  # ca_mg_molar | zn_cu_molar
    value: Decimal | None
    interpretation: str | None  # L | N | H | None
    panel_id: str
    # When the ratio's panel was collected (None in plans stored before this was kept).
    collected_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SleepFact:
    """The latest Insomnia Severity Index."""

    total: int
    category: str  # ISI_CATEGORIES
    assessed_on: date


@dataclass(frozen=True, slots=True)
class PlanFacts:
    patient: PatientFacts
    today: date
    results: tuple[ResultFact, ...] = ()
    ratios: tuple[RatioFact, ...] = ()
    sleep: SleepFact | None = None
    # Panels the results came from, in the order they were chosen.
    panel_ids: tuple[str, ...] = field(default=())

    def result(self, analyte: str) -> ResultFact | None:
        return next((r for r in self.results if r.analyte == analyte), None)

    def ratio(self, code: str) -> RatioFact | None:
        return next((r for r in self.ratios if r.code == code), None)
