"""Plan rule sets through HTTP: the shipped set is active, imports are versioned and validated,
activation needs If-Match, and a new rule set never changes existing plans."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from fastapi.testclient import TestClient

from tests.builders import error_fields, expect_problem, make_patient
from tests.conftest import Database
from tests.plans.builders import (
    LOW_MAGNESIUM,
    draft_plan,
    post_recent_panel,
    supplements,
)

PATH = "/api/v1/plan-rule-sets"


def _active(client: TestClient) -> dict[str, Any]:
    response = client.get(f"{PATH}/active")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _with_magnesium_dose(document: dict[str, Any], dose: int) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    template = next(t for t in changed["templates"] if t["id"] == "magnesium-glycinate-evening")
    template["supplement"]["dose"] = dose
    return changed


def _import(client: TestClient, document: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = client.post(PATH, json=document, params=params)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_shipped_rule_set_is_active_with_sources(client: TestClient) -> None:
    active = _active(client)

    assert active["status"] == "active"
    assert active["version"] == 1
    document = active["document"]
    assert document["rules"]
    assert all(limit["source"] for limit in document["upper_limits"])
    assert any(rule["when"] == {"critical": True} for rule in document["rules"])


def test_a_new_rule_set_does_not_change_existing_plans_and_regeneration_says_so(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    old_plan = draft_plan(client, patient)
    active = _active(client)
    assert supplements(old_plan, "magnesium")[0]["supplement"]["dose"] == 200

    new_set = _import(client, _with_magnesium_dose(active["document"], 150), activate="true")

    assert new_set["version"] == 2
    assert new_set["status"] == "active"
    unchanged = client.get(f"/api/v1/plans/{old_plan['id']}").json()
    assert unchanged["rule_set"] == old_plan["rule_set"]
    assert unchanged["groups"] == old_plan["groups"]
    assert unchanged["version"] == 1

    response = client.post(f"/api/v1/plans/{old_plan['id']}/regenerate", json={})
    assert response.status_code == 201, response.text
    regenerated = response.json()
    assert regenerated["id"] != old_plan["id"]
    assert regenerated["status"] == "draft"
    assert regenerated["rule_set"]["version"] == 2
    assert regenerated["replaces_plan_id"] == old_plan["id"]
    assert regenerated["regenerated_from"]["rule_set"]["version"] == 1
    assert supplements(regenerated, "magnesium")[0]["supplement"]["dose"] == 150
    versions = client.get(f"/api/v1/plans/{regenerated['id']}/versions").json()["items"]
    assert versions[0]["change"] == "regenerated"
    assert client.get(f"/api/v1/plans/{old_plan['id']}").json()["status"] == "draft"


def test_yaml_imports_are_versioned_per_name(client: TestClient) -> None:
    document = _active(client)["document"] | {"name": "clinic-rules"}

    first = client.post(
        PATH, content=yaml.safe_dump(document), headers={"Content-Type": "application/yaml"}
    )
    second = client.post(PATH, json=document)

    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1
    assert first.json()["status"] == "draft"
    assert second.json()["version"] == 2
    listed = client.get(PATH).json()["items"]
    assert {(s["name"], s["version"]) for s in listed} >= {("clinic-rules", 1), ("clinic-rules", 2)}


def test_invalid_rule_sets_are_422_with_paths_and_store_nothing(
    client: TestClient, db: Database
) -> None:
    document = _active(client)["document"]
    before = db.count("plan_rule_set")
    unknown_template = copy.deepcopy(document)
    unknown_template["rules"][1]["add"] = ["no-such-template"]
    typo = copy.deepcopy(document)
    typo["rules"][1]["when"] = {"reslt": {"analyte": "magnesium"}}
    no_critical = copy.deepcopy(document)
    no_critical["rules"] = [r for r in document["rules"] if r["when"] != {"critical": True}]

    for bad in (unknown_template, typo, no_critical):
        problem = expect_problem(client.post(PATH, json=bad), 422, "invalid-rule-set")
        assert problem["errors"], problem
    assert any(
        "rules[1]" in field or "rules.1" in field
        for field in error_fields(
            expect_problem(client.post(PATH, json=unknown_template), 422, "invalid-rule-set")
        )
    )
    bad_yaml = client.post(
        PATH, content="name: [unclosed\n", headers={"Content-Type": "application/yaml"}
    )
    assert expect_problem(bad_yaml, 422, "invalid-rule-set")["errors"][0]["line"] in (1, 2)
    expect_problem(
        client.post(PATH, content="{not json", headers={"Content-Type": "application/json"}),
        400,
        "malformed-json",
    )
    expect_problem(
        client.post(PATH, content="a,b", headers={"Content-Type": "text/csv"}),
        415,
        "unsupported-media-type",
    )
    assert db.count("plan_rule_set") == before


def test_activation_needs_if_match(client: TestClient) -> None:
    created = _import(client, _active(client)["document"] | {"name": "spare"})
    path = f"{PATH}/{created['id']}/activate"

    expect_problem(client.post(path), 428)
    expect_problem(client.post(path, headers={"If-Match": '"stale"'}), 412)
    etag = client.get(f"{PATH}/{created['id']}").headers["ETag"]
    activated = client.post(path, headers={"If-Match": etag})

    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active"
    assert _active(client)["id"] == created["id"]


def test_only_admins_change_rule_sets(client: TestClient, api_keys: dict[str, Any]) -> None:
    keys = api_keys["default"]
    document = _active(client)["document"]

    for role in ("clinician", "integration"):
        response = client.post(PATH, json=document, headers={"X-API-Key": keys[role]})
        expect_problem(response, 403)
    expect_problem(client.get(PATH, headers={"X-API-Key": keys["integration"]}), 403)
    assert client.get(PATH, headers={"X-API-Key": keys["admin"]}).status_code == 200
    assert client.get(PATH, headers={"X-API-Key": keys["clinician"]}).status_code == 200
