"""Property-based fuzzing of every documented operation with Schemathesis.

Each operation gets at least 100 generated requests (valid and invalid, plus Schemathesis'
example and coverage cases) against the app on a fresh, migrated SQLite database seeded with a
patient and a panel. Every response must be free of server errors and match the OpenAPI
document: a documented status code, a documented content type, and a body that validates
against the documented schema.

Every request carries the API key of the role its operation needs (admin for range-set changes,
keys and the audit trail, clinician for re-interpretation, integration for the rest), so the
fuzzer reaches the routes' logic rather than stopping at 401. Schemathesis does not synthesize
credentials of its own (they could only be refused). Updates that need `If-Match` get `*` for
about half the cases, so both the 428 and the update itself are exercised.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from alembic import command
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth.cli import create_api_key_command
from app.core.config import Settings
from app.main import create_app
from tests.api.access import ROLES
from tests.api.test_route_matrix import MATRIX
from tests.builders import make_patient, post_panel
from tests.conftest import Database, RoleAuth, alembic_config

pytestmark = pytest.mark.slow

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Schemathesis reads the schema when this module is imported, so the app (and the path of its
# database) must exist by then. Serving /openapi.json never opens the database, so the directory
# is only created, migrated and seeded by the fixture below. (schemathesis.pytest.from_fixture
# would defer all this, but it breaks under pytest 9: it sets the removed `Node._nodeid`.)
_DATABASE_DIR = Path(tempfile.gettempdir()) / f"mineral-fuzz-{uuid.uuid4().hex}"
_DATABASE_URL = f"sqlite:///{_DATABASE_DIR / 'fuzz.db'}"
_SETTINGS = Settings(database_url=_DATABASE_URL, environment="test", max_body_bytes=64 * 1024)
fuzz_app = create_app(_SETTINGS)
# HL7 v2 bodies are text: let Schemathesis send them as it sends text/plain.
schemathesis.serializer.alias("x-application/hl7-v2+er7", "text/plain")
# NDJSON batches are text too (one JSON document per line; arbitrary text is refused per line).
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
# The right key is sent with every case (see the test); a generated X-API-Key or Authorization
# value could only be refused, and would mask the key.
schema.config.generation.update(with_security_parameters=False)

# Filled by the fixture; read by the hooks while cases are generated.
seeded_ids: dict[str, str] = {}
# {role: API key} in the default organization, filled by the fixture.
role_keys: dict[str, str] = {}
# Operations that refuse an update without If-Match (428).
IF_MATCH_OPERATIONS = {
    "PATCH /api/v1/patients/{patient_id}",
    "POST /api/v1/range-sets/{range_set_id}/activate",
}
_if_match_turn = itertools.count()
ANALYTE_UNITS = [
    ("magnesium", "mmol/L"),
    ("calcium", "mg/dL"),
    ("zinc", "ug/dL"),
    ("iron", "umol/L"),
    ("ferritin", "ng/mL"),
    ("copper", "ug/dL"),
]


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    # About half the generated ids are swapped for stored ones, so reads hit real records too.
    known = {name: seeded_ids[name] for name in path_parameters or {} if name in seeded_ids}
    if not path_parameters or not known:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, **known}])


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    # About half the generated panels are made plausible (the stored patient, known analytes in
    # accepted units, a sane collection time, an accession derived from the body) while values,
    # lab ranges and flags stay generated, so conversion and interpretation run instead of every
    # panel stopping at "unknown patient" or "collected before 1900".
    operation = context.operation
    if (
        operation is None
        or operation.label != "POST /api/v1/panels"
        or "patient_id" not in seeded_ids
        or not isinstance(body, dict)
    ):
        return st.just(body)
    realistic = {
        **body,
        "patient": {"id": seeded_ids["patient_id"]},
        "accession": f"FUZZ-{zlib.crc32(repr(body).encode()):08x}",
        "collected_at": "2024-03-15T08:30:00+01:00",
    }
    realistic.pop("received_at", None)
    if isinstance(body.get("results"), list):
        realistic["results"] = [
            {**result, "analyte": analyte, "unit": unit} if isinstance(result, dict) else result
            for result, (analyte, unit) in zip(
                body["results"], itertools.cycle(ANALYTE_UNITS), strict=False
            )
        ]
    return st.sampled_from([body, realistic])


@pytest.fixture(scope="module", autouse=True)
def seeded_database() -> Iterator[None]:
    _DATABASE_DIR.mkdir()
    command.upgrade(alembic_config(_DATABASE_URL), "head")
    for role in ("integration", "clinician", "admin"):
        output = create_api_key_command(_SETTINGS, org="default", role=role, name=f"fuzz {role}")
        role_keys[role] = output.splitlines()[-1].strip()
    # A key that exists (and is not the one the fuzzer uses), so revoking reaches a real record.
    spare = create_api_key_command(_SETTINGS, org="default", role="clinician", name="spare")
    spare_id = spare.splitlines()[1].split("id ", 1)[1].split(",", 1)[0]
    with TestClient(fuzz_app) as client:
        client.auth = RoleAuth(role_keys)
        Database(client).reset()
        patient = make_patient(client)
        panel = post_panel(
            client, patient, [{"analyte": "magnesium", "value": "0.7", "unit": "mmol/L"}]
        )
        active = client.get("/api/v1/range-sets/active")
        assert active.status_code == 200, active.text
    seeded_ids.update(
        patient_id=patient["id"],
        panel_id=panel["id"],
        range_set_id=active.json()["id"],
        analyte="magnesium",
        key_id=str(uuid.UUID(spare_id)),
    )
    yield
    seeded_ids.clear()
    role_keys.clear()
    shutil.rmtree(_DATABASE_DIR, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_documented_contract(
    case: schemathesis.Case[Any],
) -> None:
    headers = {"X-API-Key": role_keys[_allowed_role(case.method.upper(), case.path)]}
    if case.operation.label in IF_MATCH_OPERATIONS and next(_if_match_turn) % 2:
        headers["If-Match"] = "*"
    case.call_and_validate(headers=headers, checks=CHECKS)


def _allowed_role(method: str, path: str) -> str:
    """A role the route matrix lets call the operation (the first of integration, clinician,
    admin), so the fuzzer reaches the route's logic."""
    row = MATRIX.get((method, path))
    if row is None:  # not in the matrix yet: test_route_matrix fails for it
        return RoleAuth.role_for(method, path)
    return next(role for role in ROLES if role in row.allowed)


