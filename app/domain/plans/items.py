"""Plan items and safety findings: what a plan holds, as drafted, edited and stored.

Pydantic models so the same shape validates a clinician's edit, is stored as a plan version's
JSON document and is rendered by the API.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

Amount = Annotated[
    Decimal,
    Field(gt=0, le=100000, allow_inf_nan=False, max_digits=12, decimal_places=3),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class Category(StrEnum):
    DIET = "diet"
    SUPPLEMENT = "supplement"
    SLEEP_HYGIENE = "sleep-hygiene"
    STRESS_MANAGEMENT = "stress-management"
    RELAXATION = "relaxation"
    HERBAL = "herbal"
    RETEST = "retest"
    REFERRAL = "referral"


CATEGORY_ORDER = tuple(Category)

# Minerals whose elemental daily dose is totalled against tolerable upper intake levels.
Mineral = Literal["magnesium", "calcium", "zinc", "iron", "copper"]
Timing = Literal["morning", "midday", "evening", "bedtime", "with-meals", "between-meals", "any"]


class ItemModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Supplement(ItemModel):
    """A supplement, dosed as the elemental mineral (e.g. 200 mg magnesium as glycinate)."""

    mineral: Mineral
    form: ShortText = Field(description="The compound, e.g. `magnesium glycinate`.")
    dose: Amount = Field(description="Elemental amount per dose.")
    unit: Literal["mg"] = "mg"
    doses_per_day: int = Field(ge=1, le=6)
    timing: Timing
    duration_days: int | None = Field(
        default=None, ge=1, le=730, description="How long to take it; null = until review."
    )

    @property
    def daily_amount(self) -> Decimal:
        return self.dose * self.doses_per_day


class Herbal(ItemModel):
    """An herbal option (no mineral dose), e.g. chamomile tea in the evening."""

    name: ShortText
    preparation: ShortText | None = None
    timing: Timing = "any"
    sedative: bool = Field(
        default=False,
        description="Adds to other sedatives (safety checks with sedatives); also kept out of "
        "plans for patients who are or may be pregnant.",
    )
    avoid_in_pregnancy: bool = Field(
        default=False,
        description="Not for patients who are or may be pregnant (pregnancy not recorded).",
    )


class Retest(ItemModel):
    analytes: tuple[Annotated[str, Field(min_length=1, max_length=50)], ...] = Field(
        min_length=1, max_length=10
    )
    due_date: date


class Referral(ItemModel):
    to: ShortText = Field(description="Who to refer to, e.g. `nephrology`, `emergency care`.")
    urgent: bool = False


EffectKind = Literal["increases", "no-supplements", "restricts"]


class MineralEffect(ItemModel):
    """What an item does to one mineral's intake, so contradictions can be found.

    `increases`: adds the mineral (rich foods; a supplement item increases its mineral without
    saying so). `no-supplements`: asks the patient to take no supplement of it. `restricts`:
    asks the patient to avoid any extra intake (supplements, rich foods, medicines with it).
    """

    mineral: Mineral
    effect: EffectKind


class PlanItem(ItemModel):
    """One thing the patient is asked to do, with why (for the clinician) and how (for them).

    `id` is stable across versions of one plan (rule items: the rule and template ids;
    clinician items: any id the clinician's front-end chose). `rule_id` is None for items a
    clinician added by hand.
    """

    id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")]
    category: Category
    title: ShortText
    instruction: Text = Field(description="For the patient, in plain language.")
    rationale: Text = Field(description="For the clinician: the findings and rule behind it.")
    analytes: tuple[Annotated[str, Field(min_length=1, max_length=50)], ...] = ()
    rule_id: str | None = None
    template_id: str | None = None
    priority: int = Field(default=100, ge=0, le=1000, description="Lower comes first.")
    supplement: Supplement | None = None
    herbal: Herbal | None = None
    retest: Retest | None = None
    referral: Referral | None = None
    source: str | None = Field(default=None, description="Where the clinical numbers come from.")
    effects: tuple[MineralEffect, ...] = Field(
        default=(),
        max_length=10,
        description="What the item does to mineral intake (from the rule set's template); a "
        "supplement also increases its mineral.",
    )


def effects_of(item: PlanItem) -> tuple[MineralEffect, ...]:
    """The item's declared effects, plus `increases` for a supplement's mineral."""
    effects = list(item.effects)
    if item.supplement is not None:
        effects.append(MineralEffect(mineral=item.supplement.mineral, effect="increases"))
    return tuple(effects)


def conflicts(restriction: MineralEffect, item: PlanItem) -> bool:
    """Whether `item` goes against `restriction` (same mineral): `restricts` excludes every
    item that increases the mineral, `no-supplements` excludes its supplements."""
    if restriction.effect == "restricts":
        return any(
            e.mineral == restriction.mineral and e.effect == "increases" for e in effects_of(item)
        )
    if restriction.effect == "no-supplements":
        return item.supplement is not None and item.supplement.mineral == restriction.mineral
    return False


def restrictions_of(item: PlanItem) -> tuple[MineralEffect, ...]:
    return tuple(e for e in item.effects if e.effect in ("restricts", "no-supplements"))


# The categories that carry a detail block, each in the field named after it (`supplement: ...`);
# the other categories carry none.
DETAIL_FIELDS = ("supplement", "herbal", "retest", "referral")


def misplaced_detail(category: Category, item: object) -> tuple[str, bool] | None:
    """The first detail field that does not fit `category`, for item templates and edited items.

    `(name, True)`: the category needs it and it is missing; `(name, False)`: it is given but
    belongs to another category. None when the details fit.
    """
    for name in DETAIL_FIELDS:
        present = getattr(item, name) is not None
        if present != (name == category.value):
            return name, not present
    return None


Severity = Literal["info", "warning", "blocking"]


# The optional ids of a hard stop, passed through only when given (as the constructor would).
class _FindingIds(TypedDict, total=False):
    item_ids: tuple[str, ...]
    result_ids: tuple[str, ...] | None


class SafetyFinding(ItemModel):
    """What the safety engine found. `blocking` prevents activation unless overridden."""

    code: str = Field(description="Stable id, e.g. `upper-limit:magnesium`.")
    severity: Severity
    message: str
    item_ids: tuple[str, ...] = ()
    source: str
    overridable: bool = Field(
        default=True,
        description="False for hard stops (a total above a tolerable upper intake level, a "
        "critical result without an urgent referral): no override can activate such a plan.",
    )
    result_ids: tuple[str, ...] | None = Field(
        default=None,
        description="For findings about results that arrived after drafting: the result ids a "
        "clinician may acknowledge on activation (`acknowledge_results`). Absent when only "
        "regenerating the plan resolves the finding.",
    )

    @classmethod
    def hard_stop(
        cls, code: str, message: str, *, source: str, **ids: Unpack[_FindingIds]
    ) -> SafetyFinding:
        """A blocking finding that no override clears: the plan must change (or be regenerated)."""
        return cls(
            code=code, severity="blocking", overridable=False, message=message, source=source, **ids
        )
