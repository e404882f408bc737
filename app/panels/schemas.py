from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.core.db import utcnow
from app.domain.result_status import ResultStatus
from app.domain.types import Specimen
from app.kit.pagination import Page, PageMeta
from app.kit.schemas_common import (
    EARLIEST_DATE,
    IdentifierIn,
    InputModel,
    Instant,
    JsonDecimal,
    OutputModel,
    Text100,
)

# A lab's clock may run slightly ahead of ours; more than this is a data error.
CLOCK_SKEW = timedelta(minutes=5)
MAX_RESULTS = 200


class PatientRef(InputModel):
    """Names the patient by our id or by an external identifier: exactly one of the two."""

    id: uuid.UUID | None = Field(default=None, description="The patient's id in this service.")
    identifier: IdentifierIn | None = Field(
        default=None, description="An external identifier registered on the patient."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.id is None) == (self.identifier is None):
            raise ValueError("give exactly one of 'id' or 'identifier'")
        return self


class LabRangeIn(InputModel):
    """The reference range the lab printed; kept beside ours, never used in place of it."""

    text: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="Verbatim range text, e.g. `0.70-1.00`; parsed where possible."
    )
    low: Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=18)] | None = None
    high: Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=18)] | None = None


class ResultIn(InputModel):
    analyte: Text100 = Field(
        description="Our analyte code (`magnesium`), a LOINC code (`19123-9`) or a name labs "
        "send (`MAGNESIUM, SERUM`).",
        examples=["magnesium"],
    )
    value: StrictStr | StrictInt | StrictFloat = Field(
        description="The value as reported. A string keeps trailing zeros and may carry a "
        "comparator (`<0.5`, `>1000`). Negative, NaN and infinite values are refused.",
        examples=["0.62", "<0.5", 1.9],
    )
    unit: Annotated[str, Field(min_length=1, max_length=30)] = Field(
        description="UCUM unit (`mg/dL`, `mmol/L`, `meq/L`, `ug/dL`, `umol/L`, `ug/L`, "
        "`ng/mL`); common spellings such as `mEq/L` and `µg/dL` are accepted.",
        examples=["mmol/L"],
    )
    reference_range: LabRangeIn | None = Field(
        default=None, description="The lab's own reference range, when sent."
    )
    flag: Annotated[str, Field(max_length=10)] | None = Field(
        default=None, description="The lab's own abnormal flag (HL7 v2 OBX-8 style: L, H, N, A)."
    )
    lab_comment: Annotated[str, Field(max_length=4000)] | None = Field(
        default=None,
        description="The lab's comment on this result (HL7 v2: NTE segments, narrative TX / FT "
        "and non-numeric CE / CWE values of the order).",
    )
    status: ResultStatus | None = Field(
        default=None,
        description="This result's status; default: the panel's `status`. `cancelled` and "
        "`entered-in-error` withdraw the result: it is kept for the record but never critical, "
        "and never used in trends, ratios, the timeline or plans.",
    )


