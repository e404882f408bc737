"""The plan rule-set document: what admins import (YAML) and the API accepts (JSON).

A rule set holds, as data:

- ``upper_limits``: tolerable upper intake levels by mineral, age band, sex and life stage;
- ``templates``: the plan items rules can propose (text, doses, retest delays, referrals);
- ``rules``: generation rules, ``when`` (a condition, see `conditions.py`) -> ``add`` templates;
- ``interactions``: mineral supplement x medication-class pairs (one finding per pair);
- ``safety_rules``: conditions over facts and plan items -> findings (contraindications,
  supplement-supplement interactions, cautions).

Four checks are not configurable because no clinic may switch them off: a daily total above the
patient's upper limit, a critical (or possibly critical) result without an urgent referral, items
that contradict each other about one mineral, and (at activation) results that arrived after
drafting (see `safety.py` and `freshness.py`).

Hard stops are data too: a safety rule with ``overridable: false`` can never be overridden.

Two policies are data with cautious defaults: ``pregnancy_unknown`` (who is treated as possibly
pregnant while pregnancy is not recorded) and ``ratio_window`` (how far apart the results behind
a ratio may have been collected for the ratio to be used).

This module only guarantees that a document is well formed; `RuleSetDocument.problems()` reports
what needs outside knowledge (the analyte catalog, ratio codes) or spans sections.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.domain.plans.condition_checks import condition_problems, has_numbers
from app.domain.plans.conditions import Condition, CriticalAtom, ItemAtom, PatientSex, walk
from app.domain.plans.facts import MEDICATION_CLASSES
from app.domain.plans.items import (
    Category,
    Herbal,
    Mineral,
    MineralEffect,
    Referral,
    Severity,
    Supplement,
    misplaced_detail,
)
from app.domain.range_sets import _DecimalSafeLoader
from app.domain.validation_errors import error_path, errors_message

DEFAULT_RULE_SET_RESOURCE = "data/plan_rules/default.yaml"

Identifier = Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[a-z0-9][a-z0-9-]*$")]
NonEmptyText = Annotated[str, Field(min_length=1)]
Text = Annotated[str, Field(min_length=1, max_length=1500)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
AnalyteCode = Annotated[str, Field(min_length=1, max_length=50)]


class RuleSetFormatError(Exception):
    """A rule-set document could not be read or failed validation.

    ``errors`` holds one dict per problem: ``loc`` (a list, e.g. ``["rules", 3, "when"]``),
    ``path`` (the same as text, e.g. ``rules[3].when``), ``msg`` and, when known, ``line``.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors: list[dict[str, Any]] = list(errors or [])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class UpperLimitRow(_Strict):
    """A tolerable upper intake level (elemental mg/day) for one mineral and population."""

    mineral: Mineral
    amount: Decimal = Field(gt=0, allow_inf_nan=False)
    unit: Literal["mg"] = "mg"
    age_min_years: int | None = Field(default=None, ge=0, description="inclusive")
    age_max_years: int | None = Field(default=None, ge=1, description="exclusive")
    sex: Literal["female", "male"] | None = None
    life_stage: Literal["pregnancy", "lactation"] | None = Field(
        default=None, description="None: applies to everyone in the band without a staged row"
    )
    scope: Literal["supplements", "total-intake"] = Field(
        description="what the limit counts (magnesium: supplements only; others: all sources)"
    )
    applies_to: ShortText = Field(examples=["adults 19-50 y, pregnancy"])
    source: NonEmptyText
    note: str | None = None

    @model_validator(mode="after")
    def _check_band(self) -> UpperLimitRow:
        if (
            self.age_min_years is not None
            and self.age_max_years is not None
            and self.age_max_years <= self.age_min_years
        ):
            raise ValueError("age_max_years must be greater than age_min_years")
        return self

    def covers_age(self, age: int) -> bool:
        return (self.age_min_years is None or age >= self.age_min_years) and (
            self.age_max_years is None or age < self.age_max_years
        )


class RetestTemplate(_Strict):
    analytes: list[AnalyteCode] = Field(min_length=1, max_length=10)
    due_in_days: int = Field(ge=1, le=730)


