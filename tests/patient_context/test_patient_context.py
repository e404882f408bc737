"""Patient clinical context: versioned writes with If-Match, coded output, strict validation,
and the facts the plan rules read."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.plans.facts import MEDICATION_CLASSES, PatientFacts
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.patient_context import repository
from app.patient_context.service import patient_facts
from app.patients import repository as patients
from tests.builders import error_fields, expect_problem, make_patient
from tests.conftest import Database

ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def _url(patient: dict[str, Any], suffix: str = "") -> str:
    return f"/api/v1/patients/{patient['id']}/context{suffix}"


def _context(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "pregnant": False,
        "lactating": False,
        "egfr": {"value": 52, "measured_on": "2026-10-02"},
        "medications": [
            {"code": "levothyroxine", "name": "Euthyrox", "since": "2019-03-01"},
            {"code": "proton-pump-inhibitor"},
        ],
        "conditions": [{"code": "chronic-kidney-disease", "since": "2024-05-01"}],
        "diet": "vegetarian",
        "caffeine_servings_per_day": 3,
        "alcohol_drinks_per_week": 2,
        "note": "Takes levothyroxine at 06:00.\nEmpty stomach.",
    }
    body.update(overrides)
    return body


def _record(client: TestClient, patient: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    response = client.put(_url(patient), json=_context(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_first_write_is_created_with_codes_expanded(client: TestClient) -> None:
    patient = make_patient(client)

    response = client.put(_url(patient), json=_context())

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == _url(patient, "/versions/1")
    etag = response.headers["ETag"]
    assert etag.startswith('"')  # strong
    assert patient["id"] in etag  # scoped to this patient's context
    assert (body["version"], body["patient_id"]) == (1, patient["id"])
    assert body["recorded_by"].startswith("key:")
    levothyroxine, ppi = body["medications"]
    assert levothyroxine == {
        "code": "levothyroxine",
        "display": "Levothyroxine",
        "coding": [{"system": ATC, "code": "H03AA01", "display": "levothyroxine sodium"}],
        "name": "Euthyrox",
        "since": "2019-03-01",
    }
    assert ppi["coding"][0]["code"] == "A02BC"
    assert ppi["name"] is None
    [ckd] = body["conditions"]
    assert ckd["coding"] == [
        {"system": SNOMED, "code": "709044004", "display": "Chronic kidney disease (disorder)"}
    ]
    assert body["diet"]["code"] == "vegetarian"
    assert body["egfr"]["value"] == 52
    assert body["egfr"]["unit"] == "mL/min/{1.73_m2}"
    assert body["egfr"]["coding"][0] == {
        "system": LOINC,
        "code": "98979-8",
        "display": "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in "
        "Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)",
    }
    assert body["note"] == "Takes levothyroxine at 06:00.\nEmpty stomach."
    read = client.get(_url(patient))
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["ETag"] == etag


def test_every_medication_class_has_atc_codes(client: TestClient) -> None:
    patient = make_patient(client)

    body = _record(client, patient, medications=[{"code": code} for code in MEDICATION_CLASSES])

    for medication in body["medications"]:
        assert medication["coding"], medication["code"]
        assert {coding["system"] for coding in medication["coding"]} == {ATC}


def test_a_later_write_needs_the_current_etag_and_appends_a_version(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    _record(client, patient)
    first_etag = client.get(_url(patient)).headers["ETag"]
    changed = _context(diet="vegan", medications=[])

    missing = client.put(_url(patient), json=changed)
    stale = client.put(_url(patient), json=changed, headers={"If-Match": '"7"'})
    expect_problem(missing, 428, "precondition-required")
    expect_problem(stale, 412, "precondition-failed")
    assert db.count("patient_context") == 1

    updated = client.put(_url(patient), json=changed, headers={"If-Match": first_etag})

    assert updated.status_code == 200, updated.text
    assert updated.headers["ETag"] != first_etag
    assert client.get(_url(patient)).headers["ETag"] == updated.headers["ETag"]
    assert (updated.json()["version"], updated.json()["diet"]["code"]) == (2, "vegan")
    assert updated.json()["medications"] == []
    assert db.count("patient_context") == 2
    assert client.get(_url(patient)).json() == updated.json()
    first = client.get(_url(patient, "/versions/1"))
    assert first.status_code == 200
    assert (first.json()["version"], first.json()["diet"]["code"]) == (1, "vegetarian")
    # The ETag read before the second write is stale now.
    expect_problem(
        client.put(_url(patient), json=_context(), headers={"If-Match": first_etag}),
        412,
        "precondition-failed",
    )


def test_if_match_on_the_first_write_is_a_failed_precondition(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)

    response = client.put(_url(patient), json=_context(), headers={"If-Match": "*"})

    expect_problem(response, 412, "precondition-failed")
    assert db.count("patient_context") == 0


def test_versions_are_listed_newest_first_across_pages(client: TestClient) -> None:
    patient = make_patient(client)
    first = client.put(_url(patient), json=_context())
    assert first.status_code == 201, first.text
    etag = first.headers["ETag"]
    for version in range(1, 5):
        response = client.put(
            _url(patient),
            json=_context(caffeine_servings_per_day=version),
            headers={"If-Match": etag},
        )
        assert response.status_code == 200, response.text
        etag = response.headers["ETag"]

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(_url(patient, "/versions"), params=params)
        assert page.status_code == 200, page.text
        seen.extend(item["version"] for item in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert seen == [5, 4, 3, 2, 1]


def test_a_patient_without_a_context_has_none_to_read(client: TestClient) -> None:
    patient = make_patient(client)

    expect_problem(client.get(_url(patient)), 404, "context-not-recorded")
    expect_problem(client.get(_url(patient, "/versions/1")), 404, "not-found")
    listed = client.get(_url(patient, "/versions"))
    assert listed.status_code == 200
    assert listed.json()["items"] == []


def test_an_unknown_patient_is_not_found(client: TestClient, db: Database) -> None:
    unknown = {"id": str(uuid.uuid4())}

    expect_problem(client.put(_url(unknown), json=_context()), 404, "not-found")
    expect_problem(client.get(_url(unknown)), 404, "not-found")
    expect_problem(client.get(_url(unknown, "/versions")), 404, "not-found")
    assert db.count("patient_context") == 0


def test_pregnant_for_a_male_patient_is_refused(client: TestClient, db: Database) -> None:
    patient = make_patient(client, sex="male")

    response = client.put(_url(patient), json=_context(pregnant=True))

    problem = expect_problem(response, 422, "context-inconsistent")
    assert "male" in problem["detail"]
    assert error_fields(problem) == ["body.pregnant"]
    assert db.count("patient_context") == 0


@pytest.mark.parametrize("sex", ["female", "other", "unknown"])
def test_pregnant_is_accepted_unless_the_patient_is_recorded_as_male(
    client: TestClient, sex: str
) -> None:
    patient = make_patient(client, sex=sex)

    assert _record(client, patient, pregnant=True)["pregnant"] is True


FUTURE = (date.today() + timedelta(days=2)).isoformat()

INVALID: dict[str, tuple[dict[str, Any], list[str]]] = {
    "an unknown field": ({"smoker": True}, ["body.smoker"]),
    "a server-owned field": ({"version": 3}, ["body.version"]),
    "an unknown medication class": (
        {"medications": [{"code": "statin"}]},
        ["body.medications[0].code"],
    ),
    "a medication class twice": (
        {"medications": [{"code": "levothyroxine"}, {"code": "levothyroxine", "name": "x"}]},
        ["body.medications"],
    ),
    "a condition twice": (
        {"conditions": [{"code": "malabsorption"}, {"code": "malabsorption"}]},
        ["body.conditions"],
    ),
    "too many medications": (
        {"medications": [{"code": "levothyroxine"}] * 31},
        ["body.medications"],
    ),
    "an unknown condition": ({"conditions": [{"code": "gout"}]}, ["body.conditions[0].code"]),
    "an unknown diet": ({"diet": "carnivore"}, ["body.diet"]),
    "an eGFR of 0": ({"egfr": {"value": 0, "measured_on": "2026-01-01"}}, ["body.egfr.value"]),
    "an eGFR above 200": (
        {"egfr": {"value": 201, "measured_on": "2026-01-01"}},
        ["body.egfr.value"],
    ),
    "an eGFR measured in the future": (
        {"egfr": {"value": 60, "measured_on": FUTURE}},
        ["body.egfr.measured_on"],
    ),
    "an eGFR without a date": ({"egfr": {"value": 60}}, ["body.egfr.measured_on"]),
    "a medication started in the future": (
        {"medications": [{"code": "levothyroxine", "since": FUTURE}]},
        ["body.medications[0].since"],
    ),
    "31 coffees a day": ({"caffeine_servings_per_day": 31}, ["body.caffeine_servings_per_day"]),
    "negative alcohol": ({"alcohol_drinks_per_week": -1}, ["body.alcohol_drinks_per_week"]),
    "a NUL in the note": ({"note": "a\u0000b"}, ["body.note"]),
}


@pytest.mark.parametrize(("overrides", "fields"), INVALID.values(), ids=INVALID.keys())
def test_an_invalid_context_is_refused_naming_the_field(
    client: TestClient, db: Database, overrides: dict[str, Any], fields: list[str]
) -> None:
    patient = make_patient(client)

    problem = expect_problem(
        client.put(_url(patient), json=_context(**overrides)), 422, "validation-error"
    )

    assert error_fields(problem) == fields
    assert db.count("patient_context") == 0


def test_an_empty_body_records_an_unknown_context(client: TestClient) -> None:
    patient = make_patient(client)

    response = client.put(_url(patient), json={})

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["pregnant"], body["egfr"], body["diet"], body["medications"]) == (
        None,
        None,
        None,
        [],
    )


def test_integration_keys_cannot_read_or_write_the_context(
    client: TestClient, api_keys: dict[str, dict[str, str]]
) -> None:
    patient = make_patient(client)
    integration = {"X-API-Key": api_keys["default"]["integration"]}

    expect_problem(client.put(_url(patient), json=_context(), headers=integration), 403)
    expect_problem(client.get(_url(patient), headers=integration), 403)


# --- what the plan rules read -------------------------------------------------------------


def _facts(db: Database, patient_id: str, today: date) -> PatientFacts:
    async def go(session: AsyncSession) -> PatientFacts:
        patient = await patients.get_plain(
            session, organization_id=DEFAULT_ORGANIZATION_ID, patient_id=uuid.UUID(patient_id)
        )
        assert patient is not None
        context = await repository.current(
            session, organization_id=DEFAULT_ORGANIZATION_ID, patient_id=patient.id
        )
        return patient_facts(patient, context, today=today)

    return db.in_session(go)


def test_patient_facts_hold_the_current_context(client: TestClient, db: Database) -> None:
    patient = make_patient(client, sex="female", birth_date="1981-04-12")
    _record(client, patient, diet="vegetarian")
    response = client.put(
        _url(patient),
        json=_context(
            pregnant=True, diet="vegan", egfr={"value": 44.5, "measured_on": "2026-09-01"}
        ),
        headers={"If-Match": client.get(_url(patient)).headers["ETag"]},
    )
    assert response.status_code == 200, response.text

    facts = _facts(db, patient["id"], date(2026, 11, 25))

    assert facts == PatientFacts(
        sex="female",
        age_years=45,
        pregnant=True,
        lactating=False,
        egfr=Decimal("44.5"),
        egfr_measured_on=date(2026, 9, 1),
        medications=frozenset({"levothyroxine", "proton-pump-inhibitor"}),
        conditions=frozenset({"chronic-kidney-disease"}),
        diet="vegan",
        caffeine_servings_per_day=3,
        alcohol_drinks_per_week=2,
    )


@pytest.mark.parametrize(
    ("today", "age"),
    [(date(2026, 4, 11), 44), (date(2026, 4, 12), 45), (date(1981, 4, 12), 0)],
)
def test_age_is_whole_years_at_the_given_day(
    client: TestClient, db: Database, today: date, age: int
) -> None:
    patient = make_patient(client, birth_date="1981-04-12")

    assert _facts(db, patient["id"], today).age_years == age


def test_patient_facts_without_a_context_or_birth_date_are_the_defaults(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client, sex="other", birth_date=None)

    assert _facts(db, patient["id"], date(2026, 11, 25)) == PatientFacts(
        sex="other", age_years=None
    )


def test_unknown_pregnancy_reads_as_not_pregnant(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    _record(client, patient, pregnant=None, lactating=None)

    facts = _facts(db, patient["id"], date(2026, 11, 25))

    assert (facts.pregnant, facts.lactating) == (False, False)
