"""Every route × every role × own / other organization → the exact status, and no leaks.

The matrix below names every API route of the app. `test_the_matrix_names_every_route` fails
as soon as a route is added (or removed) without a row here, so a new route cannot ship without
deciding who may call it.

For each route the default organization's records are built first (a patient with a panel, a
draft range set, a spare API key), so the own-organization calls reach a real record. The other
organization ("other-clinic") then calls the same routes with *the default organization's ids*:

* a record route answers 404, byte for byte the answer for an id that does not exist at all
  (never 403, which would confirm the record exists);
* a list or search answers 200 with none of the default organization's data;
* a create stores the record in the caller's own organization;
* a role without the scope gets 403 in either organization, before any lookup.

No response to another organization holds any of the default organization's ids, identifiers,
accessions or keys.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response

from app.models.organization import DEFAULT_ORGANIZATION_ID
from tests.api.access import (
    ROLES,
    Keys,
    Records,
    key_header,
    leaked,
    make_records,
    range_set_document,
)
from tests.builders import MRN_SYSTEM, expect_problem, panel_body, result
from tests.conftest import DEFAULT_ORGANIZATION, OTHER_ORGANIZATION
from tests.interop.fhir.builders import FHIR_JSON, expect_outcome, panel_bundle
from tests.interop.hl7.messages import acks, magnesium_mmol, oru, segment

# Public: no credentials, no organization data.
PUBLIC_ROUTES = {
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/fhir/R4/metadata"),
    # Prometheus metrics: counters with no identifiers in them (tests/test_metrics.py), open by
    # default, restricted by MINERAL_METRICS_ALLOWED_NETWORKS.
    ("GET", "/metrics"),
}
# The FHIR facade's catch-all answers 404/405 OperationOutcomes for what it does not implement;
# it reads nothing (test_fhir_catch_all_reveals_nothing).
CATCH_ALL = {
    (method, "/fhir/R4/{path:path}")
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
}


@dataclass(frozen=True)
class Call:
    """One request: the path (with ids filled in), and what goes with it."""

    path: str
    json: Any = None
    content: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # The default organization's record id in the path, for the "same as unknown id" check.
    record_id: str | None = None


Builder = Callable[[TestClient, Records], Call]
Check = Callable[[Response, Records], None]


@dataclass(frozen=True)
class Row:
    """Who may call a route and what they get.

    `allowed` roles get `own` in the default organization and `other` in the other one; every
    other role gets 403 in both. `check_own` looks at a successful own-organization response,
    `check_other` at a successful other-organization one (lists must not hold foreign data).
    """

    allowed: frozenset[str]
    own: int
    other: int
    build: Builder
    check_own: Check | None = None
    check_other: Check | None = None
    # A list whose own-organization answer shows the default organization's records (the
    # control for the leak check); False for lists with no organization data at all.
    lists_records: bool = True


def _etag(client: TestClient, path: str) -> str:
    """The current ETag, read by the default organization's caller that may read it."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    etag: str = response.headers["ETag"]
    return etag


def _ids(response: Response) -> list[str]:
    return [item["id"] for item in response.json()["items"]]


def _new_patient(client: TestClient, records: Records) -> Call:
    mrn = f"MRN-NEW-{uuid.uuid4().hex[:10]}"
    return Call(
        "/api/v1/patients",
        json={"identifiers": [{"system": MRN_SYSTEM, "value": mrn}], "sex": "female"},
    )


def _patient(client: TestClient, records: Records) -> Call:
    return Call(f"/api/v1/patients/{records.patient_id}", record_id=records.patient_id)


def _patch_patient(client: TestClient, records: Records) -> Call:
    path = f"/api/v1/patients/{records.patient_id}"
    return Call(
        path,
        json={"sex": "male"},
        headers={"If-Match": _etag(client, path)},
        record_id=records.patient_id,
    )


