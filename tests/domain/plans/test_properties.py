"""Property tests over generated patients, results, ratios, sleep and hand edits."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.plans.engine import draft
from app.domain.plans.facts import (
    CONDITIONS,
    DIET_PATTERNS,
    MEDICATION_CLASSES,
    PatientFacts,
    PlanFacts,
    RatioFact,
    ResultFact,
    SleepFact,
)
from app.domain.plans.items import PlanItem, SafetyFinding, Supplement
from app.domain.plans.safety import check, daily_totals, upper_limit
from tests.domain.plans import CANONICAL_UNITS, TODAY, default_rules, make_result

MINERALS = ("magnesium", "calcium", "zinc", "iron", "copper")
INTERACTING = ("tetracycline", "fluoroquinolone", "levothyroxine", "bisphosphonate")
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

patients = st.builds(
    PatientFacts,
    sex=st.sampled_from(["female", "male", "other", "unknown"]),
    age_years=st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
    pregnant=st.booleans(),
    lactating=st.booleans(),
    egfr=st.one_of(st.none(), st.integers(min_value=5, max_value=130).map(Decimal)),
    medications=st.frozensets(st.sampled_from(MEDICATION_CLASSES)),
    conditions=st.frozensets(st.sampled_from(CONDITIONS)),
    diet=st.one_of(st.none(), st.sampled_from(DIET_PATTERNS)),
    caffeine_servings_per_day=st.one_of(st.none(), st.integers(0, 12)),
    alcohol_drinks_per_week=st.one_of(st.none(), st.integers(0, 40)),
)


@st.composite
def results(draw: st.DrawFn) -> tuple[ResultFact, ...]:
    analytes = draw(st.sets(st.sampled_from(sorted(CANONICAL_UNITS))))
    facts = []
    for analyte in sorted(analytes):
        interpretation = draw(st.sampled_from(["L", "N", "H", "LL", "HH", "IND", None]))
        critical = interpretation in ("LL", "HH") and draw(st.booleans())
        value = draw(st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False))
        facts.append(make_result(analyte, str(value), interpretation, critical=critical))
    return tuple(facts)


ratios = st.lists(
    st.builds(
        RatioFact,
        code=st.sampled_from(["ca_mg_molar", "zn_cu_molar"]),
        value=st.one_of(st.none(), st.decimals(min_value=0, max_value=20, places=2)),
        interpretation=st.sampled_from(["L", "N", "H", None]),
        panel_id=st.just("panel-1"),
    ),
    max_size=2,
    unique_by=lambda ratio: ratio.code,
).map(tuple)


@st.composite
def sleeps(draw: st.DrawFn) -> SleepFact | None:
    total = draw(st.one_of(st.none(), st.integers(0, 28)))
    if total is None:
        return None
    category = "none" if total < 8 else "subthreshold" if total < 15 else "moderate"
    if total >= 22:
        category = "severe"
    return SleepFact(total=total, category=category, assessed_on=date(2026, 2, 1))


plan_facts = st.builds(
    PlanFacts,
    patient=patients,
    today=st.just(TODAY),
    results=results(),
    ratios=ratios,
    sleep=sleeps(),
)


@st.composite
def hand_supplement(draw: st.DrawFn, index: int) -> PlanItem:
    return PlanItem(
        id=f"hand.{index}",
        category="supplement",
        title="Clinician supplement",
        instruction="Take as directed.",
        rationale="Hand edit.",
        supplement=Supplement(
            mineral=draw(st.sampled_from(MINERALS)),
            form="clinician choice",
            dose=draw(st.decimals(min_value=Decimal("0.5"), max_value=600, places=1)),
            doses_per_day=draw(st.integers(1, 6)),
            timing="any",
            duration_days=draw(st.one_of(st.none(), st.integers(1, 365))),
        ),
    )


@st.composite
def edited_plans(draw: st.DrawFn) -> tuple[PlanFacts, tuple[PlanItem, ...]]:
    """A draft, then random hand edits: drop items, change doses, add supplements."""
    facts = draw(plan_facts)
    items = list(draft(default_rules(), facts).items)
    items = [item for item in items if draw(st.booleans()) or item.referral is not None]
    for position, item in enumerate(items):
        if item.supplement is not None and draw(st.booleans()):
            changed = item.supplement.model_copy(
                update={
                    "dose": draw(st.decimals(min_value=1, max_value=400, places=0)),
                    "doses_per_day": draw(st.integers(1, 6)),
                }
            )
            items[position] = item.model_copy(update={"supplement": changed})
    count = draw(st.integers(0, 4))
    items.extend(draw(hand_supplement(index)) for index in range(count))
    return facts, tuple(items)


def hard_stops(findings: tuple[SafetyFinding, ...]) -> list[SafetyFinding]:
    return [f for f in findings if f.severity == "blocking" and not f.overridable]


@PROPERTY_SETTINGS
@given(edited_plans())
def test_no_hard_stop_means_every_total_is_within_its_upper_limit(
    plan: tuple[PlanFacts, tuple[PlanItem, ...]],
) -> None:
    facts, items = plan
    findings = check(default_rules(), facts, items)
    if hard_stops(findings):
        return
    for mineral, total in daily_totals(items).items():
        limit = upper_limit(default_rules(), mineral, facts.patient)
        if limit is not None:
            assert total <= limit.amount


@PROPERTY_SETTINGS
@given(edited_plans())
def test_every_applicable_interaction_is_reported(
    plan: tuple[PlanFacts, tuple[PlanItem, ...]],
) -> None:
    facts, items = plan
    found = {f.code for f in check(default_rules(), facts, items)}
    supplemented = set(daily_totals(items))
    for mineral in supplemented & {"magnesium", "calcium", "zinc", "iron"}:
        for medication in INTERACTING:
            if medication in facts.patient.medications:
                assert f"interaction:{mineral}-{medication}" in found
    if {"calcium", "iron"} <= supplemented:
        assert "interaction:calcium-iron" in found


@PROPERTY_SETTINGS
@given(plan_facts)
def test_any_critical_result_puts_an_urgent_referral_first(facts: PlanFacts) -> None:
    result = draft(default_rules(), facts)
    if any(r.critical for r in facts.results):
        first = result.items[0]
        assert first.referral is not None
        assert first.referral.urgent
    else:
        assert not any(i.referral is not None and i.referral.urgent for i in result.items)


@PROPERTY_SETTINGS
@given(plan_facts)
def test_drafts_never_hit_a_hard_stop(facts: PlanFacts) -> None:
    result = draft(default_rules(), facts)
    assert hard_stops(check(default_rules(), facts, result.items)) == []
    assert len({item.id for item in result.items}) == len(result.items)
