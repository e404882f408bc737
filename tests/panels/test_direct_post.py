"""POST /api/v1/panels through its direct entry point (app.panels.direct_post): a request that
needs nothing the route's dependencies would add is answered without FastAPI's route handling,
exactly as the route answers it; anything unusual is handed to the route with its body intact
and answered in the route's own words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from app.core.config import Settings
from app.panels import known_patients
from tests.builders import panel_body, result
from tests.panels.direct_harness import RESULTS, Harness, route_dependencies
from tests.panels.direct_harness import run as _run


def _masked(response: httpx.Response) -> str:
    document = response.json()
    volatile = [document["id"], document["accession"], *(r["id"] for r in document["results"])]
    volatile += [str(v) for k, v in document.items() if k.endswith("_at") and k != "collected_at"]
    text = response.text
    for value in sorted({str(v) for v in volatile if v}, key=len, reverse=True):
        text = text.replace(value, "<v>")
    return text


def test_a_plain_post_is_answered_directly_and_as_the_route_answers_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        sent = panel_body(h.patient, RESULTS)
        direct, routed = await h.post(sent, headers={"Idempotency-Key": "d-1"})
        assert direct.status_code == 201, direct.text
        assert not routed
        # The same body the route answers (a JSON media type the direct entry leaves to it).
        via_route, routed = await h.post(
            panel_body(h.patient, RESULTS),
            headers={"Idempotency-Key": "d-2", "Content-Type": "application/vnd.panel+json"},
        )
        assert via_route.status_code == 201, via_route.text
        assert routed
        assert _masked(direct) == _masked(via_route)
        assert direct.headers["location"] == f"/api/v1/panels/{direct.json()['id']}"
        assert set(direct.headers) == set(via_route.headers)
        # Stored, readable, audited once; the key replays it byte for byte.
        read = await h.client.get(direct.headers["location"], headers={"X-API-Key": h.key})
        assert read.content == direct.content
        again, _ = await h.post(sent, headers={"Idempotency-Key": "d-1"})
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == direct.content

    _run(settings, monkeypatch, scenario)


def test_the_bearer_form_of_the_key_is_answered_directly_too(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        bearer = {"X-API-Key": None, "Authorization": f"Bearer {h.key}"}
        response, routed = await h.post(panel_body(h.patient, RESULTS), headers=bearer)
        assert response.status_code == 201, response.text
        assert not routed
        # Both headers (the route checks that they agree), or another scheme: the route's.
        both = {"Authorization": f"Bearer {h.key}"}
        response, routed = await h.post(panel_body(h.patient, RESULTS), headers=both)
        assert response.status_code == 201, response.text
        assert routed
        basic = {"X-API-Key": None, "Authorization": f"Basic {h.key}"}
        response, routed = await h.post(panel_body(h.patient, RESULTS), headers=basic)
        assert response.status_code == 401, response.text
        assert routed

    _run(settings, monkeypatch, scenario)


def test_anything_unusual_is_answered_by_the_route_in_its_own_words(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        body = panel_body(h.patient, RESULTS)
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"params": {"dry_run": "1"}}, 400, "unknown-query-parameter"),
            ({"headers": {"Content-Type": "text/plain"}}, 415, "unsupported-media-type"),
            ({"content": b'{"patient": '}, 400, "malformed-json"),
            ({"content": b""}, 422, "validation-error"),
            (
                {"body": panel_body(h.patient, [result("unobtainium", "1", "mg/dL")])},
                422,
                "",
            ),
            ({"headers": {"X-API-Key": h.clinician_key}}, 403, "forbidden"),
            ({"headers": {"X-API-Key": "mlk_nope_nope"}}, 401, "unauthorized"),
            ({"headers": {"Idempotency-Key": "k" * 300}}, 400, ""),
            ({"content": b"[" * 100_000 + b"]" * 100_000}, 0, ""),  # over the JSON limits
        ]
        for case, status, slug in cases:
            kwargs = dict(case)
            sent_body = kwargs.pop("body", body)
            response, routed = await h.post(sent_body, **kwargs)
            assert routed, case
            if status:
                assert response.status_code == status, (case, response.text)
            else:
                assert 400 <= response.status_code < 500, (case, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            if slug:
                assert response.json()["type"].endswith(slug), (case, response.text)

    _run(settings, monkeypatch, scenario)


def test_a_body_sent_in_pieces_is_read_whole_and_replayed_whole_to_the_route(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        async def pieces(raw: bytes) -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 7):
                yield raw[start : start + 7]

        good = orjson.dumps(panel_body(h.patient, RESULTS))
        response, routed = await h.post(content=pieces(good))
        assert response.status_code == 201, response.text
        assert not routed
        refused = orjson.dumps(panel_body(h.patient, [result("magnesium", "-1", "mg/dL")]))
        response, routed = await h.post(content=pieces(refused))
        assert routed
        assert response.status_code == 422, response.text

    _run(settings, monkeypatch, scenario)


def test_a_patient_this_process_does_not_know_yet_goes_through_the_route(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        known_patients.clear()
        first, routed = await h.post(panel_body(h.patient, RESULTS))
        assert first.status_code == 201, first.text
        assert routed
        second, routed = await h.post(panel_body(h.patient, RESULTS))
        assert second.status_code == 201, second.text
        assert not routed

    _run(settings, monkeypatch, scenario)


def test_the_route_solves_exactly_what_the_direct_entry_point_stands_in_for(
    settings: Settings,
) -> None:
    # app.panels.direct_post checks (or hands to the route) each of these: the app-wide query
    # and Content-Type checks, the audit draft, the key and its scope, the Idempotency-Key,
    # the body. A dependency added to the route must be mirrored there before this list is
    # updated.
    assert route_dependencies(settings, "POST", "/api/v1/panels") == [
        "_strict_request",
        "audit_create_panel",
        "require_panels_write",
        "  HTTPBearer",
        "  APIKeyHeader",
        "_deferred_idempotency ['idempotency_key']",
        "endpoint ['body']",
    ]
