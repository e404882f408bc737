"""Everything the FHIR facade emits, judged by a validator this service does not use: Medplum's
`validateResource` (npm `@medplum/core`, pinned in `medplum/package-lock.json`, installed by the
test command). Every resource type, from panels posted as JSON, FHIR and HL7, must have 0 errors,
and every Identifier.system must be an absolute URI."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.builders import make_patient, result
from tests.interop.fhir.builders import get_json, panel_bundle, post_bundle
from tests.interop.hl7.messages import magnesium_mmol, next_id, oru
from tests.interop.hl7.test_oru_route import post_er7
from tests.plans.builders import LOW_MAGNESIUM, draft_plan, post_recent_panel

VALIDATOR = Path(__file__).parent / "medplum"


def _validate(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for the independent FHIR validator"
    assert (VALIDATOR / "node_modules" / "@medplum" / "core").is_dir(), (
        "run scripts/test.sh (it installs the validator with npm ci)"
    )
    done = subprocess.run(
        [node, "validate.mjs"],
        cwd=VALIDATOR,
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    verdicts: list[dict[str, Any]] = json.loads(done.stdout)
    return verdicts


def _resources(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield body
    for entry in body.get("entry", []):
        if "resource" in entry:
            yield from _resources(entry["resource"])


def _identifier_systems(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "identifier":
                for identifier in value if isinstance(value, list) else [value]:
                    if isinstance(identifier, dict) and "system" in identifier:
                        yield identifier["system"]
            yield from _identifier_systems(value)
    elif isinstance(node, list):
        for item in node:
            yield from _identifier_systems(item)


def _is_absolute_uri(value: str) -> bool:
    parts = urlsplit(value)
    if parts.scheme in ("urn",):
        return value.count(":") >= 2
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme == "urn")


@pytest.fixture
def emitted(client: TestClient) -> list[dict[str, Any]]:
    """One of everything: panels from JSON, FHIR and HL7, a plan, searches, metadata, errors."""
    patient = make_patient(client)
    post_recent_panel(client, patient, [*LOW_MAGNESIUM, result("ferritin", "20", "ug/L")])
    plan = draft_plan(client, patient)
    assert post_bundle(client, panel_bundle()).status_code == 200
    hl7_mrn = next_id("MRN")
    assert post_er7(client, oru([magnesium_mmol("0.55")], mrn=hl7_mrn)).status_code == 200

    bodies = [
        get_json(client, "/fhir/R4/metadata"),
        get_json(client, "/fhir/R4/Patient"),
        get_json(client, "/fhir/R4/Observation", params={"_include": "Observation:patient"}),
        get_json(client, "/fhir/R4/DiagnosticReport"),
        get_json(client, "/fhir/R4/CarePlan"),
        get_json(client, f"/fhir/R4/CarePlan/{plan['id']}"),
        get_json(client, "/fhir/R4/ObservationDefinition"),
        get_json(client, "/fhir/R4/Observation", params={"colour": "blue"}),
        client.get("/fhir/R4/Patient/00000000-0000-0000-0000-000000000000").json(),
    ]
    first = get_json(client, "/fhir/R4/Observation")["entry"][0]["resource"]
    bodies.append(get_json(client, f"/fhir/R4/Observation/{first['id']}"))
    return [resource for body in bodies for resource in _resources(body)]


def test_every_emitted_resource_passes_medplums_validator(emitted: list[dict[str, Any]]) -> None:
    kinds = {resource["resourceType"] for resource in emitted}
    assert kinds >= {
        "CapabilityStatement",
        "Bundle",
        "Patient",
        "Observation",
        "DiagnosticReport",
        "CarePlan",
        "ObservationDefinition",
        "OperationOutcome",
    }
    failures = [v for v in _validate(emitted) if v["errors"]]
    assert failures == []


def test_a_broken_resource_is_caught_by_the_validator() -> None:
    # The control: the validator does find errors (so 0 errors above means something).
    [verdict] = _validate([{"resourceType": "Observation", "id": "x", "code": {"text": "a"}}])
    assert any("status" in error for error in verdict["errors"])


def test_every_identifier_system_is_an_absolute_uri(emitted: list[dict[str, Any]]) -> None:
    systems = {system for resource in emitted for system in _identifier_systems(resource)}
    assert systems
    assert sorted(s for s in systems if not _is_absolute_uri(s)) == []