def _forbidden_role(method: str, path: str) -> str | None:
    """A role the route matrix refuses (403), or None when every role may call it."""
    row = MATRIX.get((method, path))
    return next((role for role in ROLES if row and role not in row.allowed), None)


def test_refusals_are_documented_for_every_protected_operation() -> None:
    """401 without credentials and 403 for a role without the scope: both as documented (status,
    problem+json content type, schema and the WWW-Authenticate header), on every operation."""
    refused: set[tuple[str, int]] = set()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        if operation.path.startswith("/health"):
            continue
        path_parameters = {
            name: seeded_ids.get(name, str(uuid.uuid4()))
            for name in (parameter.name for parameter in operation.path_parameters)
        }
        case = operation.Case(path_parameters=path_parameters)
        anonymous = case.call()
        assert anonymous.status_code == 401, (operation.label, anonymous.text)
        [challenge] = anonymous.headers["www-authenticate"]
        assert challenge.startswith("Bearer")
        case.validate_response(anonymous, checks=CHECKS)
        refused.add((operation.label, 401))
        role = _forbidden_role(operation.method.upper(), operation.path)
        if role is None:
            continue
        forbidden = case.call(headers={"X-API-Key": role_keys[role]})
        assert forbidden.status_code == 403, (operation.label, role, forbidden.text)
        case.validate_response(forbidden, checks=CHECKS)
        refused.add((operation.label, 403))
    # The FHIR facade is not in the OpenAPI document (test_access_control covers its 401s).
    documented = {(method, path) for method, path in MATRIX if not path.startswith("/fhir/")}
    protected = {f"{method} {path}" for method, path in documented}
    assert {label for label, status in refused if status == 401} >= protected
    assert {label for label, status in refused if status == 403} == {
        f"{method} {path}"
        for (method, path), row in MATRIX.items()
        if (method, path) in documented and set(ROLES) - row.allowed
    }
