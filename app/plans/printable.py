"""The patient's printable treatment plan: one self-contained HTML page per plan version.

The clinician front-end reads a plan as JSON; the patient gets the same plan on paper. The page
speaks plain language only: no item, rule or template ids, no analyte or interpretation codes,
no category slugs. Plan text may come from clinicians, so the template autoescapes every string.
The page is self-contained (inline CSS, no scripts, fonts, images or links) because hospital
networks are often offline, and prints on A4.

The sentence helpers are pure functions so each wording is tested without a browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

import jinja2

from app.domain.plans.items import (
    Category,
    Herbal,
    PlanItem,
    Referral,
    Retest,
    SafetyFinding,
    Supplement,
    Timing,
)

TEMPLATES_PATH = Path(__file__).resolve().parent.parent / "templates"

PLAN_STATUSES = ("draft", "active", "completed", "revoked", "entered-in-error")

DRAFT_NOTICE = (
    "Draft \u2014 not yet approved by your clinician. "
    "Do not start anything on this plan until your clinician has approved it."
)
INVALID_NOTICE = "This plan is no longer valid"
URGENT_HEADING = "Please act on this first"
SAFETY_HEADING = "Good to know"

# Headings in the order the patient reads them: whom to see first, follow-up tests last.
CATEGORY_HEADINGS: tuple[tuple[Category, str], ...] = (
    (Category.REFERRAL, "Who to see"),
    (Category.SUPPLEMENT, "Supplements"),
    (Category.DIET, "Food and drink"),
    (Category.SLEEP_HYGIENE, "Sleep habits"),
    (Category.STRESS_MANAGEMENT, "Managing stress"),
    (Category.RELAXATION, "Relaxation"),
    (Category.HERBAL, "Herbal options"),
    (Category.RETEST, "Follow-up blood tests"),
)

ANALYTE_NAMES = {
    "magnesium": "magnesium",
    "magnesium-rbc": "magnesium in red blood cells",
    "calcium": "calcium",
    "calcium-ionized": "ionised calcium",
    "zinc": "zinc",
    "iron": "iron",
    "ferritin": "ferritin (iron stores)",
    "copper": "copper",
    "ca_mg_molar": "the calcium to magnesium balance",
    "zn_cu_molar": "the zinc to copper balance",
}

TIMING_WORDS: dict[Timing, str] = {
    "morning": "in the morning",
    "midday": "at midday",
    "evening": "in the evening",
    "bedtime": "at bedtime",
    "with-meals": "with meals",
    "between-meals": "between meals",
    "any": "at any time of day",
}

# Medication classes as a patient knows them (interaction advice names them).
MEDICATION_WORDS = {
    "tetracycline": "tetracycline antibiotics (such as doxycycline)",
    "fluoroquinolone": "quinolone antibiotics (such as ciprofloxacin)",
    "levothyroxine": "levothyroxine (thyroid medicine)",
    "bisphosphonate": "bisphosphonate bone medicine (such as alendronate)",
}

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, slots=True)
class PrintablePlan:
    """One plan version as the patient sees it; the plan service fills it from a stored plan.

    ``patient_label`` is whatever identifies the patient on paper (e.g. ``MRN-0042``).
    """

    patient_label: str
    birth_date: date | None
    status: str  # one of PLAN_STATUSES
    version: int
    created_at: datetime
    activated_at: datetime | None
    approved_by: str | None
    items: Sequence[PlanItem]
    findings: Sequence[SafetyFinding]
    clinic_name: str | None = None
    clinic_contact: str | None = None


@dataclass(frozen=True, slots=True)
class PrintedItem:
    title: str
    detail: str | None
    instruction: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class PrintedSection:
    heading: str
    items: tuple[PrintedItem, ...]


# --- sentences -------------------------------------------------------------------------------


def format_date(value: date | datetime) -> str:
    """``12 February 2027``: written out in English, whatever the server's locale."""
    day = value.date() if isinstance(value, datetime) else value
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def format_amount(amount: Decimal) -> str:
    """``200``, ``12.5``: no trailing zeros, never scientific notation."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def times_a_day(doses_per_day: int) -> str:
    if doses_per_day == 1:
        return "once a day"
    if doses_per_day == 2:
        return "twice a day"
    return f"{doses_per_day} times a day"


def duration_phrase(duration_days: int | None) -> str:
    """Whole weeks when the days divide by 7, otherwise days; none = until the next review."""
    if duration_days is None:
        return "until your next review"
    if duration_days % 7 == 0:
        weeks = duration_days // 7
        return f"for {weeks} week" if weeks == 1 else f"for {weeks} weeks"
    return f"for {duration_days} day" if duration_days == 1 else f"for {duration_days} days"


def analyte_name(code: str) -> str:
    """Plain words for an analyte code; an unknown code is shown with its hyphens as spaces."""
    return ANALYTE_NAMES.get(code, code.replace("-", " ").replace("_", " "))


def join_words(words: Sequence[str]) -> str:
    """``magnesium``, ``magnesium and calcium``, ``zinc, copper and iron``."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def supplement_sentence(supplement: Supplement) -> str:
    """``200 mg of magnesium (as magnesium glycinate), once a day, in the evening, for 12 weeks``"""
    return (
        f"{format_amount(supplement.dose)} {supplement.unit} of {supplement.mineral} "
        f"(as {supplement.form}), {times_a_day(supplement.doses_per_day)}, "
        f"{TIMING_WORDS[supplement.timing]}, {duration_phrase(supplement.duration_days)}"
    )


