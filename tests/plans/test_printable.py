"""The patient's printable plan: sentence helpers, the HTML, and the page as Chromium shows it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from app.domain.plans.items import (
    Category,
    Herbal,
    PlanItem,
    Referral,
    Retest,
    SafetyFinding,
    Supplement,
)
from app.plans.printable import (
    DRAFT_NOTICE,
    PrintablePlan,
    analyte_name,
    duration_phrase,
    format_amount,
    format_date,
    herbal_sentence,
    item_title,
    join_words,
    referral_sentence,
    render_plan_html,
    retest_sentence,
    safety_advice,
    supplement_sentence,
    times_a_day,
)
from tests.browser import Browser, browser_fixture  # noqa: F401  (provides `browser`)

PLAN_UUID = "0b7c1e2a-5d3f-4c8e-9a61-2f4d8e9b7c10"
MAGNESIUM_SENTENCE = (
    "200 mg of magnesium (as magnesium glycinate), once a day, in the evening, for 12 weeks"
)
INTERACTION_ADVICE = (
    "Take iron and calcium at least 2 hours apart: calcium reduces how much iron you absorb."
)
CLINICIAN_TEXT = "Note <script>alert(1)</script> & keep a sleep diary"


def make_item(
    *,
    id: str,
    category: Category,
    title: str,
    instruction: str = "Follow the instructions below.",
    rationale: str = "magnesium LL (ca_mg_molar high) per rule mg-low-01",
    analytes: tuple[str, ...] = (),
    rule_id: str | None = None,
    template_id: str | None = None,
    priority: int = 100,
    **detail: Any,
) -> PlanItem:
    return PlanItem(
        id=id,
        category=category,
        title=title,
        instruction=instruction,
        rationale=rationale,
        analytes=analytes,
        rule_id=rule_id,
        template_id=template_id,
        priority=priority,
        **detail,
    )


def make_supplement(
    *,
    mineral: Any = "magnesium",
    form: str = "magnesium glycinate",
    dose: str = "200",
    doses_per_day: int = 1,
    timing: Any = "evening",
    duration_days: int | None = 84,
) -> Supplement:
    return Supplement(
        mineral=mineral,
        form=form,
        dose=Decimal(dose),
        doses_per_day=doses_per_day,
        timing=timing,
        duration_days=duration_days,
    )


def make_view(
    *,
    items: Sequence[PlanItem] = (),
    findings: Sequence[SafetyFinding] = (),
    status: str = "draft",
    approved_by: str | None = None,
    activated_at: datetime | None = None,
    clinic_name: str | None = "Riverside Sleep Clinic",
) -> PrintablePlan:
    return PrintablePlan(
        patient_label="MRN-0042",
        birth_date=date(1981, 4, 12),
        status=status,
        version=3,
        created_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        activated_at=activated_at,
        approved_by=approved_by,
        items=items,
        findings=findings,
        clinic_name=clinic_name,
    )


def draft_plan_items() -> list[PlanItem]:
    # Deliberately out of display order: the renderer must put the urgent referral first.
    return [
        make_item(
            id="rule:mg-low-01:tpl-mg-glycinate",
            category=Category.SUPPLEMENT,
            title="Magnesium supplement",
            instruction="Take it with water after dinner.",
            analytes=("magnesium", "ca_mg_molar"),
            rule_id="mg-low-01",
            template_id="tpl-mg-glycinate",
            priority=10,
            supplement=make_supplement(),
        ),
        make_item(
            id="rule:fe-low-02:tpl-iron",
            category=Category.SUPPLEMENT,
            title="Iron supplement",
            instruction="Take it on an empty stomach if you can.",
            rule_id="fe-low-02",
            priority=20,
            supplement=make_supplement(
                mineral="iron", form="ferrous bisglycinate", dose="25", timing="morning"
            ),
        ),
        make_item(
            id="rule:ca-low-03:tpl-calcium",
            category=Category.SUPPLEMENT,
            title="Calcium supplement",
            instruction="Take it with your evening meal.",
            rule_id="ca-low-03",
            priority=30,
            supplement=make_supplement(
                mineral="calcium",
                form="calcium citrate",
                dose="500",
                doses_per_day=2,
                timing="with-meals",
                duration_days=None,
            ),
        ),
        make_item(
            id="rule:retest-01:tpl-retest",
            category=Category.RETEST,
            title="Check your levels again",
            instruction="Ask the lab for a fasting morning sample.",
            rule_id="retest-01",
            retest=Retest(analytes=("magnesium", "calcium"), due_date=date(2027, 2, 12)),
        ),
        make_item(
            id=f"clinician:{PLAN_UUID}",
            category=Category.SLEEP_HYGIENE,
            title="Sleep diary",
            instruction=CLINICIAN_TEXT,
        ),
        make_item(
            id="rule:crit-mg-00:tpl-urgent",
            category=Category.REFERRAL,
            title="See a kidney specialist",
            instruction="Your magnesium is very low. Book this appointment this week.",
            rule_id="crit-mg-00",
            priority=0,
            referral=Referral(to="nephrology", urgent=True),
        ),
    ]


def draft_plan_findings() -> list[SafetyFinding]:
    return [
        SafetyFinding(
            code="interaction:iron-calcium",
            severity="warning",
            message=INTERACTION_ADVICE,
            item_ids=("rule:fe-low-02:tpl-iron", "rule:ca-low-03:tpl-calcium"),
            source="NIH ODS iron fact sheet",
        ),
        SafetyFinding(
            code="upper-limit:magnesium",
            severity="info",
            message="Supplemental magnesium 200 mg/day is below the UL of 350 mg/day.",
            source="NIH ODS magnesium fact sheet",
        ),
        SafetyFinding(
            code="critical:magnesium",
            severity="warning",
            message="Critical magnesium (LL) has an urgent referral.",
            source="rule engine",
        ),
    ]


def draft_plan_view() -> PrintablePlan:
    return make_view(items=draft_plan_items(), findings=draft_plan_findings())


# --- sentence helpers (no browser) -----------------------------------------------------------


def test_supplement_sentence_is_written_out() -> None:
    assert supplement_sentence(make_supplement()) == MAGNESIUM_SENTENCE


@pytest.mark.parametrize(
    ("doses_per_day", "expected"),
    [(1, "once a day"), (2, "twice a day"), (3, "3 times a day"), (6, "6 times a day")],
)
def test_times_a_day_in_words(doses_per_day: int, expected: str) -> None:
    assert times_a_day(doses_per_day) == expected


@pytest.mark.parametrize(
    ("duration_days", "expected"),
    [
        (84, "for 12 weeks"),
        (7, "for 1 week"),
        (10, "for 10 days"),
        (1, "for 1 day"),
        (None, "until your next review"),
    ],
)
def test_duration_in_weeks_when_whole_otherwise_days(
    duration_days: int | None, expected: str
) -> None:
    assert duration_phrase(duration_days) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("200", "200"), ("200.000", "200"), ("12.500", "12.5"), ("0.5", "0.5"), ("1E+2", "100")],
)
def test_amount_without_trailing_zeros_or_exponent(amount: str, expected: str) -> None:
    assert format_amount(Decimal(amount)) == expected


def test_supplement_sentence_with_two_doses_and_no_end_date() -> None:
    supplement = make_supplement(
        mineral="calcium",
        form="calcium citrate",
        dose="500.000",
        doses_per_day=2,
        timing="with-meals",
        duration_days=None,
    )
    assert supplement_sentence(supplement) == (
        "500 mg of calcium (as calcium citrate), twice a day, with meals, until your next review"
    )


def test_dates_are_written_out_in_english() -> None:
    assert format_date(date(2027, 2, 12)) == "12 February 2027"
    assert format_date(date(2026, 1, 1)) == "1 January 2026"
    assert format_date(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == "31 December 2026"


def test_analytes_in_plain_words() -> None:
    assert analyte_name("ferritin") == "ferritin (iron stores)"
    assert analyte_name("ca_mg_molar") == "the calcium to magnesium balance"
    assert analyte_name("vitamin-b12") == "vitamin b12"


def test_join_words() -> None:
    assert join_words([]) == ""
    assert join_words(["zinc"]) == "zinc"
    assert join_words(["magnesium", "calcium"]) == "magnesium and calcium"
    assert join_words(["zinc", "copper", "iron"]) == "zinc, copper and iron"


def test_retest_sentence_names_the_analytes_and_the_date() -> None:
    retest = Retest(analytes=("magnesium", "calcium"), due_date=date(2027, 2, 12))
    assert retest_sentence(retest) == "Blood test for magnesium and calcium by 12 February 2027"
    ferritin = Retest(analytes=("ferritin", "iron", "ferritin"), due_date=date(2027, 3, 1))
    assert (
        retest_sentence(ferritin)
        == "Blood test for ferritin (iron stores) and iron by 1 March 2027"
    )


def test_herbal_and_referral_sentences() -> None:
    herbal = Herbal(name="chamomile", preparation="1 cup of tea", timing="bedtime")
    assert herbal_sentence(herbal) == "Chamomile (1 cup of tea), at bedtime"
    assert herbal_sentence(Herbal(name="Lavender")) == "Lavender, at any time of day"
    assert referral_sentence(Referral(to="nephrology")) == "See: nephrology"
    assert referral_sentence(Referral(to="emergency care", urgent=True)) == (
        "See: emergency care (urgent)"
    )


def test_only_interaction_warnings_become_patient_advice() -> None:
    assert safety_advice(draft_plan_findings()) == (INTERACTION_ADVICE,)


# --- the HTML (no browser) -------------------------------------------------------------------


def test_page_is_self_contained_html5() -> None:
    html = render_plan_html(draft_plan_view())
    assert html.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert '<meta charset="utf-8">' in html
    assert "<title>Riverside Sleep Clinic: Your treatment plan</title>" in html
    assert "@media print" in html
    assert "page-break-inside: avoid" in html
    lowered = html.lower()
    for external in ("<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import"):
        assert external not in lowered, external
    assert "http://" not in lowered
    assert "https://" not in lowered


class TagBalance(HTMLParser):
    """Checks that every element is closed in order (the parser does not validate nesting)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open, f"</{tag}> closes nothing"
        assert self.open.pop() == tag, f"</{tag}> closes the wrong element"