class ItemTemplate(_Strict):
    """A plan item a rule can propose; the engine adds the findings and the rule id."""

    id: Identifier
    category: Category
    title: ShortText
    instruction: Text = Field(description="For the patient, in plain language.")
    rationale: Text = Field(description="For the clinician; findings are appended.")
    analytes: list[AnalyteCode] = Field(default_factory=list)
    supplement: Supplement | None = None
    herbal: Herbal | None = None
    retest: RetestTemplate | None = None
    referral: Referral | None = None
    source: str | None = Field(default=None, description="Required when the item has numbers.")
    effects: list[MineralEffect] = Field(
        default_factory=list,
        max_length=10,
        description="What the item does to mineral intake: `increases` (rich foods), "
        "`no-supplements`, `restricts` (no extra intake). Supplements increase their mineral "
        "implicitly. A restriction always wins over an item it contradicts.",
    )
    avoid_in_pregnancy: bool = Field(
        default=False,
        description="Never drafted for a patient who is or may be pregnant (herbal items: "
        "also when `herbal.sedative` or `herbal.avoid_in_pregnancy`).",
    )
    note: str | None = None

    @property
    def unsafe_in_pregnancy(self) -> bool:
        herbal = self.herbal
        return self.avoid_in_pregnancy or (
            herbal is not None and (herbal.sedative or herbal.avoid_in_pregnancy)
        )

    @model_validator(mode="after")
    def _check_payload(self) -> ItemTemplate:
        misplaced = misplaced_detail(self.category, self)
        if misplaced is not None:
            name, missing = misplaced
            verb = "needs" if missing else "cannot have"
            raise ValueError(f"a {self.category.value} template {verb} `{name}`")
        return self


class GenerationRule(_Strict):
    id: Identifier
    description: Text
    priority: int = Field(ge=0, le=1000, description="Lower comes first; 0 for urgent items.")
    when: Condition
    add: list[Identifier] = Field(min_length=1, description="template ids")
    source: str | None = Field(default=None, description="Required when `when` has numbers.")
    note: str | None = None


class Interaction(_Strict):
    """Supplements of these minerals with any of these medication classes: one finding a pair."""

    id: Identifier
    minerals: list[Mineral] = Field(min_length=1)
    medications: list[Identifier] = Field(min_length=1)
    severity: Severity = "warning"
    message: Text = Field(description="For the clinician, e.g. the spacing the source gives.")
    source: NonEmptyText
    note: str | None = None


class SafetyRule(_Strict):
    id: Identifier
    code: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9:._-]*$")
    severity: Severity
    overridable: bool = True
    when: Condition
    message: Text
    source: NonEmptyText
    note: str | None = None


_SERVICE_DEFAULT = "service default (cautious); a clinic choice, not from a clinical source"


def _female() -> list[PatientSex]:
    return ["female"]


class PregnancyUnknownPolicy(_Strict):
    """Who is treated as possibly pregnant while pregnancy is not recorded: for item selection
    (rules with `patient: {pregnant: true}`, items unsafe in pregnancy) and upper limits (the
    lower of the pregnancy and general rows)."""

    sexes: list[PatientSex] = Field(default_factory=_female, min_length=1)
    age_min_years: int = Field(default=12, ge=0, le=150, description="inclusive")
    age_max_years: int = Field(default=56, ge=1, le=151, description="exclusive")
    age_unknown: Literal["possibly-pregnant", "not-pregnant"] = Field(
        default="possibly-pregnant", description="for a patient of these sexes with no age"
    )
    source: NonEmptyText = _SERVICE_DEFAULT
    note: str | None = None

    @model_validator(mode="after")
    def _check_band(self) -> PregnancyUnknownPolicy:
        if self.age_max_years <= self.age_min_years:
            raise ValueError("age_max_years must be greater than age_min_years")
        return self


class RatioWindow(_Strict):
    """A ratio is used only when the results behind it were collected together: the ratio's
    panel and the latest result of each of its analytes within `hours` of each other."""

    hours: int = Field(default=24, ge=0, le=24 * 31)
    source: NonEmptyText = _SERVICE_DEFAULT
    note: str | None = None


