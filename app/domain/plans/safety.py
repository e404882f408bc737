"""Safety checks on any list of plan items: drafted, hand-edited, or both.

Findings come from five places:

- upper limits (built in, never overridable): the elemental daily total per mineral against the
  patient's tolerable upper intake level from the rule set (`upper-limit:<mineral>`);
- critical results (built in, never overridable): a critical or possibly critical result with no
  urgent referral item (`critical-without-urgent-referral`);
- contradictions (built in, never overridable): an item that restricts a mineral beside an item
  that adds it (`contradiction:<mineral>`), e.g. after a hand edit;
- the rule set's ``interactions``: one finding per supplemented mineral x medication class;
- the rule set's ``safety_rules``: conditions over the facts and the items (``overridable:
  false`` makes a rule's finding a hard stop).

Checks run on the facts after the rule set's cautious policies (`context.effective`).

Findings are ordered blocking, warning, info, then by code and item ids, so the same inputs always
give the same list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from app.domain.plans.context import effective, effective_patient
from app.domain.plans.evaluation import describe_result, evaluate
from app.domain.plans.facts import PatientFacts, PlanFacts
from app.domain.plans.items import PlanItem, SafetyFinding, conflicts, restrictions_of
from app.domain.plans.rules import RuleSetDocument, UpperLimitRow

_SEVERITY_RANK = {"blocking": 0, "warning": 1, "info": 2}
_MINERAL_ORDER = ("magnesium", "calcium", "zinc", "iron", "copper")


@dataclass(frozen=True, slots=True)
class UpperLimit:
    """The tolerable upper intake level that applies to one patient, with why and from where."""

    mineral: str
    amount: Decimal
    unit: Literal["mg"]
    applies_to: str
    source: str


def daily_totals(items: Sequence[PlanItem]) -> dict[str, Decimal]:
    """Elemental mg/day per mineral: dose x doses per day, summed over items with a supplement."""
    totals: dict[str, Decimal] = {}
    for item in items:
        if item.supplement is not None:
            mineral = item.supplement.mineral
            totals[mineral] = totals.get(mineral, Decimal(0)) + item.supplement.daily_amount
    return totals


def upper_limit(rules: RuleSetDocument, mineral: str, patient: PatientFacts) -> UpperLimit | None:
    """The patient's limit for a mineral, or None when no row applies.

    Pregnancy (lactation) rows replace the general rows for pregnant (lactating) patients; rows for
    the patient's sex beat sex-independent rows; among rows still equal, the lowest limit wins.
    With no age on record every age band is considered, so the lowest limit applies. A patient
    treated as possibly pregnant (pregnancy not recorded) gets the lower of the pregnancy and the
    general rows.
    """
    patient = effective_patient(rules, patient)
    pool = _limit_pool(rules, mineral, patient)
    if not pool:
        return None
    # Rows for the patient's sex beat sex-independent rows.
    pool = [row for row in pool if row.sex is not None] or pool
    chosen: UpperLimitRow = min(pool, key=lambda row: row.amount)
    return UpperLimit(
        mineral=mineral,
        amount=chosen.amount,
        unit="mg",
        applies_to=_applies_to(chosen, patient),
        source=chosen.source,
    )


def _limit_pool(rules: RuleSetDocument, mineral: str, patient: PatientFacts) -> list[UpperLimitRow]:
    """The rows that may apply: the patient's life-stage rows, else the general rows."""
    rows = [
        row
        for row in rules.upper_limits
        if row.mineral == mineral
        and (row.sex is None or row.sex == patient.sex)
        and (patient.age_years is None or row.covers_age(patient.age_years))
    ]
    stages = {"pregnancy"} if patient.pregnant else set()
    if patient.lactating:
        stages.add("lactation")
    staged = [row for row in rows if row.life_stage in stages]
    general = [row for row in rows if row.life_stage is None]
    if patient.pregnancy_assumed:
        # Possibly pregnant: the lower of the pregnancy and the general rows.
        return staged + general
    return staged or general


def _applies_to(chosen: UpperLimitRow, patient: PatientFacts) -> str:
    applies_to = chosen.applies_to
    if patient.pregnancy_assumed:
        applies_to = (
            f"pregnancy not recorded, so the lower of the pregnancy and general limits: "
            f"{applies_to}"
        )
    if patient.age_years is None:
        applies_to = f"age not on record, so the lowest limit of any age band: {applies_to}"
    return applies_to


def check(
    rules: RuleSetDocument, facts: PlanFacts, items: Sequence[PlanItem]
) -> tuple[SafetyFinding, ...]:
    """Every safety finding for these items and facts, blocking first."""
    items = tuple(items)
    facts = effective(rules, facts)
    return ordered(
        [
            *_upper_limit_findings(rules, facts.patient, items),
            *_critical_findings(rules, facts, items),
            *_contradiction_findings(items),
            *_interaction_findings(rules, facts.patient, items),
            *_rule_findings(rules, facts, items),
        ]
    )


def unresolved(
    findings: Sequence[SafetyFinding], overrides: Sequence[Mapping[str, Any]]
) -> list[SafetyFinding]:
    """Blocking findings that no (allowed) override resolves: hard stops always stay."""
    overridden = {o["code"] for o in overrides}
    return [
        f
        for f in findings
        if f.severity == "blocking" and (not f.overridable or f.code not in overridden)
    ]


def ordered(findings: Sequence[SafetyFinding]) -> tuple[SafetyFinding, ...]:
    """Findings without duplicates, blocking first, then by code and item ids."""
    unique = {(f.code, f.item_ids, f.severity, f.message): f for f in findings}
    return tuple(
        sorted(unique.values(), key=lambda f: (_SEVERITY_RANK[f.severity], f.code, f.item_ids))
    )


