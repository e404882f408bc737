"""A typed client generated afresh from the live server's /openapi.json runs the clinician
scenario: what a front-end team would do on its first day.

openapi-python-client (scripts/generate_client.py, the documented command) generates the
client into a temporary directory; any warning about a schema or an endpoint fails the test.
Then, against a real uvicorn server on a free port using this run's database (SQLite and
PostgreSQL), the generated functions alone: register a patient and post a panel
(integration key), then as a clinician find the patient by MRN, list and read panels, read the
magnesium trend, record the clinical context and an ISI, draft a plan, edit it with If-Match,
activate it, read the worklist and the printable page. Every response must be parsed into its
model (a `parsed` of None is how a dropped schema shows up).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import DEFAULT_ORGANIZATION, ROOT, Database
from tests.plans.builders import LOW_MAGNESIUM, MODERATE_ISI, WALK_BY_HAND, editable, recent, today

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_client", ROOT / "scripts" / "generate_client.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_server(database_url: str, db: Database) -> Iterator[str]:
    """`python -m app serve` on a free port, on this run's (freshly reset) database."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MINERAL_DATABASE_URL": database_url,
        "MINERAL_ENVIRONMENT": "test",
        "MINERAL_API_KEY_CACHE_SECONDS": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--no-migrate", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/health/live", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"the server did not start:\n{stderr[-4000:]}")
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def generated_client(live_server: str, tmp_path: Path) -> Iterator[ModuleType]:
    """The client package generated from the live server's document, imported."""
    generator = _load_generator()
    spec = generator.load_spec(f"{live_server}/openapi.json")
    _, left_out = generator.json_api_spec(spec)
    # Only the non-JSON alternatives named in scripts/generate_client.py are left out.
    assert sorted(left_out) == [
        "POST /api/v1/hl7/oru (no JSON body)",
        "POST /api/v1/panel-batches (no JSON body)",
        "POST /api/v1/plan-rule-sets as application/yaml",
        "POST /api/v1/range-sets as application/yaml",
        "POST /api/v1/range-sets as text/csv",
    ]
    try:
        package = generator.generate(spec, tmp_path)
    except generator.GeneratorWarningError as exc:
        pytest.fail(f"openapi-python-client warned:\n{exc}")
    name = package.name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


