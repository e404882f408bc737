"""Draft a treatment plan from a rule set and the patient's facts: a pure function.

Rules are evaluated in priority order (then document order), on the facts after the rule set's
cautious policies (`context.effective`: pregnancy not recorded, ratios only from results
collected together). Each rule that holds adds its templates as items; a template proposed by two
rules becomes one item (the first rule by priority owns it, the rationale names both). Rules only
ever add items: no rule can remove another's item, so the urgent referral for a critical (or
possibly critical) result can never be suppressed.

Two generic checks then leave items out, each recorded as a finding that says why:

- a template the data marks unsafe in pregnancy (`avoid_in_pregnancy`, or a sedative or
  `avoid_in_pregnancy` herbal) is never drafted for a patient who is or may be pregnant;
- items about one mineral never contradict each other: when an item restricts a mineral
  (`restricts`: no extra intake; `no-supplements`), every item that goes against it (its
  supplements, its rich foods) is left out. The restriction wins: the cautious choice.

The result is always a draft for a clinician to approve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from app.domain.plans.context import effective
from app.domain.plans.evaluation import Match, evaluate
from app.domain.plans.facts import PlanFacts
from app.domain.plans.items import (
    CATEGORY_ORDER,
    PlanItem,
    Retest,
    SafetyFinding,
    conflicts,
    restrictions_of,
)
from app.domain.plans.rules import GenerationRule, ItemTemplate, RuleSetDocument

_RATIONALE_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class FiredRule:
    rule_id: str
    description: str
    findings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Draft:
    items: tuple[PlanItem, ...]
    fired: tuple[FiredRule, ...]
    # Items the rules proposed but the engine left out, and why (kept with the plan).
    omitted: tuple[SafetyFinding, ...] = ()


@dataclass(slots=True)
class _Proposal:
    rule: GenerationRule
    template: ItemTemplate
    match: Match
    sequence: int
    also: list[tuple[GenerationRule, Match]] = field(default_factory=list)


def draft(rules: RuleSetDocument, facts: PlanFacts) -> Draft:
    """The items the rule set proposes for these facts, and which rules fired and why."""
    facts = effective(rules, facts)
    templates = {template.id: template for template in rules.templates}
    ordered = sorted(enumerate(rules.rules), key=lambda pair: (pair[1].priority, pair[0]))
    fired: list[FiredRule] = []
    proposals: dict[str, _Proposal] = {}
    for _, rule in ordered:
        match = evaluate(rule.when, facts)
        if not match.ok:
            continue
        fired.append(FiredRule(rule.id, rule.description, match.findings))
        for template_id in rule.add:
            template = templates.get(template_id)
            if template is None:
                continue  # reported by RuleSetDocument.problems(); never guessed
            existing = proposals.get(template_id)
            if existing is not None:
                existing.also.append((rule, match))
            else:
                proposals[template_id] = _Proposal(rule, template, match, len(proposals))
    omitted: list[SafetyFinding] = []
    if facts.patient.pregnant:
        for template_id, proposal in list(proposals.items()):
            if proposal.template.unsafe_in_pregnancy:
                del proposals[template_id]
                omitted.append(_pregnancy_omission(proposal, facts))
    built = [(_build(proposal, facts), proposal.sequence) for proposal in proposals.values()]
    built.sort(key=lambda pair: (*_order(pair[0]), pair[1]))
    items, dropped = resolve_contradictions([item for item, _ in built])
    omitted.extend(dropped)
    return Draft(items=tuple(items), fired=tuple(fired), omitted=tuple(omitted))


def resolve_contradictions(
    items: list[PlanItem],
) -> tuple[list[PlanItem], list[SafetyFinding]]:
    """Leave out every item that goes against a restriction of the same mineral in the list."""
    restrictions = [(item, effect) for item in items for effect in restrictions_of(item)]
    kept: list[PlanItem] = []
    dropped: list[SafetyFinding] = []
    for item in items:
        against = [(r, e) for r, e in restrictions if r.id != item.id and conflicts(e, item)]
        if not against:
            kept.append(item)
            continue
        restriction, effect = against[0]
        dropped.append(
            SafetyFinding(
                code=f"contradiction-resolved:{effect.mineral}",
                severity="warning",
                message=(
                    f"{item.title!r} ({item.id}) was left out: it would add {effect.mineral} "
                    f"while {restriction.title!r} ({restriction.id}) asks the patient to "
                    + (
                        f"avoid extra {effect.mineral}"
                        if effect.effect == "restricts"
                        else f"take no {effect.mineral} supplement"
                    )
                    + ". A plan never holds contradictory items about one mineral; the "
                    "restriction wins."
                ),
                item_ids=(item.id, restriction.id),
                source="Service policy: no contradictory items about one mineral (cautious).",
            )
        )
    return kept, dropped


def _pregnancy_omission(proposal: _Proposal, facts: PlanFacts) -> SafetyFinding:
    template = proposal.template
    why = (
        "pregnancy is not recorded and the patient is treated as possibly pregnant (record "
        "pregnancy status in the clinical context, then regenerate)"
        if facts.patient.pregnancy_assumed
        else "the patient is pregnant"
    )
    return SafetyFinding(
        code=f"pregnancy-omitted:{template.id}",
        severity="warning",
        message=(
            f"{template.title!r} was not drafted: the rule set marks it unsafe in pregnancy "
            f"(sedative or avoid in pregnancy) and {why}."
        ),
        item_ids=(f"{proposal.rule.id}.{template.id}",),
        source=template.source or proposal.rule.source or "rule set data: avoid in pregnancy",
    )


def _order(item: PlanItem) -> tuple[int, int, int]:
    urgent = item.referral is not None and item.referral.urgent
    return (0 if urgent else 1, item.priority, CATEGORY_ORDER.index(item.category))


def _build(proposal: _Proposal, facts: PlanFacts) -> PlanItem:
    rule, template = proposal.rule, proposal.template
    retest = (
        Retest(
            analytes=tuple(template.retest.analytes),
            due_date=facts.today + timedelta(days=template.retest.due_in_days),
        )
        if template.retest is not None
        else None
    )
    return PlanItem(
        id=f"{rule.id}.{template.id}",
        category=template.category,
        title=template.title,
        instruction=template.instruction,
        rationale=_rationale(proposal),
        analytes=tuple(template.analytes),
        rule_id=rule.id,
        template_id=template.id,
        priority=rule.priority,
        supplement=template.supplement,
        herbal=template.herbal,
        retest=retest,
        referral=template.referral,
        source=template.source or rule.source,
        effects=tuple(template.effects),
    )


def _rationale(proposal: _Proposal) -> str:
    parts = [proposal.template.rationale.rstrip()]
    parts.append(f"Rule {proposal.rule.id}: {_findings(proposal.match)}.")
    for rule, match in proposal.also:
        parts.append(f"Also proposed by rule {rule.id}: {_findings(match)}.")
    text = " ".join(parts)
    if len(text) > _RATIONALE_LIMIT:
        text = text[: _RATIONALE_LIMIT - 1] + "…"
    return text


def _findings(match: Match) -> str:
    return "; ".join(match.findings) if match.findings else "no specific finding"