def _contradiction_findings(items: tuple[PlanItem, ...]) -> list[SafetyFinding]:
    findings: list[SafetyFinding] = []
    for restriction in items:
        for effect in restrictions_of(restriction):
            against = [i for i in items if i.id != restriction.id and conflicts(effect, i)]
            if not against:
                continue
            what = (
                f"asks the patient to avoid extra {effect.mineral}"
                if effect.effect == "restricts"
                else f"asks the patient to take no {effect.mineral} supplement"
            )
            titles = ", ".join(f"{i.title!r} ({i.id})" for i in against)
            findings.append(
                SafetyFinding.hard_stop(
                    f"contradiction:{effect.mineral}",
                    (
                        f"{restriction.title!r} ({restriction.id}) {what}, but the plan also "
                        f"has {titles}. Remove the item(s) that add {effect.mineral} (or the "
                        "restriction, if it no longer applies); no override can activate a "
                        "plan that contradicts itself."
                    ),
                    item_ids=(restriction.id, *(i.id for i in against)),
                    source="Service policy: no contradictory items about one mineral.",
                )
            )
    return findings


def _upper_limit_findings(
    rules: RuleSetDocument, patient: PatientFacts, items: tuple[PlanItem, ...]
) -> list[SafetyFinding]:
    findings: list[SafetyFinding] = []
    totals = daily_totals(items)
    for mineral in sorted(totals, key=_mineral_rank):
        total = totals[mineral]
        item_ids = _supplement_ids(items, mineral)
        limit = upper_limit(rules, mineral, patient)
        if limit is None:
            findings.append(
                SafetyFinding(
                    code=f"upper-limit-unknown:{mineral}",
                    severity="blocking",
                    overridable=True,
                    message=(
                        f"No tolerable upper intake level for {mineral} applies to this patient "
                        f"in rule set {rules.name!r}, so the {_amount(total)} mg/day in this plan "
                        "cannot be checked. A clinician must confirm the dose."
                    ),
                    item_ids=item_ids,
                    source=f"rule set {rules.name!r}: upper_limits",
                )
            )
        elif total > limit.amount:
            findings.append(
                SafetyFinding.hard_stop(
                    f"upper-limit:{mineral}",
                    (
                        f"Total elemental {mineral} from supplements in this plan is "
                        f"{_amount(total)} mg/day, above the tolerable upper intake level of "
                        f"{_amount(limit.amount)} mg/day ({limit.applies_to}). Lower a dose or "
                        "remove an item; no override can activate this plan."
                    ),
                    item_ids=item_ids,
                    source=limit.source,
                )
            )
    return findings


def _critical_findings(
    rules: RuleSetDocument, facts: PlanFacts, items: tuple[PlanItem, ...]
) -> list[SafetyFinding]:
    critical = [result for result in facts.results if result.needs_urgent_action]
    if not critical:
        return []
    if any(item.referral is not None and item.referral.urgent for item in items):
        return []
    listed = "; ".join(describe_result(result) for result in critical)
    return [
        SafetyFinding.hard_stop(
            "critical-without-urgent-referral",
            (
                f"Critical or possibly critical result(s) ({listed}) but no urgent referral in "
                "the plan. Add an urgent referral; no override can activate this plan."
            ),
            item_ids=(),
            source=(
                "Service policy: a critical result needs prompt clinical action (critical "
                "limits come from the reference range applied to each result)."
            ),
        )
    ]


def _interaction_findings(
    rules: RuleSetDocument, patient: PatientFacts, items: tuple[PlanItem, ...]
) -> list[SafetyFinding]:
    findings: list[SafetyFinding] = []
    for interaction in rules.interactions:
        for mineral in interaction.minerals:
            item_ids = _supplement_ids(items, mineral)
            if not item_ids:
                continue
            for medication in interaction.medications:
                if medication not in patient.medications:
                    continue
                findings.append(
                    SafetyFinding(
                        code=f"interaction:{mineral}-{medication}",
                        severity=interaction.severity,
                        message=(
                            f"{mineral.capitalize()} supplement with {medication}: "
                            f"{interaction.message}"
                        ),
                        item_ids=item_ids,
                        source=interaction.source,
                    )
                )
    return findings


def _rule_findings(
    rules: RuleSetDocument, facts: PlanFacts, items: tuple[PlanItem, ...]
) -> list[SafetyFinding]:
    findings: list[SafetyFinding] = []
    for rule in rules.safety_rules:
        match = evaluate(rule.when, facts, items)
        if not match.ok:
            continue
        item_suffixes = tuple(f"({item_id})" for item_id in match.item_ids)
        context = [text for text in match.findings if not text.endswith(item_suffixes)]
        message = rule.message.rstrip()
        if context:
            message += f" ({'; '.join(context)})"
        findings.append(
            SafetyFinding(
                code=rule.code,
                severity=rule.severity,
                overridable=rule.overridable,
                message=message,
                item_ids=match.item_ids,
                source=rule.source,
            )
        )
    return findings


def _supplement_ids(items: tuple[PlanItem, ...], mineral: str) -> tuple[str, ...]:
    """The ids of the plan's supplement items of `mineral`, in plan order."""
    return tuple(
        item.id
        for item in items
        if item.supplement is not None and item.supplement.mineral == mineral
    )


def _mineral_rank(mineral: str) -> tuple[int, str]:
    rank = _MINERAL_ORDER.index(mineral) if mineral in _MINERAL_ORDER else len(_MINERAL_ORDER)
    return (rank, mineral)


def _amount(value: Decimal) -> str:
    return format(value.normalize(), "f")
