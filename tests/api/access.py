"""Shared helpers for the access-control tests: the default organization's records, the keys of
both organizations, and the strings that must never reach another organization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from app.models.organization import DEFAULT_ORGANIZATION_ID
from tests.builders import MRN_SYSTEM, make_patient, post_panel, result
from tests.conftest import DEFAULT_ORGANIZATION, OTHER_ORGANIZATION

ROLES = ("integration", "clinician", "admin")
ORGANIZATIONS = (DEFAULT_ORGANIZATION, OTHER_ORGANIZATION)
RANGE_SOURCE = "https://example.org/access-control-ranges"

Keys = dict[str, dict[str, str]]


def key_header(keys: Keys, org: str, role: str) -> dict[str, str]:
    return {"X-API-Key": keys[org][role]}


def range_set_document(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": RANGE_SOURCE,
        "rows": [
            {
                "analyte": "magnesium",
                "specimen": "serum",
                "age_min_years": 18,
                "unit": "mmol/L",
                "low": 0.75,
                "high": 1.0,
                "source": RANGE_SOURCE,
            }
        ],
    }


@dataclass
class Records:
    """One of everything in the default organization, made through the API by its own keys."""

    patient: dict[str, Any]
    mrn: str
    panel: dict[str, Any]
    draft_range_set: dict[str, Any]
    active_range_set_id: str
    spare_key_id: str
    key_ids: list[str]
    plan: dict[str, Any]
    active_rule_set_id: str
    # Default-organization data that must never appear in another organization's responses.
    secrets: set[str] = field(default_factory=set)

    @property
    def patient_id(self) -> str:
        value: str = self.patient["id"]
        return value

    @property
    def panel_id(self) -> str:
        value: str = self.panel["id"]
        return value


def make_records(client: TestClient, keys: Keys) -> Records:
    """A patient with a panel and a draft plan, a draft range set, and a spare key, all in the
    default org."""
    mrn = f"MRN-AC-{uuid.uuid4().hex[:10]}"
    patient = make_patient(client, mrn=mrn)
    accession = f"ACC-AC-{uuid.uuid4().hex[:10]}"
    panel = post_panel(
        client,
        patient,
        [result("magnesium", "0.62", "mmol/L"), result("zinc", "71", "ug/dL")],
        accession=accession,
    )
    imported = client.post(
        "/api/v1/range-sets", json=range_set_document(f"ac-{uuid.uuid4().hex[:8]}")
    )
    assert imported.status_code == 201, imported.text
    active = client.get("/api/v1/range-sets/active")
    assert active.status_code == 200, active.text
    spare = client.post("/api/v1/api-keys", json={"name": "spare", "role": "clinician"})
    assert spare.status_code == 201, spare.text
    listed = client.get("/api/v1/api-keys", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    key_ids = [item["id"] for item in listed.json()["items"]]
    plan = client.post(f"/api/v1/patients/{patient['id']}/plans", json={"panel_ids": [panel["id"]]})
    assert plan.status_code == 201, plan.text
    rule_set = client.get("/api/v1/plan-rule-sets/active")
    assert rule_set.status_code == 200, rule_set.text
    records = Records(
        patient=patient,
        mrn=mrn,
        panel=panel,
        draft_range_set=imported.json(),
        active_range_set_id=active.json()["id"],
        spare_key_id=spare.json()["id"],
        key_ids=key_ids,
        plan=plan.json(),
        active_rule_set_id=rule_set.json()["id"],
    )
    records.secrets = {
        str(DEFAULT_ORGANIZATION_ID),
        records.patient_id,
        mrn,
        f"{MRN_SYSTEM}|{mrn}",
        records.panel_id,
        accession,
        *(r["id"] for r in panel["results"]),
        records.draft_range_set["id"],
        records.active_range_set_id,
        *key_ids,
        *(f"key:{key_id}" for key_id in key_ids),
        *keys[DEFAULT_ORGANIZATION].values(),
        spare.json()["key"],
        records.plan["id"],
        records.active_rule_set_id,
    }
    return records


def leaked(body: str, records: Records, *, sent: str = "") -> list[str]:
    """The default organization's strings found in `body`, except those the caller itself sent
    (`sent`: the request's URL and body; an error may echo the path it was asked for)."""
    return sorted(secret for secret in records.secrets if secret in body and secret not in sent)