def _search_patients(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/patients", params={"identifier": f"{MRN_SYSTEM}|{records.mrn}"})


def _new_panel(client: TestClient, records: Records) -> Call:
    body = panel_body(
        records.patient,
        [result("magnesium", "0.80", "mmol/L")],
        accession=f"ACC-NEW-{uuid.uuid4().hex[:10]}",
    )
    return Call("/api/v1/panels", json=body)


def _panel(suffix: str = "") -> Builder:
    def build(client: TestClient, records: Records) -> Call:
        return Call(f"/api/v1/panels/{records.panel_id}{suffix}", record_id=records.panel_id)

    return build


def _reinterpret(client: TestClient, records: Records) -> Call:
    return Call(
        f"/api/v1/panels/{records.panel_id}/reinterpret",
        json={"reason": "route matrix"},
        record_id=records.panel_id,
    )


def _patient_panels(client: TestClient, records: Records) -> Call:
    return Call(f"/api/v1/patients/{records.patient_id}/panels", record_id=records.patient_id)


def _history(client: TestClient, records: Records) -> Call:
    return Call(
        f"/api/v1/patients/{records.patient_id}/analytes/magnesium/history",
        record_id=records.patient_id,
    )


def _new_range_set(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/range-sets", json=range_set_document(f"m-{uuid.uuid4().hex[:8]}"))


def _range_sets(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/range-sets", params={"limit": "200"})


def _active_range_set(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/range-sets/active")


def _range_set(client: TestClient, records: Records) -> Call:
    range_set_id = records.draft_range_set["id"]
    return Call(f"/api/v1/range-sets/{range_set_id}", record_id=range_set_id)


def _activate(client: TestClient, records: Records) -> Call:
    range_set_id = records.draft_range_set["id"]
    return Call(
        f"/api/v1/range-sets/{range_set_id}/activate",
        headers={"If-Match": _etag(client, f"/api/v1/range-sets/{range_set_id}")},
        record_id=range_set_id,
    )


def _new_key(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/api-keys", json={"name": "matrix", "role": "clinician"})


def _keys(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/api-keys", params={"limit": "200"})


def _revoke(client: TestClient, records: Records) -> Call:
    return Call(f"/api/v1/api-keys/{records.spare_key_id}/revoke", record_id=records.spare_key_id)


def _audit(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/audit-events", params={"patient_id": records.patient_id})


def _is_patient(response: Response, records: Records) -> None:
    assert response.json()["id"] == records.patient_id


def _is_panel(response: Response, records: Records) -> None:
    assert response.json()["id"] == records.panel_id


def _lists_patient(response: Response, records: Records) -> None:
    assert _ids(response) == [records.patient_id]


def _lists_panel(response: Response, records: Records) -> None:
    assert _ids(response) == [records.panel_id]


def _is_empty_page(response: Response, records: Records) -> None:
    assert response.json()["items"] == []


def _has_points(response: Response, records: Records) -> None:
    assert len(response.json()["items"]) == 1


def _ratio_history(client: TestClient, records: Records) -> Call:
    return Call(
        f"/api/v1/patients/{records.patient_id}/ratios/ca_mg_molar/history",
        record_id=records.patient_id,
    )


def _is_ratio_history(response: Response, records: Records) -> None:
    # The records' panel has no calcium, so no Ca:Mg ratio; the active set defines the code.
    assert response.json()["code"] == "ca_mg_molar"
    assert response.json()["items"] == []


def _series(client: TestClient, records: Records) -> Call:
    return Call(
        f"/api/v1/patients/{records.patient_id}/series",
        params={"analyte": "magnesium", "include": "isi"},
        record_id=records.patient_id,
    )


def _flagged_results(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/results", params={"flag": "abnormal"})


def _lists_flagged_result(response: Response, records: Records) -> None:
    # The records' panel has a low magnesium.
    assert records.patient_id in [item["patient_id"] for item in response.json()["items"]]


def _interpretations(response: Response, records: Records) -> None:
    assert [version["current"] for version in response.json()] == [True]


def _lists_draft(response: Response, records: Records) -> None:
    assert records.draft_range_set["id"] in _ids(response)


def _is_default_active(response: Response, records: Records) -> None:
    assert response.json()["id"] == records.active_range_set_id


def _is_own_active(response: Response, records: Records) -> None:
    assert response.json()["id"] != records.active_range_set_id
    assert response.json()["status"] == "active"


def _is_draft(response: Response, records: Records) -> None:
    assert response.json()["id"] == records.draft_range_set["id"]


def _is_activated(response: Response, records: Records) -> None:
    assert (response.json()["id"], response.json()["status"]) == (
        records.draft_range_set["id"],
        "active",
    )


def _lists_spare_key(response: Response, records: Records) -> None:
    assert records.spare_key_id in _ids(response)


def _lists_no_default_key(response: Response, records: Records) -> None:
    assert not set(_ids(response)) & set(records.key_ids)


def _is_revoked(response: Response, records: Records) -> None:
    assert (response.json()["id"], response.json()["status"]) == (records.spare_key_id, "revoked")


def _lists_patient_events(response: Response, records: Records) -> None:
    items = response.json()["items"]
    assert items
    assert {item["patient_id"] for item in items} == {records.patient_id}


def _created(response: Response, records: Records) -> None:
    assert response.json()["id"]


# --- interoperability: FHIR R4 facade and HL7 v2 ------------------------------------------


def _hl7_panel(client: TestClient, records: Records) -> Call:
    message = oru([magnesium_mmol("0.80")], mrn=records.mrn)
    return Call(
        "/api/v1/hl7/oru",
        content=message,
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    )


def _hl7_accepted(response: Response, records: Records) -> None:
    assert segment(acks(response.text)[0], "MSA")[1] == "AA", response.text


def _fhir_bundle(client: TestClient, records: Records) -> Call:
    return Call("/fhir/R4", content=panel_bundle(), headers={"Content-Type": FHIR_JSON})


def _fhir_stored(response: Response, records: Records) -> None:
    assert response.json()["resourceType"] == "Bundle"
    assert all(e["response"]["status"].startswith("20") for e in response.json()["entry"])


def _fhir_patient(client: TestClient, records: Records) -> Call:
    return Call(f"/fhir/R4/Patient/{records.patient_id}", record_id=records.patient_id)


def _fhir_patient_search(client: TestClient, records: Records) -> Call:
    return Call("/fhir/R4/Patient", params={"identifier": f"{MRN_SYSTEM}|{records.mrn}"})


def _first_result_id(records: Records) -> str:
    value: str = records.panel["results"][0]["id"]
    return value


def _fhir_observation(client: TestClient, records: Records) -> Call:
    result_id = _first_result_id(records)
    return Call(f"/fhir/R4/Observation/{result_id}", record_id=result_id)


def _fhir_observation_search(client: TestClient, records: Records) -> Call:
    return Call("/fhir/R4/Observation", params={"patient": records.patient_id})


def _fhir_form_search(resource_type: str, form: Callable[[Records], str]) -> Builder:
    """POST <type>/_search with the parameters in a form body, as FHIR clients may send."""

    def build(client: TestClient, records: Records) -> Call:
        return Call(
            f"/fhir/R4/{resource_type}/_search",
            content=form(records),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    return build


def _fhir_report(client: TestClient, records: Records) -> Call:
    return Call(f"/fhir/R4/DiagnosticReport/{records.panel_id}", record_id=records.panel_id)


def _fhir_report_search(client: TestClient, records: Records) -> Call:
    return Call("/fhir/R4/DiagnosticReport", params={"patient": records.patient_id})


def _fhir_definitions(client: TestClient, records: Records) -> Call:
    return Call("/fhir/R4/ObservationDefinition")


def _fhir_is(resource_type: str, record: Callable[[Records], str]) -> Check:
    def check(response: Response, records: Records) -> None:
        body = response.json()
        assert (body["resourceType"], body["id"]) == (resource_type, record(records))

    return check


def _fhir_found(response: Response, records: Records) -> None:
    assert response.json()["total"] >= 1


def _fhir_none(response: Response, records: Records) -> None:
    assert response.json()["total"] == 0


def _fhir_definitions_listed(response: Response, records: Records) -> None:
    assert response.json()["total"] >= 1


# --- HL7 code maps -------------------------------------------------------------------------


def _code_map_entry(client: TestClient, code: str) -> None:
    """An entry of the default organization, made by its admin (RoleAuth)."""
    response = client.put(f"/api/v1/code-maps/ACME-LAB/{code}", json={"analyte": "magnesium"})
    assert response.status_code in (200, 201), response.text


def _code_maps(client: TestClient, records: Records) -> Call:
    _code_map_entry(client, "MATRIX")
    return Call("/api/v1/code-maps", params={"limit": "200"})


def _lists_matrix_entry(response: Response, records: Records) -> None:
    assert "MATRIX" in [item["local_code"] for item in response.json()["items"]]


def _new_code_map(client: TestClient, records: Records) -> Call:
    return Call(
        f"/api/v1/code-maps/ACME-LAB/NEW-{uuid.uuid4().hex[:8]}",
        json={"analyte": "zinc", "note": "route matrix"},
    )


def _delete_code_map(client: TestClient, records: Records) -> Call:
    code = str(uuid.uuid4())
    _code_map_entry(client, code)
    return Call(f"/api/v1/code-maps/ACME-LAB/{code}", record_id=code)


def _refused_hl7(client: TestClient, records: Records) -> str:
    """A default-organization HL7 message refused (AE: unknown local code), kept."""
    message = oru([segment_free_obx()], mrn=records.mrn)
    answer = client.post(
        "/api/v1/hl7/oru",
        content=message.encode(),
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    )
    assert answer.status_code == 200, answer.text
    listed = client.get("/api/v1/refused-inputs", params={"status": "refused"})
    assert listed.status_code == 200, listed.text
    return str(listed.json()["items"][0]["id"])


def segment_free_obx() -> str:
    return f"OBX|1|NM|UNMAPPED-{uuid.uuid4().hex[:6]}^Unmapped^L||0.62|mmol/L|||||F"


def _refused_inputs(client: TestClient, records: Records) -> Call:
    _refused_hl7(client, records)
    return Call("/api/v1/refused-inputs", params={"limit": "200"})


def _lists_refused(response: Response, records: Records) -> None:
    assert response.json()["items"]


def _refused_input(suffix: str = "") -> Builder:
    def build(client: TestClient, records: Records) -> Call:
        refused_id = _refused_hl7(client, records)
        return Call(f"/api/v1/refused-inputs/{refused_id}{suffix}", record_id=refused_id)

    return build


# --- patient context, sleep assessments, timeline (clinician: plans:read / plans:write) ------


def _context_path(records: Records, suffix: str = "") -> str:
    return f"/api/v1/patients/{records.patient_id}/context{suffix}"


def _ensure_context(client: TestClient, records: Records) -> None:
    """The default organization's patient has a context (recorded once, by its clinician)."""
    if client.get(_context_path(records)).status_code == 404:
        response = client.put(_context_path(records), json={"diet": "vegan"})
        assert response.status_code == 201, response.text


def _put_context(client: TestClient, records: Records) -> Call:
    return Call(
        _context_path(records),
        json={"pregnant": False, "medications": [{"code": "levothyroxine"}]},
        record_id=records.patient_id,
    )


def _context(suffix: str = "") -> Builder:
    def build(client: TestClient, records: Records) -> Call:
        _ensure_context(client, records)
        return Call(_context_path(records, suffix), record_id=records.patient_id)

    return build


def _is_context(response: Response, records: Records) -> None:
    assert response.json()["patient_id"] == records.patient_id
    assert response.json()["version"] >= 1


def _lists_context(response: Response, records: Records) -> None:
    assert [item["version"] for item in response.json()["items"]] == [1]


def _assessments_path(records: Records) -> str:
    return f"/api/v1/patients/{records.patient_id}/sleep-assessments"


ISI_BODY = {"instrument": "ISI", "assessed_on": "2026-11-20", "items": [1, 2, 3, 4, 0, 1, 2]}


def _assessment_id(client: TestClient, records: Records) -> str:
    """The default organization's patient's one assessment (recorded once)."""
    listed = client.get(_assessments_path(records))
    assert listed.status_code == 200, listed.text
    if listed.json()["items"]:
        value: str = listed.json()["items"][0]["id"]
        return value
    created = client.post(_assessments_path(records), json=ISI_BODY)
    assert created.status_code == 201, created.text
    new_id: str = created.json()["id"]
    return new_id


def _new_assessment(client: TestClient, records: Records) -> Call:
    return Call(_assessments_path(records), json=ISI_BODY, record_id=records.patient_id)


def _assessments(client: TestClient, records: Records) -> Call:
    _assessment_id(client, records)
    return Call(_assessments_path(records), record_id=records.patient_id)


def _assessment(client: TestClient, records: Records) -> Call:
    assessment_id = _assessment_id(client, records)
    return Call(f"{_assessments_path(records)}/{assessment_id}", record_id=records.patient_id)


def _is_assessment(response: Response, records: Records) -> None:
    body = response.json()
    assert (body["patient_id"], body["total"], body["category"]) == (
        records.patient_id,
        13,
        "subthreshold",
    )


def _lists_assessment(response: Response, records: Records) -> None:
    assert [item["total"] for item in response.json()["items"]] == [13]


def _timeline(client: TestClient, records: Records) -> Call:
    _assessment_id(client, records)
    return Call(f"/api/v1/patients/{records.patient_id}/timeline", record_id=records.patient_id)


def _lists_panel_and_assessment(response: Response, records: Records) -> None:
    kinds = {item["kind"] for item in response.json()["items"]}
    assert kinds == {"panel", "sleep-assessment"}
    assert records.panel_id in response.text


# --- treatment plans and plan rule sets ----------------------------------------------------


def _plan_path(records: Records, suffix: str = "") -> str:
    return f"/api/v1/plans/{records.plan['id']}{suffix}"


def _new_plan(client: TestClient, records: Records) -> Call:
    return Call(
        f"/api/v1/patients/{records.patient_id}/plans",
        json={"panel_ids": [records.panel_id]},
        record_id=records.patient_id,
    )


def _patient_plans(client: TestClient, records: Records) -> Call:
    return Call(f"/api/v1/patients/{records.patient_id}/plans", record_id=records.patient_id)


def _worklist(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/plans/worklist")


def _plan(suffix: str = "", params: dict[str, str] | None = None) -> Builder:
    def build(client: TestClient, records: Records) -> Call:
        return Call(_plan_path(records, suffix), params=params or {}, record_id=records.plan["id"])

    return build


def _edit_plan(client: TestClient, records: Records) -> Call:
    current = client.get(_plan_path(records))
    assert current.status_code == 200, current.text
    kept = [
        {k: v for k, v in item.items() if k not in ("rule_id", "template_id")}
        for group in current.json()["groups"]
        for item in group["items"]
    ]
    return Call(
        _plan_path(records, "/items"),
        json={"items": kept, "reason": "route matrix"},
        headers={"If-Match": current.headers["ETag"]},
        record_id=records.plan["id"],
    )


def _activate_plan(client: TestClient, records: Records) -> Call:
    """A fresh draft each time: activation is allowed once per plan."""
    drafted = client.post(
        f"/api/v1/patients/{records.patient_id}/plans", json={"panel_ids": [records.panel_id]}
    )
    assert drafted.status_code == 201, drafted.text
    plan_id = drafted.json()["id"]
    records.secrets.add(plan_id)
    return Call(
        f"/api/v1/plans/{plan_id}/status",
        json={"status": "active"},
        headers={"If-Match": drafted.headers["ETag"]},
        record_id=plan_id,
    )


def _regenerate(client: TestClient, records: Records) -> Call:
    return Call(_plan_path(records, "/regenerate"), json={}, record_id=records.plan["id"])


def _is_plan(response: Response, records: Records) -> None:
    assert response.json()["patient_id"] == records.patient_id


def _lists_plan(response: Response, records: Records) -> None:
    assert records.plan["id"] in _ids(response)


def _lists_draft_plan(response: Response, records: Records) -> None:
    assert records.plan["id"] in [p["id"] for p in response.json()["drafts"]["items"]]


def _no_drafts(response: Response, records: Records) -> None:
    assert response.json()["drafts"]["items"] == []


def _lists_versions(response: Response, records: Records) -> None:
    assert [v["version"] for v in response.json()["items"]][0] == 1


def _is_version(response: Response, records: Records) -> None:
    assert (response.json()["plan_id"], response.json()["version"]) == (records.plan["id"], 1)


def _is_diff(response: Response, records: Records) -> None:
    assert response.json()["plan_id"] == records.plan["id"]


def _new_rule_set(client: TestClient, records: Records) -> Call:
    active = client.get(f"/api/v1/plan-rule-sets/{records.active_rule_set_id}")
    assert active.status_code == 200, active.text
    return Call(
        "/api/v1/plan-rule-sets",
        json=active.json()["document"] | {"name": f"m-{uuid.uuid4().hex[:8]}"},
    )


def _rule_sets(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/plan-rule-sets", params={"limit": "200"})


def _active_rule_set(client: TestClient, records: Records) -> Call:
    return Call("/api/v1/plan-rule-sets/active")


def _rule_set(client: TestClient, records: Records) -> Call:
    rule_set_id = records.active_rule_set_id
    return Call(f"/api/v1/plan-rule-sets/{rule_set_id}", record_id=rule_set_id)


def _activate_rule_set(client: TestClient, records: Records) -> Call:
    imported = client.post("/api/v1/plan-rule-sets", json=_new_rule_set(client, records).json)
    assert imported.status_code == 201, imported.text
    rule_set_id = imported.json()["id"]
    records.secrets.add(rule_set_id)
    return Call(
        f"/api/v1/plan-rule-sets/{rule_set_id}/activate",
        headers={"If-Match": imported.headers["ETag"]},
        record_id=rule_set_id,
    )


def _lists_default_rule_set(response: Response, records: Records) -> None:
    assert records.active_rule_set_id in _ids(response)


def _is_default_rule_set(response: Response, records: Records) -> None:
    assert response.json()["id"] == records.active_rule_set_id


def _is_own_rule_set(response: Response, records: Records) -> None:
    assert response.json()["id"] != records.active_rule_set_id
    assert response.json()["status"] == "active"


def _is_active(response: Response, records: Records) -> None:
    assert response.json()["status"] == "active"


def _fhir_care_plan(client: TestClient, records: Records) -> Call:
    return Call(f"/fhir/R4/CarePlan/{records.plan['id']}", record_id=records.plan["id"])


def _fhir_care_plan_search(client: TestClient, records: Records) -> Call:
    return Call("/fhir/R4/CarePlan", params={"patient": records.patient_id})


def _new_batch(client: TestClient, records: Records) -> Call:
    body = panel_body(
        records.patient,
        [result("magnesium", "0.80", "mmol/L")],
        accession=f"ACC-BATCH-{uuid.uuid4().hex[:10]}",
    )
    return Call(
        "/api/v1/panel-batches",
        content=json.dumps(body) + "\n",
        headers={"content-type": "application/x-ndjson"},
    )


def _batch(client: TestClient, records: Records) -> Call:
    call = _new_batch(client, records)
    posted = client.post(call.path, content=call.content, headers=call.headers)
    assert posted.status_code == 200, posted.text
    batch_id: str = json.loads(posted.text.splitlines()[-1])["batch"]["id"]
    return Call(f"/api/v1/panel-batches/{batch_id}", record_id=batch_id)


def _batch_line(outcome: str) -> Check:
    def check(response: Response, records: Records) -> None:
        assert json.loads(response.text.splitlines()[0])["outcome"] == outcome

    return check


INTEGRATION = frozenset({"integration"})
CLINICIAN = frozenset({"clinician"})
ADMIN = frozenset({"admin"})
READERS = frozenset({"integration", "clinician"})
RULE_READERS = frozenset({"clinician", "admin"})
EVERYONE = frozenset(ROLES)
REFUSED_MANAGERS = frozenset({"integration", "admin"})

# (method, path template) → who may call it and what everyone gets.
MATRIX: dict[tuple[str, str], Row] = {
    ("POST", "/api/v1/patients"): Row(INTEGRATION, 201, 201, _new_patient, _created, _created),
    ("GET", "/api/v1/patients/{patient_id}"): Row(READERS, 200, 404, _patient, _is_patient),
    ("PATCH", "/api/v1/patients/{patient_id}"): Row(
        INTEGRATION, 200, 404, _patch_patient, _is_patient
    ),
    ("GET", "/api/v1/patients"): Row(
        READERS, 200, 200, _search_patients, _lists_patient, _is_empty_page
    ),
    # The other organization has no such patient: the panel is refused, nothing is stored.
    ("POST", "/api/v1/panels"): Row(INTEGRATION, 201, 422, _new_panel, _created),
    # A batch answers 200 either way; another organization's line naming this patient is refused.
    ("POST", "/api/v1/panel-batches"): Row(
        INTEGRATION, 200, 200, _new_batch, _batch_line("stored"), _batch_line("refused")
    ),
    ("GET", "/api/v1/panel-batches/{batch_id}"): Row(READERS, 200, 404, _batch),
    ("GET", "/api/v1/panels/{panel_id}"): Row(READERS, 200, 404, _panel(), _is_panel),
    ("GET", "/api/v1/patients/{patient_id}/panels"): Row(
        READERS, 200, 404, _patient_panels, _lists_panel
    ),
    ("GET", "/api/v1/patients/{patient_id}/analytes/{analyte}/history"): Row(
        READERS, 200, 404, _history, _has_points
    ),
    ("GET", "/api/v1/patients/{patient_id}/ratios/{code}/history"): Row(
        READERS, 200, 404, _ratio_history, _is_ratio_history
    ),
    # Every patient's flagged results of the organization: a list, empty for another one.
    ("GET", "/api/v1/results"): Row(
        READERS, 200, 200, _flagged_results, _lists_flagged_result, _is_empty_page
    ),
    # Minerals with ISI scores (clinical context): clinicians, like the timeline.
    ("GET", "/api/v1/patients/{patient_id}/series"): Row(CLINICIAN, 200, 404, _series, _has_points),
    # Clinical context, sleep questionnaires and the timeline feed treatment plans: clinicians
    # only (plans:read / plans:write). Another organization's patient is an unknown id (404).
    ("PUT", "/api/v1/patients/{patient_id}/context"): Row(
        CLINICIAN, 201, 404, _put_context, _is_context
    ),
    ("GET", "/api/v1/patients/{patient_id}/context"): Row(
        CLINICIAN, 200, 404, _context(), _is_context
    ),
    ("GET", "/api/v1/patients/{patient_id}/context/versions"): Row(
        CLINICIAN, 200, 404, _context("/versions"), _lists_context
    ),
    ("GET", "/api/v1/patients/{patient_id}/context/versions/{version}"): Row(
        CLINICIAN, 200, 404, _context("/versions/1"), _is_context
    ),
    ("POST", "/api/v1/patients/{patient_id}/sleep-assessments"): Row(
        CLINICIAN, 201, 404, _new_assessment, _is_assessment
    ),
    ("GET", "/api/v1/patients/{patient_id}/sleep-assessments"): Row(
        CLINICIAN, 200, 404, _assessments, _lists_assessment
    ),
    ("GET", "/api/v1/patients/{patient_id}/sleep-assessments/{assessment_id}"): Row(
        CLINICIAN, 200, 404, _assessment, _is_assessment
    ),
    ("GET", "/api/v1/patients/{patient_id}/timeline"): Row(
        CLINICIAN, 200, 404, _timeline, _lists_panel_and_assessment
    ),
    # Treatment plans: clinicians only (plans:read / plans:write).
    ("POST", "/api/v1/patients/{patient_id}/plans"): Row(CLINICIAN, 201, 404, _new_plan, _is_plan),
    ("GET", "/api/v1/patients/{patient_id}/plans"): Row(
        CLINICIAN, 200, 404, _patient_plans, _lists_plan
    ),
    ("GET", "/api/v1/plans/worklist"): Row(
        CLINICIAN, 200, 200, _worklist, _lists_draft_plan, _no_drafts
    ),
    ("GET", "/api/v1/plans/{plan_id}"): Row(CLINICIAN, 200, 404, _plan(), _is_plan),
    ("PUT", "/api/v1/plans/{plan_id}/items"): Row(CLINICIAN, 200, 404, _edit_plan, _is_plan),
    ("POST", "/api/v1/plans/{plan_id}/status"): Row(
        CLINICIAN, 200, 404, _activate_plan, _is_active
    ),
    ("POST", "/api/v1/plans/{plan_id}/regenerate"): Row(CLINICIAN, 201, 404, _regenerate, _is_plan),
    ("GET", "/api/v1/plans/{plan_id}/versions"): Row(
        CLINICIAN, 200, 404, _plan("/versions"), _lists_versions
    ),
    ("GET", "/api/v1/plans/{plan_id}/versions/{version}"): Row(
        CLINICIAN, 200, 404, _plan("/versions/1"), _is_version
    ),
    ("GET", "/api/v1/plans/{plan_id}/diff"): Row(
        CLINICIAN, 200, 404, _plan("/diff", {"from": "1"}), _is_diff
    ),
    # Plan rule sets are configuration: admins change them, clinicians and admins read them.
    ("POST", "/api/v1/plan-rule-sets"): Row(ADMIN, 201, 201, _new_rule_set, _created, _created),
    ("GET", "/api/v1/plan-rule-sets"): Row(
        RULE_READERS, 200, 200, _rule_sets, _lists_default_rule_set
    ),
    ("GET", "/api/v1/plan-rule-sets/active"): Row(
        RULE_READERS, 200, 200, _active_rule_set, _is_default_rule_set, _is_own_rule_set
    ),
    ("GET", "/api/v1/plan-rule-sets/{rule_set_id}"): Row(
        RULE_READERS, 200, 404, _rule_set, _is_default_rule_set
    ),
    ("POST", "/api/v1/plan-rule-sets/{rule_set_id}/activate"): Row(
        ADMIN, 200, 404, _activate_rule_set, _is_active
    ),
    ("GET", "/fhir/R4/CarePlan/{plan_id}"): Row(
        CLINICIAN, 200, 404, _fhir_care_plan, _fhir_is("CarePlan", lambda r: r.plan["id"])
    ),
    ("GET", "/fhir/R4/CarePlan"): Row(
        CLINICIAN, 200, 200, _fhir_care_plan_search, _fhir_found, _fhir_none
    ),
    ("POST", "/fhir/R4/CarePlan/_search"): Row(
        CLINICIAN,
        200,
        200,
        _fhir_form_search("CarePlan", lambda r: f"patient={r.patient_id}"),
        _fhir_found,
        _fhir_none,
    ),
    ("POST", "/api/v1/panels/{panel_id}/reinterpret"): Row(
        CLINICIAN, 200, 404, _reinterpret, _is_panel
    ),
    ("GET", "/api/v1/panels/{panel_id}/interpretations"): Row(
        READERS, 200, 404, _panel("/interpretations"), _interpretations
    ),
    ("POST", "/api/v1/range-sets"): Row(ADMIN, 201, 201, _new_range_set, _created, _created),
    ("GET", "/api/v1/range-sets"): Row(EVERYONE, 200, 200, _range_sets, _lists_draft),
    ("GET", "/api/v1/range-sets/active"): Row(
        EVERYONE, 200, 200, _active_range_set, _is_default_active, _is_own_active
    ),
    ("GET", "/api/v1/range-sets/{range_set_id}"): Row(EVERYONE, 200, 404, _range_set, _is_draft),
    ("POST", "/api/v1/range-sets/{range_set_id}/activate"): Row(
        ADMIN, 200, 404, _activate, _is_activated
    ),
    # Code maps are configuration like ranges: everyone reads, admins change. The other
    # organization sees none of the default organization's entries and creates its own.
    ("GET", "/api/v1/code-maps"): Row(
        EVERYONE, 200, 200, _code_maps, _lists_matrix_entry, _is_empty_page, lists_records=False
    ),
    ("PUT", "/api/v1/code-maps/{sending_facility}/{local_code}"): Row(
        ADMIN, 201, 201, _new_code_map, _created, _created
    ),
    ("DELETE", "/api/v1/code-maps/{sending_facility}/{local_code}"): Row(
        ADMIN, 204, 404, _delete_code_map
    ),
    ("POST", "/api/v1/api-keys"): Row(ADMIN, 201, 201, _new_key, _created, _created),
    ("GET", "/api/v1/api-keys"): Row(
        ADMIN, 200, 200, _keys, _lists_spare_key, _lists_no_default_key
    ),
    ("POST", "/api/v1/api-keys/{key_id}/revoke"): Row(ADMIN, 200, 404, _revoke, _is_revoked),
    ("GET", "/api/v1/audit-events"): Row(
        ADMIN, 200, 200, _audit, _lists_patient_events, _is_empty_page
    ),
    # HL7 v2: the other organization's message creates its own patient (PID) and panel.
    ("POST", "/api/v1/hl7/oru"): Row(
        INTEGRATION, 200, 200, _hl7_panel, _hl7_accepted, _hl7_accepted
    ),
    # Refused inputs are PHI for the people who fix interfaces: admin and integration only.
    ("GET", "/api/v1/refused-inputs"): Row(
        REFUSED_MANAGERS, 200, 200, _refused_inputs, _lists_refused, _is_empty_page
    ),
    ("GET", "/api/v1/refused-inputs/{refused_id}"): Row(
        REFUSED_MANAGERS, 200, 404, _refused_input()
    ),
    ("POST", "/api/v1/refused-inputs/{refused_id}/reprocess"): Row(
        REFUSED_MANAGERS, 200, 404, _refused_input("/reprocess")
    ),
    ("POST", "/api/v1/refused-inputs/{refused_id}/discard"): Row(
        REFUSED_MANAGERS, 200, 404, _refused_input("/discard")
    ),
    ("POST", "/fhir/R4"): Row(INTEGRATION, 200, 200, _fhir_bundle, _fhir_stored, _fhir_stored),
    ("GET", "/fhir/R4/Patient/{patient_id}"): Row(
        READERS, 200, 404, _fhir_patient, _fhir_is("Patient", lambda r: r.patient_id)
    ),
    ("GET", "/fhir/R4/Patient"): Row(
        READERS, 200, 200, _fhir_patient_search, _fhir_found, _fhir_none
    ),
    ("POST", "/fhir/R4/Patient/_search"): Row(
        READERS,
        200,
        200,
        _fhir_form_search("Patient", lambda r: f"_id={r.patient_id}"),
        _fhir_found,
        _fhir_none,
    ),
    ("GET", "/fhir/R4/Observation/{observation_id}"): Row(
        READERS, 200, 404, _fhir_observation, _fhir_is("Observation", _first_result_id)
    ),
    ("GET", "/fhir/R4/Observation"): Row(
        READERS, 200, 200, _fhir_observation_search, _fhir_found, _fhir_none
    ),
    ("POST", "/fhir/R4/Observation/_search"): Row(
        READERS,
        200,
        200,
        _fhir_form_search("Observation", lambda r: f"subject=Patient/{r.patient_id}"),
        _fhir_found,
        _fhir_none,
    ),
    ("GET", "/fhir/R4/DiagnosticReport/{report_id}"): Row(
        READERS, 200, 404, _fhir_report, _fhir_is("DiagnosticReport", lambda r: r.panel_id)
    ),
    ("GET", "/fhir/R4/DiagnosticReport"): Row(
        READERS, 200, 200, _fhir_report_search, _fhir_found, _fhir_none
    ),
    ("POST", "/fhir/R4/DiagnosticReport/_search"): Row(
        READERS,
        200,
        200,
        _fhir_form_search("DiagnosticReport", lambda r: f"patient={r.patient_id}"),
        _fhir_found,
        _fhir_none,
    ),
    # Reference ranges only: no patient data, and nothing of the default organization's.
    ("GET", "/fhir/R4/ObservationDefinition"): Row(
        EVERYONE,
        200,
        200,
        _fhir_definitions,
        _fhir_definitions_listed,
        _fhir_definitions_listed,
        lists_records=False,
    ),
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every APIRoute the app serves, through included routers too (this
    FastAPI keeps an included router as one entry of `app.routes`; iter_route_contexts
    flattens them with their full paths)."""
    routes: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        assert context.path is not None
        for method in context.methods or ():
            routes.add((method, context.path))
    return routes


def test_the_matrix_names_every_route(session_client: TestClient) -> None:
    routes = app_routes(session_client.app)  # type: ignore[arg-type]
    public = {route for route in routes if route in PUBLIC_ROUTES | CATCH_ALL}

    assert routes - public == set(MATRIX), (
        "routes missing from the matrix: "
        f"{sorted(routes - public - set(MATRIX))}; rows without a route: "
        f"{sorted(set(MATRIX) - routes)}"
    )


def test_fhir_catch_all_reveals_nothing(client: TestClient, api_keys: Keys) -> None:
    """What the facade does not implement is a 404 or 405 OperationOutcome for anyone."""
    records = make_records(client, api_keys)
    for method, path in [
        ("GET", f"/fhir/R4/Encounter/{records.patient_id}"),
        ("DELETE", f"/fhir/R4/Patient/{records.patient_id}"),
        ("PUT", f"/fhir/R4/Observation/{records.panel_id}"),
    ]:
        response = client.request(method, path, auth=None)
        assert response.status_code in (404, 405), (method, path, response.text)
        expect_outcome(response, response.status_code)
        assert not leaked(response.text, records, sent=path)


def test_public_routes_need_no_credentials(client: TestClient) -> None:
    for method, path in sorted(PUBLIC_ROUTES):
        response = client.request(method, path, auth=None)
        assert response.status_code == 200, (method, path, response.text)
        assert "WWW-Authenticate" not in response.headers


def _send(client: TestClient, method: str, call: Call, key: dict[str, str]) -> Response:
    response: Response = client.request(
        method,
        call.path,
        json=call.json,
        content=call.content,
        params=call.params,
        headers={**call.headers, **key},
    )
    return response


def _sent(call: Call) -> str:
    return f"{call.path} {call.params} {call.json} {call.content}"


def _assert_like_an_unknown_id(
    client: TestClient, method: str, call: Call, key: dict[str, str], response: Response
) -> None:
    """The other organization's 404 is exactly the 404 for an id that exists nowhere."""
    assert call.record_id is not None
    unknown = str(uuid.uuid4())
    probe = Call(
        call.path.replace(call.record_id, unknown),
        json=call.json,
        content=call.content,
        params=call.params,
        headers=call.headers,
    )
    expected = _send(client, method, probe, key)
    assert expected.status_code == 404
    assert response.text == expected.text.replace(unknown, call.record_id)


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX), ids=lambda value: str(value))
def test_route(client: TestClient, api_keys: Keys, method: str, path: str) -> None:
    row = MATRIX[(method, path)]
    records = make_records(client, api_keys)
    # Refusals first: they change nothing, so the allowed calls after them find the records
    # as they were built.
    order = [
        (org, role)
        for org in (OTHER_ORGANIZATION, DEFAULT_ORGANIZATION)
        for allowed_last in (False, True)
        for role in ROLES
        if (role in row.allowed) == allowed_last
    ]
    seen: dict[tuple[str, str], int] = {}
    for org, role in order:
        call = row.build(client, records)
        key = key_header(api_keys, org, role)
        response = _send(client, method, call, key)
        own = org == DEFAULT_ORGANIZATION
        expected = (row.own if own else row.other) if role in row.allowed else 403
        seen[(org, role)] = response.status_code
        assert response.status_code == expected, (org, role, response.text)
        if expected >= 400 and path.startswith("/fhir/"):
            expect_outcome(response, expected)
        elif expected >= 400:
            expect_problem(response, expected)
        if not own:
            assert not leaked(response.text, records, sent=_sent(call)), (
                org,
                role,
                leaked(response.text, records, sent=_sent(call)),
            )
            if expected == 404:
                _assert_like_an_unknown_id(client, method, call, key, response)
        elif method == "GET" and row.other == 200 and role in row.allowed and row.lists_records:
            # The same list does show the default organization's data to its own callers, so
            # the leak check above is looking at the right strings.
            assert leaked(response.text, records)
        check = row.check_own if own else row.check_other
        if response.status_code < 400 and check is not None:
            check(response, records)
    assert len(seen) == 2 * len(ROLES)


def test_another_organization_may_reuse_an_identifier_without_learning_it_exists(
    client: TestClient, api_keys: Keys
) -> None:
    """Identifiers are unique per organization: the same MRN in another organization is a new
    patient (201), not a 409 that would confirm the default organization has it."""
    records = make_records(client, api_keys)
    body = {"identifiers": [{"system": MRN_SYSTEM, "value": records.mrn}], "sex": "male"}

    response = client.post(
        "/api/v1/patients",
        json=body,
        headers=key_header(api_keys, OTHER_ORGANIZATION, "integration"),
    )

    assert response.status_code == 201, response.text
    assert response.json()["id"] != records.patient_id
    own = client.get(f"/api/v1/patients/{records.patient_id}")
    assert own.json()["sex"] == records.patient["sex"]
    assert str(DEFAULT_ORGANIZATION_ID) not in response.text