def test_every_element_is_closed_in_order() -> None:
    checker = TagBalance()
    checker.feed(render_plan_html(draft_plan_view()))
    checker.close()
    assert checker.open == []
    assert checker.seen[:4] == ["html", "head", "meta", "meta"]
    assert checker.seen.count("body") == 1
    assert checker.seen.count("title") == 1


def test_every_category_has_a_friendly_heading_in_the_fixed_order() -> None:
    one_of_each = [
        make_item(id=f"item-{category.value}", category=category, title=f"About {category.name}")
        for category in reversed(Category)
    ]
    one_of_each.append(
        make_item(
            id="herbal-1",
            category=Category.HERBAL,
            title="Chamomile",
            herbal=Herbal(name="chamomile", preparation="1 cup of tea", sedative=True),
        )
    )
    html = render_plan_html(make_view(items=one_of_each, status="completed"))
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert headings == [
        "Who to see",
        "Supplements",
        "Food and drink",
        "Sleep habits",
        "Managing stress",
        "Relaxation",
        "Herbal options",
        "Follow-up blood tests",
    ]
    assert "Chamomile (1 cup of tea), at any time of day" in html
    assert "This can make you drowsy." in html
    assert "This plan has been completed." in html
    for slug in (category.value for category in Category):
        assert f">{slug}<" not in html


