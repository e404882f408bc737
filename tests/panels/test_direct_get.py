"""GET /api/v1/panels/{panel_id} through its direct entry point (app.panels.direct_get): a read
that needs nothing the route's dependencies would add is answered without FastAPI's route
handling, exactly as the route answers it and audited exactly as the route audits it; anything
unusual is answered by the route in its own words."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.audit import service as audit_service
from app.auth import deps, service
from app.auth.principal import Role
from app.core.config import Settings
from app.core.db import transaction
from app.panels import hot
from tests.panels.direct_harness import Harness, route_dependencies
from tests.panels.direct_harness import run as _run

_VOLATILE_HEADERS = {"date", "x-request-id"}


def _same_answer(first: httpx.Response, second: httpx.Response) -> None:
    assert first.status_code == second.status_code
    assert first.content == second.content
    assert {k: v for k, v in first.headers.items() if k not in _VOLATILE_HEADERS} == {
        k: v for k, v in second.headers.items() if k not in _VOLATILE_HEADERS
    }


async def _reads(h: Harness, panel_id: str) -> list[dict[str, Any]]:
    """The panel's audit rows of reads, oldest first."""
    async with transaction(h.app.state.sessionmaker) as session:
        rows = await session.execute(
            text(
                "SELECT organization_id, principal_id, principal_kind, role, action, "
                "resource_type, resource_id, patient_id, outcome, status_code, method, path, "
                "client_address FROM audit_event "
                "WHERE resource_id = :id AND action = 'read' ORDER BY seq"
            ),
            {"id": panel_id},
        )
        return [dict(row._mapping) for row in rows]


async def _chain_verifies(h: Harness) -> bool:
    async with transaction(h.app.state.sessionmaker) as session:
        return (await audit_service.verify(session)).ok