class RuleSetDocument(_Strict):
    """A named plan rule set, as imported (YAML) or posted (JSON)."""

    name: NonEmptyText = Field(examples=["default"])
    description: str | None = None
    source: NonEmptyText = Field(description="the set's provenance")
    effective_from: date | None = None
    upper_limits: list[UpperLimitRow] = Field(min_length=1)
    templates: list[ItemTemplate] = Field(min_length=1)
    rules: list[GenerationRule] = Field(min_length=1)
    interactions: list[Interaction] = Field(default_factory=list)
    safety_rules: list[SafetyRule] = Field(default_factory=list)
    pregnancy_unknown: PregnancyUnknownPolicy = Field(default_factory=PregnancyUnknownPolicy)
    ratio_window: RatioWindow = Field(default_factory=RatioWindow)

    def hard_stops(self) -> list[str]:
        """The codes of the safety rules that can never be overridden."""
        return [rule.code for rule in self.safety_rules if not rule.overridable]

    def template(self, template_id: str) -> ItemTemplate | None:
        return next((t for t in self.templates if t.id == template_id), None)

    def problems(self, *, analytes: set[str], ratios: set[str]) -> list[dict[str, str]]:
        """Semantic errors: unknown codes, duplicates, missing sources, no critical referral."""
        found = [
            *self._duplicate_problems(),
            *self._template_problems(analytes),
            *self._rule_problems(analytes, ratios),
            *self._interaction_problems(),
            *self._safety_rule_problems(analytes, ratios),
        ]
        if not any(self._is_critical_referral_rule(rule) for rule in self.rules):
            found.append(
                _problem(
                    "rules",
                    "no rule adds an urgent referral for critical results: add a rule with "
                    "`when: {critical: true}` that adds a referral template with `urgent: true`",
                )
            )
        return found

    def _duplicate_problems(self) -> Iterator[dict[str, str]]:
        sections: dict[str, list[str]] = {
            "templates": [entry.id for entry in self.templates],
            "rules": [entry.id for entry in self.rules],
            "interactions": [entry.id for entry in self.interactions],
            "safety_rules": [entry.id for entry in self.safety_rules],
        }
        for section, ids in sections.items():
            seen: set[str] = set()
            for index, entry_id in enumerate(ids):
                if entry_id in seen:
                    yield _problem(f"{section}[{index}].id", f"duplicate id {entry_id!r}")
                seen.add(entry_id)

    def _template_problems(self, analytes: set[str]) -> Iterator[dict[str, str]]:
        for index, template in enumerate(self.templates):
            where = f"templates[{index}]"
            retest = template.retest.analytes if template.retest else []
            for analyte in [*template.analytes, *retest]:
                if analyte not in analytes:
                    yield _problem(where, f"unknown analyte {analyte!r}")
            has_numbers = template.supplement is not None or template.retest is not None
            if has_numbers and not template.source:
                yield _problem(
                    f"{where}.source", "a template with a dose or a retest delay needs a source"
                )
            if template.supplement is not None and not self._has_limit(template.supplement.mineral):
                yield _problem(
                    f"{where}.supplement.mineral",
                    f"no upper limit row for {template.supplement.mineral}",
                )
            yield from _effect_problems(where, template)

    def _rule_problems(self, analytes: set[str], ratios: set[str]) -> Iterator[dict[str, str]]:
        templates = {template.id for template in self.templates}
        for index, rule in enumerate(self.rules):
            where = f"rules[{index}]"
            for position, template_id in enumerate(rule.add):
                if template_id not in templates:
                    yield _problem(f"{where}.add[{position}]", f"unknown template {template_id!r}")
            yield from condition_problems(f"{where}.when", rule.when, analytes, ratios)
            if any(isinstance(node, ItemAtom) for node in walk(rule.when)):
                yield _problem(
                    f"{where}.when", "item atoms belong to safety rules, not generation rules"
                )
            if has_numbers(rule.when) and not rule.source:
                yield _problem(f"{where}.source", "a rule with numeric thresholds needs a source")

    def _interaction_problems(self) -> Iterator[dict[str, str]]:
        for index, interaction in enumerate(self.interactions):
            for position, code in enumerate(interaction.medications):
                if code not in MEDICATION_CLASSES:
                    yield _problem(
                        f"interactions[{index}].medications[{position}]",
                        f"unknown medication class {code!r}",
                    )

    def _safety_rule_problems(
        self, analytes: set[str], ratios: set[str]
    ) -> Iterator[dict[str, str]]:
        for index, safety_rule in enumerate(self.safety_rules):
            where = f"safety_rules[{index}]"
            if not safety_rule.overridable and safety_rule.severity != "blocking":
                yield _problem(
                    f"{where}.overridable",
                    "only a blocking finding can be a hard stop (`overridable: false`)",
                )
            yield from condition_problems(f"{where}.when", safety_rule.when, analytes, ratios)

    def _has_limit(self, mineral: str) -> bool:
        return any(row.mineral == mineral for row in self.upper_limits)

    def _is_critical_referral_rule(self, rule: GenerationRule) -> bool:
        if not (isinstance(rule.when, CriticalAtom) and rule.when.critical):
            return False
        for template_id in rule.add:
            template = self.template(template_id)
            if template is not None and template.referral is not None and template.referral.urgent:
                return True
        return False


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _effect_problems(where: str, template: ItemTemplate) -> Iterator[dict[str, str]]:
    supplement = template.supplement
    for position, effect in enumerate(template.effects):
        if (
            supplement is not None
            and effect.mineral == supplement.mineral
            and effect.effect != "increases"
        ):
            yield _problem(
                f"{where}.effects[{position}]",
                f"a {effect.mineral} supplement cannot restrict {effect.mineral}",
            )
    minerals = [effect.mineral for effect in template.effects]
    if len(set(minerals)) != len(minerals):
        yield _problem(f"{where}.effects", "one effect per mineral")