def test_clinician_text_is_escaped() -> None:
    html = render_plan_html(draft_plan_view())
    assert "Note &lt;script&gt;alert(1)&lt;/script&gt; &amp; keep a sleep diary" in html


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown plan status"):
        render_plan_html(make_view(status="final"))


# --- the page as Chromium shows it -----------------------------------------------------------


@pytest.fixture(scope="module")
def draft_page_text(browser: Browser) -> str:
    return browser.rendered_text(render_plan_html(draft_plan_view()))


def test_draft_is_marked_at_the_top(draft_page_text: str) -> None:
    assert DRAFT_NOTICE in draft_page_text
    assert draft_page_text.index(DRAFT_NOTICE) < draft_page_text.index("Please act on this first")
    assert "Approved" not in draft_page_text


def test_urgent_referral_comes_before_the_supplements(draft_page_text: str) -> None:
    urgent = draft_page_text.index("Please act on this first")
    referral = draft_page_text.index("See: nephrology (urgent)")
    supplements = draft_page_text.index("Supplements")
    assert urgent < referral < supplements


def test_sections_follow_the_fixed_order(draft_page_text: str) -> None:
    headings = ["Supplements", "Sleep habits", "Follow-up blood tests", "Good to know"]
    positions = [draft_page_text.index(heading) for heading in headings]
    assert positions == sorted(positions)