def herbal_sentence(herbal: Herbal) -> str:
    """``Chamomile (1 cup of tea), in the evening``."""
    name = herbal.name[:1].upper() + herbal.name[1:]
    preparation = f" ({herbal.preparation})" if herbal.preparation else ""
    return f"{name}{preparation}, {TIMING_WORDS[herbal.timing]}"


def retest_sentence(retest: Retest) -> str:
    """``Blood test for magnesium and calcium by 12 February 2027``."""
    names = list(dict.fromkeys(analyte_name(code) for code in retest.analytes))
    return f"Blood test for {join_words(names)} by {format_date(retest.due_date)}"


def referral_sentence(referral: Referral) -> str:
    """``See: nephrology``, with ``(urgent)`` when it cannot wait."""
    return f"See: {referral.to}" + (" (urgent)" if referral.urgent else "")


def item_detail(item: PlanItem) -> str | None:
    if item.supplement is not None:
        return supplement_sentence(item.supplement)
    if item.herbal is not None:
        return herbal_sentence(item.herbal)
    if item.retest is not None:
        return retest_sentence(item.retest)
    if item.referral is not None:
        return referral_sentence(item.referral)
    return None


def status_notice(plan: PrintablePlan) -> str:
    """The line under the heading that says whether the patient may act on this plan."""
    if plan.status == "draft":
        return DRAFT_NOTICE
    if plan.status in ("revoked", "entered-in-error"):
        return (
            f"{INVALID_NOTICE}. Please do not follow it; ask your clinician for your current plan."
        )
    if plan.status == "completed":
        return "This plan has been completed."
    if plan.status == "active":
        by = f" by {plan.approved_by}" if plan.approved_by else " by your clinician"
        on = f" on {format_date(plan.activated_at)}" if plan.activated_at else ""
        return f"Approved{by}{on}."
    raise ValueError(f"unknown plan status {plan.status!r}")


# --- page ------------------------------------------------------------------------------------


def is_urgent_referral(item: PlanItem) -> bool:
    return item.referral is not None and item.referral.urgent


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def item_title(item: PlanItem) -> str:
    """The heading of an item. A supplement's or herbal option's is built from its structured
    fields (form, timing), so an edited timing or form can never leave a stale title; other
    items keep the title they were written with."""
    if item.supplement is not None:
        supplement = item.supplement
        form = supplement.form
        what = (
            form if supplement.mineral.lower() in form.lower() else f"{supplement.mineral} ({form})"
        )
        return f"{_capitalized(what)} {TIMING_WORDS[supplement.timing]}"
    if item.herbal is not None:
        return f"{_capitalized(item.herbal.name)} {TIMING_WORDS[item.herbal.timing]}"
    return item.title


