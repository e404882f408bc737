"""FHIR search as a real client uses it (fhirpy, a project this service does not use), against
the service running under uvicorn: every listed parameter is applied with FHIR semantics,
unknown ones are refused under strict handling, and the `self` link shows only what applied."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound
from sqlalchemy import text

from app.core.config import Settings
from app.main import create_app
from tests.builders import make_patient, post_panel, result
from tests.conftest import DEFAULT_ORGANIZATION, Database


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/fhir/R4"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fhir(base_url: str, api_keys: dict[str, dict[str, str]]) -> SyncFHIRClient:
    key = api_keys[DEFAULT_ORGANIZATION]["clinician"]
    return SyncFHIRClient(base_url, extra_headers={"X-API-Key": key})


def _headers(fhir: SyncFHIRClient) -> dict[str, str]:
    return dict(fhir.extra_headers or {})


def _two_patients(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    woman = make_patient(client, sex="female")
    man = make_patient(client, sex="male", birth_date="1990-02-03")
    post_panel(
        client,
        woman,
        [result("magnesium", "1.9", "mg/dL"), result("calcium", "9.2", "mg/dL")],
        collected_at="2026-11-01T08:00:00Z",
    )
    post_panel(client, woman, [result("zinc", "80", "ug/dL")], collected_at="2026-11-10T08:00:00Z")
    post_panel(client, man, [result("magnesium", "0.8", "mmol/L")])
    return woman, man


def test_id_finds_exactly_one_patient_with_fhirpy_get(
    client: TestClient, fhir: SyncFHIRClient
) -> None:
    woman, man = _two_patients(client)

    found = fhir.resources("Patient").search(_id=woman["id"]).get()
    assert found["id"] == woman["id"]
    with pytest.raises(MultipleResourcesFound):
        fhir.resources("Patient").search(_id=f"{woman['id']},{man['id']}").get()


def test_gender_and_birthdate_filter_patients(client: TestClient, fhir: SyncFHIRClient) -> None:
    woman, man = _two_patients(client)

    men = fhir.resources("Patient").search(gender="male").fetch_all()
    assert [p["id"] for p in men] == [man["id"]]
    born = fhir.resources("Patient").search(birthdate__ge="1990-01-01").fetch_all()
    assert [p["id"] for p in born] == [man["id"]]


@pytest.mark.parametrize(
    "reference",
    ["Patient/{id}", "{id}", "{base}/Patient/{id}"],
)
def test_subject_and_patient_take_every_reference_form(
    client: TestClient, fhir: SyncFHIRClient, base_url: str, reference: str
) -> None:
    woman, _ = _two_patients(client)
    value = reference.format(id=woman["id"], base=base_url)

    by_subject = fhir.resources("Observation").search(subject=value).fetch_all()
    by_patient = fhir.resources("Observation").search(patient=value).fetch_all()
    assert len(by_subject) == len(by_patient) == 3
    assert {o["subject"]["reference"] for o in by_subject} == {f"Patient/{woman['id']}"}


def test_count_is_a_count_only_bundle(client: TestClient, fhir: SyncFHIRClient) -> None:
    woman, _ = _two_patients(client)

    assert fhir.resources("Observation").search(patient=woman["id"]).count() == 3
    bundle = httpx.get(
        f"{fhir.url}/Observation",
        params={"patient": woman["id"], "_summary": "count"},
        headers=_headers(fhir),
    ).json()
    assert bundle["total"] == 3
    assert "entry" not in bundle


def test_code_finds_results_by_loinc_and_by_our_code(
    client: TestClient, fhir: SyncFHIRClient
) -> None:
    woman, _ = _two_patients(client)

    for code in ("http://loinc.org|19123-9", "2601-3", "19123-9"):
        found = fhir.resources("Observation").search(patient=woman["id"], code=code).fetch_all()
        assert len(found) == 1, code


def test_sort_and_include(client: TestClient, fhir: SyncFHIRClient) -> None:
    woman, _ = _two_patients(client)

    oldest_first = (
        fhir.resources("Observation").search(patient=woman["id"]).sort("date").fetch_all()
    )
    times = [o["effectiveDateTime"] for o in oldest_first]
    assert times == sorted(times)
    bundle = httpx.get(
        f"{fhir.url}/Observation",
        params={"patient": woman["id"], "_include": "Observation:patient"},
        headers=_headers(fhir),
    ).json()
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]]
    assert modes.count(("Patient", "include")) == 1
    assert modes.count(("Observation", "match")) == 3


def test_unknown_parameters_strict_is_400_lenient_is_left_out_of_self(
    client: TestClient, fhir: SyncFHIRClient
) -> None:
    woman, _ = _two_patients(client)
    url = f"{fhir.url}/Observation"
    params = {"patient": woman["id"], "colour": "blue"}

    strict = httpx.get(url, params=params, headers={**_headers(fhir), "Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert "colour" in strict.json()["issue"][0]["diagnostics"]

    lenient = httpx.get(url, params=params, headers=_headers(fhir)).json()
    self_link = next(link["url"] for link in lenient["link"] if link["relation"] == "self")
    assert dict(parse_qsl(urlsplit(self_link).query)) == {"patient": woman["id"]}
    outcome = lenient["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    assert "colour" in outcome["resource"]["issue"][0]["diagnostics"]


def test_post_search_matches_get(client: TestClient, fhir: SyncFHIRClient) -> None:
    woman, _ = _two_patients(client)
    url = f"{fhir.url}/Observation"
    got = httpx.get(url, params={"patient": woman["id"]}, headers=_headers(fhir)).json()
    posted = httpx.post(
        f"{url}/_search", data={"patient": woman["id"]}, headers=_headers(fhir)
    ).json()
    assert [e["resource"]["id"] for e in posted["entry"]] == [
        e["resource"]["id"] for e in got["entry"]
    ]


def test_xml_is_406_and_reads_carry_an_etag(client: TestClient, fhir: SyncFHIRClient) -> None:
    woman, _ = _two_patients(client)
    url = f"{fhir.url}/Patient/{woman['id']}"

    xml = httpx.get(url, headers={**_headers(fhir), "Accept": "application/fhir+xml"})
    assert xml.status_code == 406
    assert httpx.get(url, params={"_format": "xml"}, headers=_headers(fhir)).status_code == 406
    read = httpx.get(url, headers=_headers(fhir))
    assert read.headers["ETag"] == f'W/"{read.json()["meta"]["versionId"]}"'


def test_every_search_entry_has_a_full_url(client: TestClient, fhir: SyncFHIRClient) -> None:
    _two_patients(client)
    for resource_type in ("Patient", "Observation", "DiagnosticReport", "ObservationDefinition"):
        bundle = httpx.get(f"{fhir.url}/{resource_type}", headers=_headers(fhir)).json()
        assert bundle["entry"], resource_type
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("http://127.0.0.1"), (resource_type, entry)


def test_a_search_audits_every_patient_it_returned(
    client: TestClient, fhir: SyncFHIRClient, db: Database
) -> None:
    woman, man = _two_patients(client)

    async def last_seq(session: Any) -> int:
        return int((await session.execute(text("SELECT MAX(seq) FROM audit_event"))).scalar())

    before = db.in_session(last_seq)
    bundle = httpx.get(f"{fhir.url}/Observation", headers=_headers(fhir)).json()
    assert bundle["total"] == 4

    async def searched(session: Any) -> list[str]:
        rows = await session.execute(
            text(
                "SELECT CAST(patient_id AS TEXT) FROM audit_event WHERE seq > :before "
                "AND action = 'search' AND resource_type = 'observation' ORDER BY seq"
            ),
            {"before": before},
        )
        return [str(uuid.UUID(str(row[0]))) for row in rows]

    assert sorted(db.in_session(searched)) == sorted([woman["id"], man["id"]])