def test_dose_retest_and_interaction_advice_are_written_out(draft_page_text: str) -> None:
    assert MAGNESIUM_SENTENCE in draft_page_text
    assert "Blood test for magnesium and calcium by 12 February 2027" in draft_page_text
    assert INTERACTION_ADVICE in draft_page_text
    assert "2027-02-12" not in draft_page_text
    assert "Date of birth\n12 April 1981" in draft_page_text


def test_clinician_script_is_shown_literally_and_not_run(browser: Browser) -> None:
    text = browser.rendered_text(render_plan_html(draft_plan_view()))
    assert CLINICIAN_TEXT in text
    assert browser.driver.find_elements(By.TAG_NAME, "script") == []
    # An alert would also have made the text lookup above raise UnexpectedAlertPresent.
    assert browser.driver.execute_script("return document.scripts.length") == 0


def test_no_internal_codes_reach_the_patient(draft_page_text: str) -> None:
    for code in (
        "rule:",
        "mg-low-01",
        "fe-low-02",
        "tpl-",
        "clinician:",
        "ca_mg_molar",
        "sleep-hygiene",
        "interaction:",
        "upper-limit",
        "critical:",
        "rule engine",
        "NIH ODS",
    ):
        assert code not in draft_page_text, code
    assert re.search(r"\bLL\b", draft_page_text) is None
    assert re.search(r"\b(L|H|HH)\b", draft_page_text) is None
    assert (
        re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", draft_page_text)
        is None
    )


def test_active_plan_shows_who_approved_it_and_when(browser: Browser) -> None:
    view = make_view(
        items=draft_plan_items()[:1],
        status="active",
        approved_by="Dr Ada Lovelace",
        activated_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    )
    text = browser.rendered_text(render_plan_html(view))
    assert "Approved by Dr Ada Lovelace on 21 November 2026." in text
    assert "Draft" not in text


@pytest.mark.parametrize("status", ["revoked", "entered-in-error"])
def test_withdrawn_plan_is_no_longer_valid(browser: Browser, status: str) -> None:
    text = browser.rendered_text(
        render_plan_html(make_view(items=draft_plan_items(), status=status))
    )
    assert "This plan is no longer valid" in text
    assert "Approved" not in text
    assert status not in text


def test_page_prints_to_pdf(browser: Browser) -> None:
    pdf = browser.printed_pdf(render_plan_html(draft_plan_view()))
    assert pdf.startswith(b"%PDF")
    assert len(pdf) > 1000


# --- patient-facing wording ------------------------------------------------------------------


def _interaction(mineral: str, medication: str, advice: str) -> SafetyFinding:
    """A supplement x medication finding as the safety engine words it."""
    return SafetyFinding(
        code=f"interaction:{mineral}-{medication}",
        severity="warning",
        message=f"{mineral.capitalize()} supplement with {medication}: {advice}",
        source="ODS fact sheets",
    )


def test_one_medications_spacing_advice_is_said_once_for_all_its_supplements() -> None:
    advice = "the supplement can stop levothyroxine from being absorbed. Take it 4 hours apart."
    findings = [
        _interaction(mineral, "levothyroxine", advice) for mineral in ("magnesium", "calcium")
    ]
    assert safety_advice(findings) == (
        "If you take levothyroxine (thyroid medicine) (with your magnesium and calcium "
        "supplements): The supplement can stop levothyroxine from being absorbed. "
        "Take it 4 hours apart.",
    )


def test_a_supplement_title_follows_its_edited_timing_and_form() -> None:
    edited = make_item(
        id="mg",
        category=Category.SUPPLEMENT,
        title="Magnesium glycinate in the evening",
        supplement=make_supplement(timing="bedtime"),
    )
    assert item_title(edited) == "Magnesium glycinate at bedtime"
    iron = make_item(
        id="fe",
        category=Category.SUPPLEMENT,
        title="Iron",
        supplement=make_supplement(mineral="iron", form="ferrous bisglycinate", timing="any"),
    )
    assert item_title(iron) == "Iron (ferrous bisglycinate) at any time of day"


def test_the_page_shows_the_clinic_and_its_contact() -> None:
    page = render_plan_html(
        replace(make_view(), clinic_name="Riverside Clinic", clinic_contact="Phone 555 0100")
    )
    assert "Riverside Clinic" in page
    assert page.count("Phone 555 0100") == 2