def test_a_plain_read_is_answered_directly_as_the_route_answers_it_and_audited_the_same(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        panel_id = h.panel["id"]
        # An upper-case id is the same panel to the route, which parses it itself.
        via_route, routed = await h.get(panel_id.upper())
        assert via_route.status_code == 200, via_route.text
        assert routed
        direct, routed = await h.get(panel_id)
        assert direct.status_code == 200, direct.text
        assert not routed
        _same_answer(direct, via_route)
        assert direct.json() == h.panel
        # The clinician's key (once the route has read it) and the bearer form of a key are
        # answered directly too.
        clinician_key = {"X-API-Key": h.clinician_key}
        first_use, routed = await h.get(panel_id, headers=clinician_key)
        assert routed
        clinician, routed = await h.get(panel_id, headers=clinician_key)
        assert not routed
        _same_answer(clinician, first_use)
        bearer = {"X-API-Key": None, "Authorization": f"Bearer {h.key}"}
        by_bearer, routed = await h.get(panel_id, headers=bearer)
        assert not routed
        _same_answer(clinician, direct)
        _same_answer(by_bearer, direct)
        # Every read has its one audit row, naming the panel's patient: the direct ones as
        # the routed one (the upper-case path is the one the client asked for).
        rows = await _reads(h, panel_id)
        assert len(rows) == 5
        for row in rows:
            assert uuid.UUID(str(row["patient_id"])) == uuid.UUID(h.panel["patient_id"])
            assert (row["outcome"], row["status_code"]) == ("success", 200)
        assert [row["path"] for row in rows] == [
            f"/api/v1/panels/{panel_id.upper()}",
            *[f"/api/v1/panels/{panel_id}"] * 4,
        ]
        same_but_path = [{k: v for k, v in row.items() if k != "path"} for row in rows]
        assert same_but_path[0] == same_but_path[1] == same_but_path[4]
        assert same_but_path[2] == same_but_path[3]
        assert rows[0]["principal_id"] != rows[2]["principal_id"]
        assert await _chain_verifies(h)

    _run(settings, monkeypatch, scenario)


def test_anything_unusual_is_answered_by_the_route_in_its_own_words(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        panel_id = h.panel["id"]
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            (panel_id, {"params": {"fields": "id"}}, 400, "unknown-query-parameter"),
            (panel_id, {"headers": {"X-API-Key": "mlk_nope_nope"}}, 401, "unauthorized"),
            (panel_id, {"headers": {"X-API-Key": None}}, 401, "unauthorized"),
            (
                panel_id,
                {"headers": {"Authorization": f"Basic {h.key}", "X-API-Key": None}},
                401,
                "",
            ),
            (str(uuid.uuid4()), {}, 404, "not-found"),
            ("not-a-uuid", {}, 422, "validation-error"),
            (panel_id.replace("-", ""), {}, 200, ""),
            ("{" + panel_id + "}", {}, 0, ""),
        ]
        for path_id, kwargs, status, slug in cases:
            response, routed = await h.get(path_id, **kwargs)
            assert routed, (path_id, kwargs)
            if status:
                assert response.status_code == status, (path_id, kwargs, response.text)
            if response.status_code != 200:
                assert 400 <= response.status_code < 500, (path_id, kwargs, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
            else:
                assert response.json() == h.panel
            if slug:
                assert response.json()["type"].endswith(slug), (path_id, response.text)
        # Both headers: the route checks that they agree.
        both = {"Authorization": f"Bearer {h.key}"}
        response, routed = await h.get(panel_id, headers=both)
        assert routed
        assert response.status_code == 200, response.text
        assert await _chain_verifies(h)

    _run(settings, monkeypatch, scenario)


def test_a_panel_or_key_this_process_has_not_seen_goes_through_the_route_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        panel_id = h.panel["id"]
        hot._panel_patient.clear()
        first, routed = await h.get(panel_id)
        assert first.status_code == 200, first.text
        assert routed  # the plain path reads the panel, and notes its patient
        second, routed = await h.get(panel_id)
        assert not routed
        _same_answer(first, second)
        # A key whose cached verification was dropped (revoked elsewhere, expired) is read
        # again by the route before anything is answered.
        deps._verified.clear()
        third, routed = await h.get(panel_id)
        assert routed
        _same_answer(third, second)
        fourth, routed = await h.get(panel_id)
        assert not routed

    _run(settings, monkeypatch, scenario)


def test_a_wrong_remembered_patient_is_left_to_the_route_and_never_reaches_the_trail(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        panel_id = uuid.UUID(h.panel["id"])
        engine = h.app.state.engine
        hot.remember_patient(engine, h.organization_id, panel_id, uuid.uuid4())

        response, routed = await h.get(str(panel_id))

        assert routed  # the direct read found no such (organization, panel, patient)
        assert response.status_code == 200, response.text
        assert response.json() == h.panel
        [row] = await _reads(h, str(panel_id))
        assert uuid.UUID(str(row["patient_id"])) == uuid.UUID(h.panel["patient_id"])
        again, routed = await h.get(str(panel_id))  # the route noted the right patient
        assert not routed
        assert again.content == response.content
        assert await _chain_verifies(h)

    _run(settings, monkeypatch, scenario)


def test_a_role_that_may_not_read_panels_is_refused_by_the_route(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        async with transaction(h.app.state.sessionmaker) as session:
            api_key, token = await service.create_api_key(
                session, organization_id=h.organization_id, role=Role.ADMIN, name="direct-admin"
            )
        try:
            for _ in range(2):  # the second time the key is cached: still the route's 403
                response, routed = await h.get(h.panel["id"], headers={"X-API-Key": token})
                assert routed
                assert response.status_code == 403, response.text
                assert response.json()["type"].endswith("forbidden")
        finally:
            deps.forget_api_key(api_key.id)

    _run(settings, monkeypatch, scenario)


def test_a_database_failure_on_the_direct_read_is_the_routes_503(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> None:
        async def refused(*_args: Any) -> str | None:
            raise ConnectionRefusedError("the database went away")

        read_along, read_along_sqlite = hot.read_along, hot.read_along_sqlite
        monkeypatch.setattr(hot, "read_along", refused)
        monkeypatch.setattr(hot, "read_along_sqlite", refused)
        direct, routed = await h.get(h.panel["id"])
        assert not routed
        via_route, routed = await h.get(h.panel["id"].upper())
        assert routed
        for response in (direct, via_route):
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "retry-after" in response.headers
        assert direct.json()["type"] == via_route.json()["type"]
        monkeypatch.setattr(hot, "read_along", read_along)
        monkeypatch.setattr(hot, "read_along_sqlite", read_along_sqlite)
        again, routed = await h.get(h.panel["id"])
        assert again.status_code == 200, again.text
        assert not routed

    _run(settings, monkeypatch, scenario)


def test_the_route_solves_exactly_what_the_direct_entry_point_stands_in_for(
    settings: Settings,
) -> None:
    # app.panels.direct_get checks (or hands to the route) each of these: the app-wide query
    # check, the audit draft, the key and its scope, the canonical panel id. A dependency
    # added to the route must be mirrored there before this list is updated.
    assert route_dependencies(settings, "GET", "/api/v1/panels/{panel_id}") == [
        "_strict_request",
        "audit_read_panel",
        "require_panels_read",
        "  HTTPBearer",
        "  APIKeyHeader",
        "endpoint ['panel_id']",
    ]
