"""The facts a plan is drafted from, chosen from stored records (frozen into the plan document
as its `PlanBasis`, app/domain/plans/document.py).

A plan keeps the lab results, ratios, sleep score and patient context it was drafted from, so
it can always be explained and re-checked exactly; re-checks on edit refresh only the patient
context (a new medication or eGFR must reach the safety engine)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from app.domain.plans.facts import RatioFact, ResultFact
from app.domain.result_status import WITHDRAWN
from app.models.panel import Panel, Result

# The fields of a ResultFact that a stored result keeps under the same name.
_SAME_NAME = ("analyte", "interpretation", "critical", "comparator")


def result_fact(result: Result, panel: Panel) -> ResultFact:
    """A stored result as the plan rules see it."""
    return ResultFact(
        **{name: getattr(result, name) for name in _SAME_NAME},
        value=result.canonical_value,
        unit=result.canonical_unit,
        panel_id=str(panel.id),
        result_id=str(result.id),
        collected_at=panel.collected_at,
        reported=f"{result.value_text} {result.unit}",
        possibly_critical=bool(getattr(result, "possibly_critical", False)),
        status=getattr(result, "status", None) or "final",
    )


def latest_results(panels: Sequence[Panel]) -> tuple[tuple[ResultFact, ...], tuple[str, ...]]:
    """The most recent non-withdrawn result of each analyte across `panels` (newest first),
    and the panels they came from in the order given."""
    chosen: dict[str, ResultFact] = {}
    for panel in panels:
        for result in panel.results:
            if result.analyte in chosen or result.status in WITHDRAWN:
                continue
            chosen[result.analyte] = result_fact(result, panel)
    used = {fact.panel_id for fact in chosen.values()}
    return tuple(chosen.values()), tuple(str(p.id) for p in panels if str(p.id) in used)


def latest_ratios(panels: Sequence[Panel]) -> tuple[RatioFact, ...]:
    chosen: dict[str, RatioFact] = {}
    for panel in panels:
        for ratio in panel.ratios or ():
            code = ratio.get("code")
            if not code or code in chosen or ratio.get("value") is None:
                continue
            chosen[code] = RatioFact(
                code=code,
                value=Decimal(str(ratio["value"])),
                interpretation=ratio.get("interpretation"),
                panel_id=str(panel.id),
                collected_at=panel.collected_at,
            )
    return tuple(chosen.values())