class PanelCreate(InputModel):
    patient: PatientRef
    source: Text100 = Field(
        description="The sending system (lab or interface). With `accession` it identifies the "
        "panel: re-sending the same panel is safe.",
        examples=["acme-reference-lab"],
    )
    accession: Text100 = Field(description="The sender's accession / placer number.")
    specimen: Specimen = Field(default=Specimen.SERUM, description="Specimen type.")
    status: Literal["preliminary", "final", "corrected", "amended"] = Field(
        default="final",
        description="The panel's status. Re-posting a stored source + accession as `final` "
        "after `preliminary`, or as `corrected` / `amended`, corrects the stored panel (a new "
        "version; the earlier one stays readable under `/interpretations`). Each result's own "
        "`status` (default: this one) can correct (`corrected`, `amended`) or withdraw "
        "(`entered-in-error`, `cancelled`) a stored result.",
    )
    collected_at: Instant = Field(
        description="Specimen collection time, with a UTC offset. Not in the future, not "
        "before 1900."
    )
    received_at: Instant | None = Field(
        default=None, description="When the lab received the specimen."
    )
    performing_lab: Annotated[str, Field(max_length=200)] | None = None
    results: list[ResultIn] = Field(min_length=1, max_length=MAX_RESULTS)

    # Field validators, so the problem names the field (`body.collected_at`), not just `body`.
    @field_validator("collected_at", "received_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        if value > utcnow() + CLOCK_SKEW:
            raise ValueError(f"{info.field_name} is in the future")
        if value.date() < EARLIEST_DATE:
            raise ValueError(f"{info.field_name} is before 1900")
        return value

    @model_validator(mode="after")
    def _received_after_collected(self) -> Self:
        if self.received_at is not None and self.received_at < self.collected_at:
            raise ValueError("received_at is before collected_at")
        return self

    def result_status(self, position: int) -> ResultStatus:
        """The status of ``results[position]``: its own, else the panel's."""
        return self.results[position].status or self.status


class ReportedValueOut(OutputModel):
    text: str = Field(description="The value exactly as sent, e.g. `<0.5`.")
    value: JsonDecimal
    comparator: Literal["<", "<=", ">", ">="] | None
    unit: str


class CanonicalValueOut(OutputModel):
    value: JsonDecimal = Field(
        description="In the analyte's canonical unit, at the 6 significant digits stored and "
        "interpreted."
    )
    comparator: Literal["<", "<=", ">", ">="] | None
    unit: str
    display_value: str = Field(
        description="`value` as it should be shown, as text so trailing zeros count: rounded "
        "half-up to as many significant figures as the reported value and at least 3 (9.2 "
        "mg/dL calcium: `2.30`; 190 ug/dL iron: `34.0`); the reported value itself when it was "
        "reported in the canonical unit. The FHIR canonical-value extension uses the same rule."
    )


class AppliedRangeOut(OutputModel):
    """Snapshot of the reference-range row applied, in the canonical unit."""

    range_set: dict[str, str | int] | None = None
    basis: Literal["reference", "critical-limits-only"] = Field(
        default="reference",
        description="`critical-limits-only`: no reference row covered the patient; the most "
        "cautious critical limits of the analyte were applied.",
    )
    row_id: str | None = None
    unit: str
    specimen: str | None = None
    sex: str | None = None
    age_min_years: JsonDecimal | None = None
    age_max_years: JsonDecimal | None = None
    low: JsonDecimal | None = None
    high: JsonDecimal | None = None
    critical_low: JsonDecimal | None = None
    critical_high: JsonDecimal | None = None
    source: str | None = None


class InterpretationOut(OutputModel):
    code: Literal["L", "N", "H", "LL", "HH", "IND"] | None = Field(
        description="HL7 ObservationInterpretation; IND when a comparator makes it undecidable; "
        "null when no reference range applies."
    )
    display: str | None
    critical: bool = Field(
        description="True when our critical limits say so (a comparator value definitely "
        "beyond one included) or the lab's own flag is critical (LL, HH, AA): the more cautious "
        "of the two; `lab.disagreement` names a difference."
    )
    possibly_critical: bool = Field(
        default=False,
        description="A comparator value (`<0.5`) whose true value may lie beyond a critical "
        "limit: handled like a critical result (urgent referral first).",
    )
    status: Literal["interpreted", "no-reference-range"] = Field(
        default="interpreted",
        description="`no-reference-range`: no reference interval covers this patient (`note` "
        "says why); the critical limits in `reference_range` were still applied.",
    )
    note: str | None
    reference_range: AppliedRangeOut | None


class LabReportedOut(OutputModel):
    range_text: str | None
    low: JsonDecimal | None
    high: JsonDecimal | None
    flag: str | None
    disagreement: str | None = Field(
        description="Set when the lab's flag and ours point in different directions."
    )
    comment: str | None = Field(
        default=None,
        description="The lab's comment on this result (HL7 v2 NTE, TX / FT, coded values).",
    )


class ResultOut(OutputModel):
    id: uuid.UUID
    analyte: str
    status: ResultStatus = Field(
        default="final",
        description="FHIR Observation.status / HL7 OBX-11 of this result. `cancelled` and "
        "`entered-in-error`: withdrawn, kept for the record; never critical (the note says "
        "so) and never counted in `has_critical`, ratios, trends, the timeline or plans.",
    )
    loinc: str | None
    code_sent: str | None
    reported: ReportedValueOut
    canonical: CanonicalValueOut
    interpretation: InterpretationOut
    lab: LabReportedOut | None


class RatioOut(OutputModel):
    code: str
    display: str
    value: JsonDecimal | None
    interpretation: Literal["L", "N", "H"] | None
    low: JsonDecimal | None
    high: JsonDecimal | None
    note: str | None
    source: str | None = None


class PanelOut(OutputModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    source: str
    accession: str
    specimen: str
    status: str
    source_format: str
    collected_at: datetime
    received_at: datetime | None
    performing_lab: str | None
    created_at: datetime
    interpretation_version: int
    interpreted_at: datetime
    range_set: dict[str, str | int] | None = Field(
        description="The reference-range set (id, name, version) applied."
    )
    has_critical: bool = Field(
        description="True when any current result is critical (ours or the lab's flag)."
    )
    has_possible_critical: bool = Field(
        default=False,
        description="True when any current result may be critical (a comparator value that "
        "spans a critical limit); handle like a critical result.",
    )
    results: list[ResultOut]
    ratios: list[RatioOut]


class PanelPage(Page[PanelOut]):
    pass


class TrendPointOut(OutputModel):
    result_id: uuid.UUID
    panel_id: uuid.UUID
    collected_at: datetime
    value: JsonDecimal
    comparator: Literal["<", "<=", ">", ">="] | None
    unit: str
    interpretation: Literal["L", "N", "H", "LL", "HH", "IND"] | None
    critical: bool
    possibly_critical: bool = Field(
        default=False,
        description="A comparator value that may lie beyond a critical limit: chart it as "
        "critical.",
    )
    status: ResultStatus = Field(
        default="final", description="Withdrawn results (cancelled, entered-in-error) are left out."
    )
    reference_low: JsonDecimal | None = Field(
        default=None,
        description="The reference interval that applied to this result (its stored snapshot, "
        "so a later range change never moves it), in `unit`: the normal band of a chart.",
    )
    reference_high: JsonDecimal | None = None
    critical_low: JsonDecimal | None = Field(
        default=None, description="The critical limits that applied to this result, in `unit`."
    )
    critical_high: JsonDecimal | None = None


class TrendOut(PageMeta):
    analyte: str
    unit: str
    total: int = Field(
        description="How many current results of this analyte the filters match (all pages)."
    )
    items: list[TrendPointOut]


class RatioPointOut(OutputModel):
    panel_id: uuid.UUID
    collected_at: datetime
    value: JsonDecimal | None
    interpretation: Literal["L", "N", "H"] | None
    low: JsonDecimal | None = Field(description="The ratio's reference interval that applied.")
    high: JsonDecimal | None
    note: str | None = Field(description="Why there is no value (e.g. a comparator result).")


class RatioHistoryOut(PageMeta):
    code: str
    display: str
    total: int = Field(description="How many panels of the patient carry this ratio (all pages).")
    items: list[RatioPointOut]


class InterpretationVersionOut(OutputModel):
    version: int
    current: bool
    range_set_id: uuid.UUID | None
    interpreted_at: datetime
    superseded_at: datetime | None
    reason: str | None
    results: list[dict[str, object]]
    ratios: list[dict[str, object]]


class ReinterpretRequest(InputModel):
    reason: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="Why the panel is re-interpreted (kept in its history)."
    )


PANEL_EXAMPLE = {
    "patient": {"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-0042"}},
    "source": "acme-reference-lab",
    "accession": "ACC-2026-000123",
    "specimen": "serum",
    "status": "final",
    "collected_at": "2026-11-20T08:30:00Z",
    "results": [
        {
            "analyte": "magnesium",
            "value": "0.62",
            "unit": "mmol/L",
            "reference_range": {"text": "0.70-1.00"},
            "flag": "L",
        },
        {"analyte": "17861-6", "value": "9.1", "unit": "mg/dL"},
        {"analyte": "ZINC, SERUM", "value": "58", "unit": "ug/dL"},
        {"analyte": "copper", "value": "95", "unit": "ug/dL"},
    ],
}
