"""The condition language of plan rules: declarative data, evaluated here, never `eval`-ed.

A condition is a mapping with exactly one key naming its kind:

- combinators: ``all: [...]``, ``any: [...]``, ``not: {...}``;
- result atoms: ``result: {analyte, interpretation: [L, LL] | below: X | above: X, unit}``
  (thresholds in the analyte's canonical unit, which the atom states), ``result_missing: ferritin``,
  ``critical: true`` (any critical result);
- ``ratio: {code, interpretation | below | above}``, ``sleep: {category | total_at_least |
  total_below}``;
- patient context: ``patient: {pregnant, lactating, egfr_below, egfr_at_least, egfr_missing,
  egfr_older_than_days, age_at_least, age_below, sex}`` (``pregnant: true`` also holds for a
  patient whose pregnancy is not recorded but who is treated as possibly pregnant by the rule
  set's ``pregnancy_unknown`` policy), ``medication: <class>``, ``condition: <code>``,
  ``diet: [...]``, ``caffeine_servings_above: N``, ``alcohol_drinks_per_week_above: N``;
- plan items (safety rules only): ``item: {category, mineral, herbal_sedative, herbal_name,
  unsafe_in_pregnancy, urgent_referral, daily_at_least, daily_above, duration_days_over}``.

Evaluation and the readable findings live in `evaluation.py`, the rule-set checks in
`condition_checks.py`; each dispatches with one `match` over every kind ending in `assert_never`,
so adding a kind here without handling it there fails mypy.

Missing data never satisfies an atom: ``egfr_below: 30`` is false when no eGFR is on record, a
``result`` atom is false without a result, and ``not`` turns that into true. Rules that must act
on missing data say so explicitly (``result_missing``, ``patient: {egfr_missing: true}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_validator,
)

from app.domain.plans.items import Category, Mineral

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Threshold = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
ResultInterpretation = Literal["L", "N", "H", "LL", "HH", "IND"]
RatioInterpretation = Literal["L", "N", "H"]
IsiCategory = Literal["none", "subthreshold", "moderate", "severe"]
PatientSex = Literal["female", "male", "other", "unknown"]

RATIO_DISPLAY = {"ca_mg_molar": "Ca:Mg molar ratio", "zn_cu_molar": "Zn:Cu molar ratio"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _as_tuple(value: Any) -> Any:
    """Accept a single code where a list is expected (`medication: levothyroxine`)."""
    return [value] if isinstance(value, str) else value


_T = TypeVar("_T")
# A list of codes that may also be written as one bare code; the validator runs before the list
# check, so the JSON schema stays a plain list.
OneOrMore = Annotated[list[_T], BeforeValidator(_as_tuple)]


# --- combinators --------------------------------------------------------------------------------


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


class Not(_Strict):
    model_config = ConfigDict(populate_by_name=True)

    negated: Condition = Field(alias="not")


# --- atoms about results ------------------------------------------------------------------------


class _NeedsOneOf(_Strict):
    """A test that says nothing unless one of `_needs_one_of` is given (checked once, here)."""

    _kind: ClassVar[str]
    _needs_one_of: ClassVar[tuple[str, ...]]

    @model_validator(mode="after")
    def _check_needs_one_of(self) -> Self:
        if all(getattr(self, name) is None for name in self._needs_one_of):
            *first, last = self._needs_one_of
            raise ValueError(f"a {self._kind} test needs {', '.join(first)} or {last}")
        return self


class ResultTest(_NeedsOneOf):
    _kind = "result"
    _needs_one_of = ("interpretation", "below", "above")

    analyte: Code
    interpretation: OneOrMore[ResultInterpretation] | None = Field(default=None, min_length=1)
    below: Threshold | None = None
    above: Threshold | None = None
    unit: str | None = Field(
        default=None, description="The canonical unit `below`/`above` are stated in."
    )

    @model_validator(mode="after")
    def _check(self) -> ResultTest:
        if (self.below is not None or self.above is not None) and not self.unit:
            raise ValueError("state the canonical unit of below/above in `unit`")
        return self


class ResultAtom(_Strict):
    result: ResultTest


class ResultMissingAtom(_Strict):
    result_missing: Code


class CriticalAtom(_Strict):
    critical: bool


class RatioTest(_NeedsOneOf):
    _kind = "ratio"
    _needs_one_of = ("interpretation", "below", "above")

    code: Code
    interpretation: OneOrMore[RatioInterpretation] | None = Field(default=None, min_length=1)
    below: Threshold | None = None
    above: Threshold | None = None


class RatioAtom(_Strict):
    ratio: RatioTest


class SleepTest(_NeedsOneOf):
    _kind = "sleep"
    _needs_one_of = ("category", "total_at_least", "total_below")

    category: OneOrMore[IsiCategory] | None = Field(default=None, min_length=1)
    total_at_least: int | None = Field(default=None, ge=0, le=28)
    total_below: int | None = Field(default=None, ge=0, le=29)


class SleepAtom(_Strict):
    sleep: SleepTest


# --- atoms about the patient --------------------------------------------------------------------


class _NeedsAnyField(_Strict):
    """A test of which every field is optional but one must be written (even as `null`)."""

    _what: ClassVar[str]

    @model_validator(mode="after")
    def _check_needs_a_field(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(f"{self._what} needs at least one field")
        return self


class PatientTest(_NeedsAnyField):
    _what = "a patient test"

    pregnant: bool | None = None
    lactating: bool | None = None
    egfr_below: Threshold | None = Field(default=None, description="mL/min/1.73 m2")
    egfr_at_least: Threshold | None = Field(default=None, description="mL/min/1.73 m2")
    egfr_missing: bool | None = None
    egfr_older_than_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="An eGFR is on record and was measured more than this many days ago.",
    )
    age_at_least: int | None = Field(default=None, ge=0, le=150)
    age_below: int | None = Field(default=None, ge=0, le=151)
    sex: OneOrMore[PatientSex] | None = Field(default=None, min_length=1)


class PatientAtom(_Strict):
    patient: PatientTest


class MedicationAtom(_Strict):
    medication: OneOrMore[Code] = Field(min_length=1, description="any of these classes")


class ConditionAtom(_Strict):
    condition: OneOrMore[Code] = Field(min_length=1, description="any of these conditions")


class DietAtom(_Strict):
    diet: OneOrMore[Code] = Field(min_length=1)


class CaffeineAtom(_Strict):
    caffeine_servings_above: int = Field(ge=0, le=100)


class AlcoholAtom(_Strict):
    alcohol_drinks_per_week_above: int = Field(ge=0, le=500)


# --- atoms about plan items (safety rules) ------------------------------------------------------


class ItemTest(_NeedsAnyField):
    """Matches plan items; numbers are elemental mg/day summed over the matching items."""

    _what = "an item test"

    category: Category | None = None
    mineral: Mineral | None = None
    herbal_sedative: bool | None = None
    herbal_name: str | None = Field(default=None, min_length=1, description="case-insensitive")
    unsafe_in_pregnancy: bool | None = Field(
        default=None, description="herbal items marked `avoid_in_pregnancy` or `sedative`"
    )
    urgent_referral: bool | None = None
    daily_at_least: Threshold | None = None
    daily_above: Threshold | None = None
    duration_days_over: int | None = Field(
        default=None, ge=0, description="items without a duration (until review) count as over"
    )


class ItemAtom(_Strict):
    item: ItemTest


# The atoms judged on the facts alone (everything but the combinators and item atoms): the
# evaluator, the describer and the rule-set checks each `match` over these with `assert_never`,
# so a new kind that is not handled everywhere fails mypy.
FactAtom = (
    ResultAtom
    | ResultMissingAtom
    | CriticalAtom
    | RatioAtom
    | SleepAtom
    | PatientAtom
    | MedicationAtom
    | ConditionAtom
    | DietAtom
    | CaffeineAtom
    | AlcoholAtom
)


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next(iter(value)) if len(value) == 1 else None
    if isinstance(value, BaseModel):
        return _KIND_BY_CLASS.get(type(value))
    return None


Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")]
    | Annotated[ResultAtom, Tag("result")]
    | Annotated[ResultMissingAtom, Tag("result_missing")]
    | Annotated[CriticalAtom, Tag("critical")]
    | Annotated[RatioAtom, Tag("ratio")]
    | Annotated[SleepAtom, Tag("sleep")]
    | Annotated[PatientAtom, Tag("patient")]
    | Annotated[MedicationAtom, Tag("medication")]
    | Annotated[ConditionAtom, Tag("condition")]
    | Annotated[DietAtom, Tag("diet")]
    | Annotated[CaffeineAtom, Tag("caffeine_servings_above")]
    | Annotated[AlcoholAtom, Tag("alcohol_drinks_per_week_above")]
    | Annotated[ItemAtom, Tag("item")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message=(
            "a condition is a mapping with exactly one key, one of: all, any, not, result, "
            "result_missing, critical, ratio, sleep, patient, medication, condition, diet, "
            "caffeine_servings_above, alcohol_drinks_per_week_above, item"
        ),
    ),
]

_KIND_BY_CLASS: dict[type[BaseModel], str] = {
    AllOf: "all",
    AnyOf: "any",
    Not: "not",
    ResultAtom: "result",
    ResultMissingAtom: "result_missing",
    CriticalAtom: "critical",
    RatioAtom: "ratio",
    SleepAtom: "sleep",
    PatientAtom: "patient",
    MedicationAtom: "medication",
    ConditionAtom: "condition",
    DietAtom: "diet",
    CaffeineAtom: "caffeine_servings_above",
    AlcoholAtom: "alcohol_drinks_per_week_above",
    ItemAtom: "item",
}

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()

CONDITION_ADAPTER: TypeAdapter[Condition] = TypeAdapter(Condition)


def parse_condition(data: Any) -> Condition:
    """Validate one condition (a YAML/JSON mapping); raises pydantic's ValidationError."""
    return CONDITION_ADAPTER.validate_python(data)


def walk(condition: Condition) -> Iterable[Condition]:
    """Every node of a condition tree, the root first."""
    yield condition
    if isinstance(condition, AllOf):
        for child in condition.all:
            yield from walk(child)
    elif isinstance(condition, AnyOf):
        for child in condition.any:
            yield from walk(child)
    elif isinstance(condition, Not):
        yield from walk(condition.negated)
