"""POST /api/v1/panels through its direct entry point (app.panels.direct_post): a request that
needs nothing the route's dependencies would add is answered without FastAPI's route handling,
exactly as the route answers it; anything unusual is handed to the route with its body intact
and answered in the route's own words."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import fastapi.routing
import httpx
import orjson
import pytest

from app.auth import deps, service
from app.auth.principal import Role
from app.core.config import Settings
from app.core.db import transaction
from app.main import create_app
from app.panels import known_patients
from tests.builders import panel_body, result

RESULTS = [
    result("magnesium", "0.62", "mmol/L", flag="L"),
    result("calcium", "9.1", "mg/dL"),
    result("iron", "40", "ug/dL"),
]

Scenario = Callable[["Harness"], Awaitable[None]]


class Harness:
    """An app with the API-key cache on (the tests' default turns it off, which keeps every
    request on the routed path), an integration key, a known patient, and a count of the
    POSTs the route itself handled."""

    def __init__(self, client: httpx.AsyncClient, key: str, clinician_key: str) -> None:
        self.client = client
        self.key = key
        self.clinician_key = clinician_key
        self.routed = 0
        self.patient: dict[str, Any] = {}

    async def post(
        self,
        body: dict[str, Any] | None = None,
        *,
        content: bytes | AsyncIterator[bytes] | None = None,
        headers: Mapping[str, str | None] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bool]:
        """The response, and whether the route's handling answered it (a header given as None
        is not sent)."""
        before = self.routed
        every = {"Content-Type": "application/json", "X-API-Key": self.key, **(headers or {})}
        sent = {name: value for name, value in every.items() if value is not None}
        response = await self.client.post(
            "/api/v1/panels",
            json=body if content is None else None,
            content=content,
            headers=sent,
            params=params,
        )
        return response, self.routed > before


def _run(settings: Settings, monkeypatch: pytest.MonkeyPatch, scenario: Scenario) -> None:
    handle = fastapi.routing.APIRoute.handle

    async def main() -> None:
        app = create_app(settings.model_copy(update={"api_key_cache_seconds": 60}))
        async with app.router.lifespan_context(app):
            async with transaction(app.state.sessionmaker) as session:
                organization = await service.get_or_create_organization(
                    session, name=f"direct-{uuid.uuid4().hex[:10]}"
                )
                keys = [
                    await service.create_api_key(
                        session, organization_id=organization.id, role=role, name="direct"
                    )
                    for role in (Role.INTEGRATION, Role.CLINICIAN)
                ]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                harness = Harness(client, keys[0][1], keys[1][1])

                async def counted(
                    route: fastapi.routing.APIRoute, scope: Any, receive: Any, send: Any
                ) -> None:
                    if route.path == "/api/v1/panels" and scope["method"] == "POST":
                        harness.routed += 1
                    await handle(route, scope, receive, send)

                monkeypatch.setattr(fastapi.routing.APIRoute, "handle", counted)
                created = await client.post(
                    "/api/v1/patients",
                    json={
                        "identifiers": [{"system": "urn:direct", "value": uuid.uuid4().hex}],
                        "sex": "female",
                        "birth_date": "1981-04-12",
                    },
                    headers={"X-API-Key": harness.key},
                )
                assert created.status_code == 201, created.text
                harness.patient = created.json()
                # The routed path reads the key (caching it) and remembers the patient.
                warm, routed = await harness.post(panel_body(harness.patient, RESULTS))
                assert warm.status_code == 201, warm.text
                assert routed
                try:
                    await scenario(harness)
                finally:
                    for api_key, _token in keys:
                        deps.forget_api_key(api_key.id)

    asyncio.run(main())


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
