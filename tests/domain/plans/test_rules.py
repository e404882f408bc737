from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.domain.plans.rules import (
    RuleSetDocument,
    RuleSetFormatError,
    parse_rule_set_yaml,
)
from tests.domain.plans import ANALYTES, DEFAULT_YAML, RATIOS, default_rules

MINIMAL_YAML = """
name: clinic
source: our clinic
upper_limits:
  - {mineral: magnesium, amount: 350, age_min_years: 9, scope: supplements,
     applies_to: "9 y and older", source: ODS}
templates:
  - id: urgent
    category: referral
    title: Urgent review
    instruction: Call us today.
    rationale: Critical result.
    referral: {to: emergency care, urgent: true}
  - id: mg
    category: supplement
    title: Magnesium
    instruction: Take it in the evening.
    rationale: Low magnesium.
    supplement: {mineral: magnesium, form: magnesium glycinate, dose: 200.5, doses_per_day: 1,
                 timing: evening}
    source: ODS
rules:
  - id: critical
    description: Critical results.
    priority: 0
    when: {critical: true}
    add: [urgent]
  - id: mg-low
    description: Low magnesium.
    priority: 10
    when:
      all:
        - result: {analyte: magnesium, interpretation: [L, LL]}
        - not: {patient: {egfr_below: 30}}
    add: [mg]
    source: clinic
"""


def test_shipped_rule_set_parses_without_problems() -> None:
    rules = parse_rule_set_yaml(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert rules.problems(analytes=ANALYTES, ratios=RATIOS) == []
    assert rules.name == "default"


def test_every_clinical_number_in_the_shipped_set_has_a_source() -> None:
    rules = default_rules()
    assert all(row.source.strip() for row in rules.upper_limits)
    for template in rules.templates:
        if template.supplement is not None or template.retest is not None:
            assert template.source, template.id
    assert all(interaction.source for interaction in rules.interactions)
    assert all(rule.source for rule in rules.safety_rules)


def test_minimal_yaml_keeps_decimal_digits() -> None:
    rules = parse_rule_set_yaml(MINIMAL_YAML)
    supplement = rules.templates[1].supplement
    assert supplement is not None
    assert supplement.dose == Decimal("200.5")
    assert rules.problems(analytes=ANALYTES, ratios=RATIOS) == []


def test_json_with_the_same_structure_validates() -> None:
    rules = parse_rule_set_yaml(MINIMAL_YAML)
    as_json = rules.model_dump_json(by_alias=True, exclude_none=True)
    again = RuleSetDocument.model_validate_json(as_json)
    assert again == rules
    default = default_rules()
    assert RuleSetDocument.model_validate_json(default.model_dump_json(by_alias=True)) == default
    raw = json.loads(as_json)
    assert set(raw["rules"][1]["when"]["all"][1]) == {"not"}


def test_invalid_yaml_reports_its_line() -> None:
    with pytest.raises(RuleSetFormatError) as caught:
        parse_rule_set_yaml("name: x\nsource: [unclosed\n")
    assert caught.value.errors[0]["line"] >= 2
    assert "not valid YAML" in caught.value.message


def test_a_typo_in_a_condition_names_its_path_and_line() -> None:
    text = MINIMAL_YAML.replace("- result: {analyte: magnesium", "- resutl: {analyte: magnesium")
    with pytest.raises(RuleSetFormatError) as caught:
        parse_rule_set_yaml(text)
    error = caught.value.errors[0]
    assert error["path"] == "rules[1].when.all[0]"
    assert "exactly one key" in error["msg"]
    assert (
        error["line"]
        == text.splitlines().index(
            "        - resutl: {analyte: magnesium, interpretation: [L, LL]}"
        )
        + 1
    )
    assert "rules[1].when.all[0]" in caught.value.message


def test_a_bad_atom_field_names_the_field() -> None:
    text = MINIMAL_YAML.replace("egfr_below: 30", "egfr_belw: 30")
    with pytest.raises(RuleSetFormatError) as caught:
        parse_rule_set_yaml(text)
    paths = [error["path"] for error in caught.value.errors]
    assert "rules[1].when.all[1].not.patient.egfr_belw" in paths


def test_template_payload_must_match_category() -> None:
    text = MINIMAL_YAML.replace("category: supplement", "category: diet")
    with pytest.raises(RuleSetFormatError) as caught:
        parse_rule_set_yaml(text)
    assert caught.value.errors[0]["path"] == "templates[1]"
    assert "cannot have `supplement`" in caught.value.errors[0]["msg"]


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(RuleSetFormatError):
        parse_rule_set_yaml("- just a list")


def _problems(text: str) -> list[dict[str, str]]:
    return parse_rule_set_yaml(text).problems(analytes=ANALYTES, ratios=RATIOS)


@pytest.mark.parametrize(
    ("old", "new", "field", "fragment"),
    [
        ("add: [mg]", "add: [mgg]", "rules[1].add[0]", "unknown template"),
        (
            "analyte: magnesium, interpretation",
            "analyte: magnesum, interpretation",
            "rules[1].when",
            "unknown analyte",
        ),
        (
            "- not: {patient: {egfr_below: 30}}",
            "- medication: statin",
            "rules[1].when",
            "unknown medication class",
        ),
        (
            "- not: {patient: {egfr_below: 30}}",
            "- condition: gout",
            "rules[1].when",
            "unknown condition",
        ),
        (
            "- not: {patient: {egfr_below: 30}}",
            "- ratio: {code: fe_cu, interpretation: [H]}",
            "rules[1].when",
            "unknown ratio code",
        ),
        ("- id: mg-low", "- id: critical", "rules[1].id", "duplicate id"),
        ("    source: clinic\n", "", "rules[1].source", "numeric thresholds"),
        ("    source: ODS\n", "", "templates[1].source", "needs a source"),
        ("when: {critical: true}", "when: {critical: false}", "rules", "urgent referral"),
        (
            "referral: {to: emergency care, urgent: true}",
            "referral: {to: emergency care}",
            "rules",
            "urgent referral",
        ),
        (
            "- not: {patient: {egfr_below: 30}}",
            "- item: {mineral: iron}",
            "rules[1].when",
            "item atoms",
        ),
    ],
)
def test_problems_are_reported_with_their_field(
    old: str, new: str, field: str, fragment: str
) -> None:
    assert old in MINIMAL_YAML
    found = _problems(MINIMAL_YAML.replace(old, new, 1))
    assert any(p["field"] == field and fragment in p["message"] for p in found), found


def test_supplement_for_a_mineral_without_an_upper_limit_is_a_problem() -> None:
    text = MINIMAL_YAML.replace("mineral: magnesium, amount: 350", "mineral: zinc, amount: 40")
    found = _problems(text)
    assert any("no upper limit row for magnesium" in p["message"] for p in found)
