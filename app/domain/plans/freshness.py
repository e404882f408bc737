"""Activation re-checks a plan against the present: results that arrived after it was drafted.

A plan is drafted from the facts of one moment. Before it is activated the service passes every
result of the patient that is not in the plan's basis and was collected after the basis (or
received after the plan was drafted). Then:

- a new **critical or possibly critical** result is a blocking finding (`new-critical-result`)
  that nothing but a new draft resolves: it can be neither overridden nor acknowledged, because
  the plan must start with the urgent referral it calls for;
- a **newer result for an analyte the plan relies on** (its basis results and its items'
  analytes) is a blocking finding (`newer-result:<analyte>`) until the plan is regenerated or a
  clinician acknowledges that result explicitly (its id in `acknowledge_results`);
- a plan marked for **review** (a result it rests on was withdrawn or corrected) is blocking
  (`basis-under-review`) until regenerated or the review is acknowledged.

All of these are built in: no rule set can switch them off.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from app.domain.plans.evaluation import describe_result
from app.domain.plans.facts import PlanFacts, ResultFact
from app.domain.plans.items import PlanItem, SafetyFinding

NEW_CRITICAL = "new-critical-result"
NEWER_RESULT = "newer-result"
UNDER_REVIEW = "basis-under-review"
_SOURCE = "Service policy: a plan is activated only on the results of the present."


def relied_analytes(facts: PlanFacts, items: Sequence[PlanItem]) -> set[str]:
    """The analytes a plan rests on: its basis results and what its items are about."""
    analytes = {result.analyte for result in facts.results}
    for item in items:
        analytes.update(item.analytes)
        if item.retest is not None:
            analytes.update(item.retest.analytes)
    return analytes


def _when(result: ResultFact) -> str:
    return result.collected_at.isoformat(timespec="minutes")


def check(
    facts: PlanFacts,
    items: Sequence[PlanItem],
    arrived: Sequence[ResultFact],
    *,
    acknowledged: Collection[str] = (),
    review_reason: str | None = None,
) -> list[SafetyFinding]:
    """Blocking findings about results that arrived after the plan's basis.

    `arrived`: results not in the basis, collected after it or received after drafting;
    `acknowledged`: result ids a clinician has acknowledged (never resolves a critical one).
    """
    findings: list[SafetyFinding] = []
    basis = {result.analyte: result for result in facts.results}
    critical = [r for r in arrived if r.needs_urgent_action]
    if critical:
        listed = "; ".join(f"{describe_result(r)} collected {_when(r)}" for r in critical)
        findings.append(
            SafetyFinding.hard_stop(
                NEW_CRITICAL,
                (
                    f"A result that arrived after this plan was drafted is critical or possibly "
                    f"critical ({listed}). Regenerate the plan so it starts with the urgent "
                    "referral; a new critical result can be neither overridden nor acknowledged."
                ),
                source=_SOURCE,
            )
        )
    relied = relied_analytes(facts, items)
    newer: dict[str, list[ResultFact]] = {}
    for result in arrived:
        if result.needs_urgent_action or result.result_id in acknowledged:
            continue
        if result.analyte not in relied:
            continue
        drafted = basis.get(result.analyte)
        if drafted is not None and result.collected_at <= drafted.collected_at:
            continue  # an older result that arrived late: not newer than the basis
        newer.setdefault(result.analyte, []).append(result)
    for analyte in sorted(newer):
        results = sorted(newer[analyte], key=lambda r: (r.collected_at, r.result_id))
        drafted = basis.get(analyte)
        was = (
            f"the {describe_result(drafted)} collected {_when(drafted)} it was drafted from"
            if drafted is not None
            else "no result of it when the plan was drafted"
        )
        listed = "; ".join(f"{describe_result(r)} collected {_when(r)}" for r in results)
        findings.append(
            SafetyFinding.hard_stop(
                f"{NEWER_RESULT}:{analyte}",
                (
                    f"A newer {analyte} result ({listed}) arrived after this plan was drafted; "
                    f"the plan relies on {analyte} and had {was}. Regenerate the plan, or "
                    "acknowledge the newer result(s) in `acknowledge_results` when activating."
                ),
                source=_SOURCE,
                result_ids=tuple(r.result_id for r in results),
            )
        )
    if review_reason:
        findings.append(
            SafetyFinding.hard_stop(
                UNDER_REVIEW,
                (
                    f"The plan needs review: {review_reason} Regenerate the plan, or acknowledge "
                    "the review (`acknowledge_review: true`) when activating."
                ),
                source=_SOURCE,
            )
        )
    return findings


def acknowledgeable(findings: Sequence[SafetyFinding]) -> set[str]:
    """The result ids these findings allow a clinician to acknowledge."""
    return {rid for f in findings for rid in (f.result_ids or ())}