def printed_item(item: PlanItem) -> PrintedItem:
    return PrintedItem(
        title=item_title(item),
        detail=item_detail(item),
        instruction=item.instruction,
        note=(
            "This can make you drowsy."
            if item.herbal is not None and item.herbal.sedative
            else None
        ),
    )


def urgent_items(items: Iterable[PlanItem]) -> tuple[PrintedItem, ...]:
    """Urgent referrals, in priority order (they go in the box at the top of the page)."""
    urgent = sorted((item for item in items if is_urgent_referral(item)), key=_priority)
    return tuple(printed_item(item) for item in urgent)


def category_sections(items: Iterable[PlanItem]) -> tuple[PrintedSection, ...]:
    """The non-urgent items under friendly headings, in the fixed heading order."""
    remaining = [item for item in items if not is_urgent_referral(item)]
    sections = []
    for category, heading in CATEGORY_HEADINGS:
        in_category = sorted((i for i in remaining if i.category == category), key=_priority)
        if in_category:
            sections.append(PrintedSection(heading, tuple(printed_item(i) for i in in_category)))
    return tuple(sections)


def _interaction_parts(finding: SafetyFinding) -> tuple[str, str, str] | None:
    """(mineral, medication, advice) of a supplement x medication finding, whose message is
    ``"<Mineral> supplement with <medication>: <advice>"``; None for any other finding."""
    mineral, _, medication = finding.code.removeprefix("interaction:").partition("-")
    prefix = f"{mineral.capitalize()} supplement with {medication}: "
    if not medication or not finding.message.startswith(prefix):
        return None
    return mineral, medication, finding.message.removeprefix(prefix)


def safety_advice(findings: Iterable[SafetyFinding]) -> tuple[str, ...]:
    """Interaction warnings (they explain spacing doses apart); other findings stay clinical.

    One medication's advice is said once, naming every supplement it concerns (the safety
    engine reports each mineral x medication pair separately)."""
    by_advice: dict[tuple[str, str], list[str]] = {}
    plain: list[str] = []
    for finding in findings:
        if finding.severity != "warning" or not finding.code.startswith("interaction:"):
            continue
        parts = _interaction_parts(finding)
        if parts is None:
            plain.append(finding.message)
            continue
        mineral, medication, advice = parts
        minerals = by_advice.setdefault((medication, advice), [])
        if mineral not in minerals:
            minerals.append(mineral)
    lines = [
        f"If you take {MEDICATION_WORDS.get(medication, medication.replace('-', ' '))} "
        f"(with your {join_words(minerals)} "
        f"{'supplement' if len(minerals) == 1 else 'supplements'}): {_capitalized(advice)}"
        for (medication, advice), minerals in by_advice.items()
    ]
    return tuple(dict.fromkeys([*lines, *plain]))


def _priority(item: PlanItem) -> int:
    return item.priority


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_PATH),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_plan_html(view: PrintablePlan) -> str:
    """The complete HTML5 page for one plan version, ready to save, serve or print."""
    if view.status not in PLAN_STATUSES:
        raise ValueError(f"unknown plan status {view.status!r}")
    template = _environment().get_template("plan.html")
    return template.render(
        clinic_name=view.clinic_name,
        clinic_contact=view.clinic_contact,
        patient_label=view.patient_label,
        birth_date=format_date(view.birth_date) if view.birth_date else None,
        status=view.status,
        status_notice=status_notice(view),
        version=view.version,
        created_on=format_date(view.created_at),
        urgent_heading=URGENT_HEADING,
        urgent_items=urgent_items(view.items),
        sections=category_sections(view.items),
        safety_heading=SAFETY_HEADING,
        safety_advice=safety_advice(view.findings),
    )
