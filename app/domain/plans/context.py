"""The facts as rules and limits see them, after the rule set's cautious policies are applied.

Drafting and the safety engine both call `effective()` first, so the same facts always give the
same plan and the same findings:

- **Pregnancy not recorded.** A patient whose sex and age fall in the rule set's
  `pregnancy_unknown` band (shipped default: female, 12-55 y, clinic choice) is treated as
  possibly pregnant: `pregnant` becomes True with `pregnancy_assumed` set, so rules that avoid
  pregnancy avoid it and upper limits take the lower of the pregnancy and general rows. Outside
  the band an unrecorded pregnancy is treated as not pregnant.
- **Ratios only from results collected together.** A ratio is dropped unless its panel and the
  latest result of each of its analytes were collected within `ratio_window.hours` of each
  other (shipped default 24 h): a Ca:Mg ratio from an old panel never speaks for a newer
  magnesium.

`effective()` is idempotent.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from app.domain.plans.facts import PatientFacts, PlanFacts, RatioFact
from app.domain.plans.rules import PregnancyUnknownPolicy, RuleSetDocument

# The analytes each ratio is computed from (numerator, denominator), as in the range sets.
RATIO_ANALYTES: dict[str, tuple[str, ...]] = {
    "ca_mg_molar": ("calcium", "magnesium"),
    "zn_cu_molar": ("zinc", "copper"),
}


def possibly_pregnant(policy: PregnancyUnknownPolicy, patient: PatientFacts) -> bool:
    """Whether a patient with no recorded pregnancy is treated as possibly pregnant."""
    if patient.sex not in policy.sexes:
        return False
    age = patient.age_years
    if age is None:
        return policy.age_unknown == "possibly-pregnant"
    return policy.age_min_years <= age < policy.age_max_years


def effective_patient(rules: RuleSetDocument, patient: PatientFacts) -> PatientFacts:
    if patient.pregnant is not None:
        return patient
    if possibly_pregnant(rules.pregnancy_unknown, patient):
        return replace(patient, pregnant=True, pregnancy_assumed=True)
    return replace(patient, pregnant=False)


def usable_ratio(rules: RuleSetDocument, facts: PlanFacts, ratio: RatioFact) -> bool:
    """A ratio whose panel and the latest results of its analytes were collected together."""
    analytes = RATIO_ANALYTES.get(ratio.code)
    if analytes is None or ratio.collected_at is None:
        # Unknown makeup, or a plan stored before collection times were kept: only when the
        # latest results of the ratio's analytes all come from the ratio's own panel.
        return analytes is not None and all(
            (result := facts.result(analyte)) is not None and result.panel_id == ratio.panel_id
            for analyte in analytes
        )
    window = timedelta(hours=rules.ratio_window.hours)
    for analyte in analytes:
        result = facts.result(analyte)
        if result is None:
            return False
        if result.panel_id == ratio.panel_id:
            continue
        if abs(result.collected_at - ratio.collected_at) > window:
            return False
    return True


def effective(rules: RuleSetDocument, facts: PlanFacts) -> PlanFacts:
    patient = effective_patient(rules, facts.patient)
    ratios = tuple(ratio for ratio in facts.ratios if usable_ratio(rules, facts, ratio))
    if patient is facts.patient and ratios == facts.ratios:
        return facts
    return replace(facts, patient=patient, ratios=ratios)