# --- reading documents --------------------------------------------------------------------------


def parse_rule_set_yaml(text: str) -> RuleSetDocument:
    """Read a YAML rule set; numbers keep their exact decimal digits; errors name the line."""
    try:
        # A SafeLoader subclass: only plain data is built, exactly as with yaml.safe_load.
        data = yaml.load(text, Loader=_DecimalSafeLoader)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        error: dict[str, Any] = {"loc": [], "path": "", "msg": f"not valid YAML: {exc}"}
        where = ""
        if line is not None:
            error["line"] = line
            where = f" (line {line})"
        raise RuleSetFormatError(f"the rule set is not valid YAML{where}", [error]) from exc
    if not isinstance(data, dict):
        raise RuleSetFormatError(
            "the rule set must be a YAML mapping with name, source, upper_limits, templates "
            "and rules",
            [{"loc": [], "path": "", "msg": "expected a mapping at the top level"}],
        )
    return validate_rule_set(data, yaml_root=root)


def validate_rule_set(data: Any, *, yaml_root: yaml.Node | None = None) -> RuleSetDocument:
    """Validate already-parsed data, raising `RuleSetFormatError` with paths (and YAML lines)."""
    try:
        return RuleSetDocument.model_validate(data)
    except ValidationError as exc:
        raise format_error(exc, yaml_root=yaml_root) from exc


def format_error(exc: ValidationError, *, yaml_root: yaml.Node | None = None) -> RuleSetFormatError:
    """A `RuleSetFormatError` for pydantic's errors (also for `model_validate_json` callers)."""
    errors: list[dict[str, Any]] = []
    for error in exc.errors(include_input=False):
        loc = _clean_loc(list(error["loc"]))
        entry: dict[str, Any] = {
            "loc": loc,
            "path": error_path(loc),
            "msg": error["msg"],
            "type": error["type"],
        }
        if yaml_root is not None:
            line = _line_of(yaml_root, loc)
            if line is not None:
                entry["line"] = line
        errors.append(entry)
    return RuleSetFormatError(errors_message("rule set", errors), errors)


def read_default_rule_set() -> RuleSetDocument:
    """The rule set shipped with the application (``app/data/plan_rules/default.yaml``)."""
    text = resources.files("app").joinpath(DEFAULT_RULE_SET_RESOURCE).read_text(encoding="utf-8")
    return parse_rule_set_yaml(text)


def _clean_loc(loc: list[Any]) -> list[Any]:
    # A tagged union repeats the tag in the location (`when.result.result.below`): drop the copy.
    cleaned: list[Any] = []
    for part in loc:
        if cleaned and isinstance(part, str) and part == cleaned[-1]:
            continue
        cleaned.append(part)
    return cleaned


def _line_of(root: yaml.Node, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest YAML node the location reaches."""
    node = root
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            child = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1
