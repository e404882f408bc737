"""Every list under `/api/v1/patients/{patient_id}/...` takes its patient, page size and cursor
the same way (app.patients.deps.PatientQuery): a query it refuses is refused before any lookup,
an unknown patient is a 404 whatever else the request says, and a page is cut and linked to
the next one alike."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.builders import expect_problem, make_patient, post_panel, result

LISTS = {
    "panels": "/panels",
    "analyte history": "/analytes/magnesium/history",
    "ratio history": "/ratios/ca_mg_molar/history",
    "sleep assessments": "/sleep-assessments",
    "timeline": "/timeline",
    "series": "/series?analyte=magnesium",
    "context versions": "/context/versions",
    "plans": "/plans",
}


def _url(patient_id: str, name: str, **query: str) -> str:
    url = f"/api/v1/patients/{patient_id}{LISTS[name]}"
    if not query:
        return url
    joined = "&".join(f"{key}={value}" for key, value in query.items())
    return f"{url}{'&' if '?' in url else '?'}{joined}"


@pytest.mark.parametrize("name", LISTS)
def test_an_unknown_patient_is_404_even_with_a_cursor_this_api_never_issued(
    client: TestClient, name: str
) -> None:
    unknown = str(uuid.uuid4())

    expect_problem(client.get(_url(unknown, name)), 404, "not-found")
    expect_problem(client.get(_url(unknown, name, cursor="not-ours")), 404, "not-found")


@pytest.mark.parametrize("name", LISTS)
def test_a_page_size_out_of_bounds_is_422_before_the_patient_is_looked_up(
    client: TestClient, name: str
) -> None:
    for patient_id in (make_patient(client)["id"], str(uuid.uuid4())):
        problem = expect_problem(client.get(_url(patient_id, name, limit="0")), 422)
        assert "query.limit" in [error["field"] for error in problem["errors"]]


@pytest.mark.parametrize("name", LISTS)
def test_a_known_patient_with_a_foreign_cursor_is_400_invalid_cursor(
    client: TestClient, name: str
) -> None:
    patient = make_patient(client)

    expect_problem(client.get(_url(patient["id"], name, cursor="not-ours")), 400, "invalid-cursor")


@pytest.mark.parametrize("name", ["panels", "analyte history", "timeline", "series"])
def test_a_page_links_the_next_one_and_the_pages_cover_every_panel_once(
    client: TestClient, name: str
) -> None:
    patient = make_patient(client)
    for day in ("2026-01-05", "2026-02-05", "2026-03-05"):
        post_panel(
            client,
            patient,
            [result("magnesium", "1.9", "mg/dL"), result("calcium", "9.2", "mg/dL")],
            collected_at=f"{day}T08:00:00Z",
        )

    seen: list[str] = []
    url: str | None = _url(patient["id"], name, limit="2")
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(json.dumps(item, sort_keys=True) for item in body["items"])
        link = response.headers.get("link")
        if body["next_cursor"] is None:
            assert link is None
            url = None
        else:
            assert link is not None
            assert link.endswith('>; rel="next"')
            assert f"cursor={body['next_cursor']}" in link
            url = link[1 : link.index(">")]
    assert len(seen) == 3
    assert len(set(seen)) == 3
