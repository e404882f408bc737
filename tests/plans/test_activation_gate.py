"""The activation gate the plan service applies, over generated plans and hand edits: whatever
a clinician overrides, a plan that passes the gate never exceeds an upper intake level, and a
plan with a critical result never passes without an urgent referral."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.domain.plans.facts import PlanFacts
from app.domain.plans.items import PlanItem
from app.domain.plans.safety import check, daily_totals, unresolved, upper_limit
from tests.domain.plans import default_rules
from tests.domain.plans.test_properties import PROPERTY_SETTINGS, edited_plans


@PROPERTY_SETTINGS
@given(edited_plans(), st.data())
def test_a_plan_that_can_be_activated_never_exceeds_an_upper_limit(
    plan: tuple[PlanFacts, tuple[PlanItem, ...]], data: st.DataObject
) -> None:
    facts, items = plan
    findings = check(default_rules(), facts, items)
    # The clinician overrides any subset of the findings, hard stops included (the service
    # refuses those overrides; the gate must hold even if one slipped through).
    chosen = data.draw(
        st.sets(st.sampled_from([f.code for f in findings]) if findings else st.nothing())
    )
    overrides = [{"code": code, "reason": "clinician judgement"} for code in chosen]

    if unresolved(findings, overrides):
        return
    for mineral, total in daily_totals(items).items():
        limit = upper_limit(default_rules(), mineral, facts.patient)
        if limit is not None:
            assert total <= limit.amount
    if any(result.critical for result in facts.results):
        assert any(i.referral is not None and i.referral.urgent for i in items)
