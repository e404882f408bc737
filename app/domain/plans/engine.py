"""Draft a treatment plan from a rule set and the patient's facts: a pure function.

Rules are evaluated in priority order (then document order). Each rule that holds adds its
templates as items; a template proposed by two rules becomes one item (the first rule by priority
owns it, the rationale names both). Rules only ever add items: no rule can remove another's item,
so the urgent referral for a critical result can never be suppressed.

The result is always a draft for a clinician to approve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from app.domain.plans.evaluation import Match, evaluate
from app.domain.plans.facts import PlanFacts
from app.domain.plans.items import CATEGORY_ORDER, PlanItem, Retest
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


@dataclass(slots=True)
class _Proposal:
    rule: GenerationRule
    template: ItemTemplate
    match: Match
    sequence: int
    also: list[tuple[GenerationRule, Match]] = field(default_factory=list)


def draft(rules: RuleSetDocument, facts: PlanFacts) -> Draft:
    """The items the rule set proposes for these facts, and which rules fired and why."""
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
    built = [(_build(proposal, facts), proposal.sequence) for proposal in proposals.values()]
    built.sort(key=lambda pair: (*_order(pair[0]), pair[1]))
    return Draft(items=tuple(item for item, _ in built), fired=tuple(fired))


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