def _api(package: ModuleType, tag: str, operation: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{operation}")


def _model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


def _ok(response: Any, status: int, model: Any) -> Any:
    """The parsed body of a response with this status, as this model."""
    assert response.status_code == status, response.content.decode()
    assert isinstance(response.parsed, model), (type(response.parsed), response.content)
    return response.parsed


def test_generated_client_runs_the_clinician_scenario(
    generated_client: ModuleType, live_server: str, api_keys: dict[str, dict[str, str]]
) -> None:
    pkg = generated_client
    keys = api_keys[DEFAULT_ORGANIZATION]
    integration = pkg.AuthenticatedClient(base_url=live_server, token=keys["integration"])
    clinician = pkg.AuthenticatedClient(base_url=live_server, token=keys["clinician"])
    PatientOut = _model(pkg, "PatientOut")
    PanelOut = _model(pkg, "PanelOut")
    PlanOut = _model(pkg, "PlanOut")
    Problem = _model(pkg, "Problem")

    # The lab integration registers the patient and posts a low-magnesium panel.
    created = _api(pkg, "patients", "create_patient").sync_detailed(
        client=integration,
        body=_model(pkg, "PatientCreate").from_dict(
            {
                "identifiers": [{"system": MRN_SYSTEM, "value": "MRN-GEN-1"}],
                "sex": "female",
                "birth_date": "1981-04-12",
            }
        ),
        idempotency_key="generated-client-patient-1",
    )
    patient_id = _ok(created, 201, PatientOut).id
    assert created.headers["Location"] == f"/api/v1/patients/{patient_id}"
    posted = _api(pkg, "panels", "post_panel").sync_detailed(
        client=integration,
        body=_model(pkg, "PanelCreate").from_dict(
            {
                "patient": {"identifier": {"system": MRN_SYSTEM, "value": "MRN-GEN-1"}},
                "source": "acme-lab",
                "accession": "GEN-1001",
                "collected_at": recent(),
                "results": LOW_MAGNESIUM,
            }
        ),
    )
    panel_id = _ok(posted, 201, PanelOut).id

    # The clinician finds the patient by MRN ...
    found = _api(pkg, "patients", "search_patients").sync_detailed(
        client=clinician, identifier=f"{MRN_SYSTEM}|MRN-GEN-1"
    )
    [patient] = _ok(found, 200, _model(pkg, "PatientPage")).items
    assert patient.id == patient_id

    # ... reads the panels and the magnesium trend ...
    panels = _ok(
        _api(pkg, "panels", "list_patient_panels").sync_detailed(patient_id, client=clinician),
        200,
        _model(pkg, "PanelPage"),
    )
    assert [p.id for p in panels.items] == [panel_id]
    panel = _ok(
        _api(pkg, "panels", "get_panel").sync_detailed(panel_id, client=clinician), 200, PanelOut
    )
    assert panel.results[0].interpretation.code == "L"
    history = _ok(
        _api(pkg, "panels", "get_analyte_history").sync_detailed(
            patient_id, "magnesium", client=clinician, unit="mg/dL"
        ),
        200,
        _model(pkg, "TrendOut"),
    )
    assert (history.unit, len(history.items)) == ("mg/dL", 1)

    # ... records the clinical context (then corrects it with If-Match) and an ISI ...
    put_context = _api(pkg, "patient_context", "put_patient_context")
    ContextWrite = _model(pkg, "PatientContextWrite")
    first = put_context.sync_detailed(
        patient_id, client=clinician, body=ContextWrite.from_dict({"diet": "omnivore"})
    )
    _ok(first, 201, _model(pkg, "PatientContextOut"))
    second = put_context.sync_detailed(
        patient_id,
        client=clinician,
        body=ContextWrite.from_dict({"diet": "omnivore", "caffeine_servings_per_day": 2}),
        if_match=first.headers["ETag"],
    )
    assert _ok(second, 200, _model(pkg, "PatientContextOut")).version == 2
    read_context = _api(pkg, "patient_context", "get_patient_context").sync_detailed(
        patient_id, client=clinician
    )
    assert read_context.headers["ETag"] == second.headers["ETag"]
    isi = _api(pkg, "sleep_assessments", "create_sleep_assessment").sync_detailed(
        patient_id,
        client=clinician,
        body=_model(pkg, "SleepAssessmentCreate").from_dict(
            {"instrument": "ISI", "assessed_on": today(1), "items": MODERATE_ISI}
        ),
    )
    _ok(isi, 201, _model(pkg, "SleepAssessmentOut"))

    # ... drafts a plan, edits it with the plan's own ETag, and activates it.
    drafted = _api(pkg, "treatment_plans", "create_plan").sync_detailed(
        patient_id, client=clinician, body=_model(pkg, "PlanCreate").from_dict({})
    )
    plan = _ok(drafted, 201, PlanOut)
    items = [editable(item.to_dict()) for group in plan.groups for item in group.items]
    assert any(item["category"] == "supplement" for item in items)
    edit = _api(pkg, "treatment_plans", "edit_plan_items")
    update = _model(pkg, "ItemsUpdate").from_dict({"items": [*items, WALK_BY_HAND]})
    # The context's ETag is not the plan's: a leaked header can never pass for it.
    leaked = edit.sync_detailed(
        plan.id, client=clinician, body=update, if_match=second.headers["ETag"]
    )
    assert _ok(leaked, 412, Problem).type_.endswith("/precondition-failed")
    edited = edit.sync_detailed(
        plan.id, client=clinician, body=update, if_match=drafted.headers["ETag"]
    )
    edited_plan = _ok(edited, 200, PlanOut)
    assert "clinician.walk" in {i.id for group in edited_plan.groups for i in group.items}
    activated = _api(pkg, "treatment_plans", "change_plan_status").sync_detailed(
        plan.id,
        client=clinician,
        body=_model(pkg, "StatusChange").from_dict({"status": "active"}),
        if_match=edited.headers["ETag"],
    )
    assert str(_ok(activated, 200, PlanOut).status) == "active"

    # The worklist and the printable page.
    worklist = _api(pkg, "treatment_plans", "get_plan_worklist").sync_detailed(client=clinician)
    _ok(worklist, 200, _model(pkg, "WorklistOut"))
    page = clinician.get_httpx_client().get(
        f"/api/v1/plans/{plan.id}", headers={"Accept": "text/html"}
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Evening walk" in page.text

    # Errors parse as problems too: an unknown query parameter is refused, not ignored.
    typo = httpx.get(
        f"{live_server}/api/v1/patients",
        params={"identifer": f"{MRN_SYSTEM}|MRN-GEN-1"},
        headers={"X-API-Key": keys["clinician"]},
    )
    problem = Problem.from_dict(json.loads(typo.content))
    assert (typo.status_code, problem.type_.rsplit("/", 1)[-1]) == (400, "unknown-query-parameter")
