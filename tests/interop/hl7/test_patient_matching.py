"""HL7 v2 PID matching: only matching keys (MR / PI from an assigning authority) name a patient,
never SS or a placeholder; a named patient whose recorded sex or birth date contradicts PID is
refused (AE naming PID-7 / PID-8) and nothing is filed."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.models.patient import PatientIdentifier
from tests.audit.builders import rows_for
from tests.conftest import Database
from tests.interop.hl7.messages import MRN_AUTHORITY, MRN_SYSTEM, magnesium_mmol, next_id, oru
from tests.interop.hl7.test_oru_route import ack_code, panels_of, patient_by_mrn, post_er7

SSA_AUTHORITY = "&2.16.840.1.113883.4.1&ISO"  # the Social Security Administration's OID
SSA_SYSTEM = "urn:oid:2.16.840.1.113883.4.1"
OTHER_AUTHORITY = "&urn:test:other-hospital&URI"
OTHER_SYSTEM = "urn:test:other-hospital"
SHARED_SSN = "524-71-9936"  # not a placeholder: the SS type alone keeps it out


def message(
    pid3: str, *, sex: str = "F", birth_date: str = "19810412", value: str = "0.62", **kw: Any
) -> str:
    """An ORU^R01 with this PID-3 (repetitions joined by ~), sex and birth date."""
    mrn = next_id("PLACEHOLDER")
    body = oru([magnesium_mmol(value)], mrn=mrn, sex=sex, birth_date=birth_date, **kw)
    return body.replace(f"{mrn}^^^{MRN_AUTHORITY}^MR", pid3)


def mr(value: str, authority: str = MRN_AUTHORITY) -> str:
    return f"{value}^^^{authority}^MR"


def err_segments(ack: str) -> list[list[str]]:
    return [line.split("|") for line in ack.split("\r") if line.startswith("ERR|")]


def register(client: TestClient, identifiers: list[dict[str, str]], **fields: str) -> str:
    response = client.post("/api/v1/patients", json={"identifiers": identifiers, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stored_identifiers(db: Database, patient_id: str) -> list[tuple[str, str, str | None]]:
    async def go(session: Any) -> list[tuple[str, str, str | None]]:
        rows = await session.execute(
            select(PatientIdentifier.system, PatientIdentifier.value, PatientIdentifier.type)
            .where(PatientIdentifier.patient_id == uuid.UUID(patient_id))
            .order_by(PatientIdentifier.position)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    return db.in_session(go)


def test_a_new_mrn_with_another_patients_ssn_is_a_new_patient_never_filed_under_her(
    client: TestClient, db: Database
) -> None:
    # The reproduction: a woman born 1980 registered with her MRN and an SSN that labs also
    # send as a placeholder for others.
    her_mrn, his_mrn = next_id("MRN"), next_id("MRN")
    her = register(
        client,
        [{"system": MRN_SYSTEM, "value": her_mrn}, {"system": SSA_SYSTEM, "value": SHARED_SSN}],
        sex="female",
        birth_date="1980-03-02",
    )
    his_message = message(
        f"{mr(his_mrn)}~{SHARED_SSN}^^^{SSA_AUTHORITY}^SS",
        sex="M",
        birth_date="20000101",
        value="0.30",  # critical low magnesium
    )

    assert ack_code(post_er7(client, his_message)) == "AA"

    assert panels_of(client, her) == []
    him = patient_by_mrn(client, his_mrn)
    assert (him["sex"], him["birth_date"]) == ("male", "2000-01-01")
    [panel] = panels_of(client, him["id"])
    assert panel["patient_id"] == him["id"]
    # The SSN is neither matched on nor kept: only the matching key, with its type.
    assert stored_identifiers(db, him["id"]) == [(MRN_SYSTEM, his_mrn, "MR")]


def test_ssns_are_not_stored_so_a_shared_ssn_never_blocks_another_patient(
    client: TestClient, db: Database
) -> None:
    first, second = next_id("MRN"), next_id("MRN")
    ssn = f"{SHARED_SSN}^^^{SSA_AUTHORITY}^SS"
    assert ack_code(post_er7(client, message(f"{mr(first)}~{ssn}", birth_date="19800302"))) == "AA"
    assert (
        ack_code(post_er7(client, message(f"{mr(second)}~{ssn}", sex="M", birth_date="20000101")))
        == "AA"
    )

    her, him = patient_by_mrn(client, first), patient_by_mrn(client, second)
    assert her["id"] != him["id"]
    assert stored_identifiers(db, her["id"]) == [(MRN_SYSTEM, first, "MR")]
    assert len(panels_of(client, her["id"])) == 1
    assert len(panels_of(client, him["id"])) == 1


def test_an_mrn_match_with_another_sex_and_birth_date_is_ae_naming_pid_7_and_8(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    assert ack_code(post_er7(client, message(mr(mrn), sex="F", birth_date="19800302"))) == "AA"
    her = patient_by_mrn(client, mrn)
    before = db.counts()
    request_id = f"hl7-{uuid.uuid4().hex}"

    refused = post_er7(
        client,
        message(mr(mrn), sex="M", birth_date="20000101", value="0.30"),
        headers={"X-Request-ID": request_id},
    )

    assert ack_code(refused) == "AE"
    errors = err_segments(refused.text)
    assert [e[2] for e in errors] == ["PID^1^7^1", "PID^1^8^1"]
    assert all(e[3].startswith("204^") for e in errors)
    assert "nothing was stored" in errors[0][8]
    assert db.counts() == before
    assert len(panels_of(client, her["id"])) == 1
    # The refusal is audited as a failed attempt against the patient it named.
    [row] = db.in_session(lambda session: rows_for(session, request_id=request_id))
    assert (row["outcome"], str(row["patient_id"])) == ("error", her["id"])
    assert row["resource_id"] is None


def test_only_the_contradicting_field_is_named(client: TestClient, db: Database) -> None:
    mrn = next_id("MRN")
    assert ack_code(post_er7(client, message(mr(mrn), sex="F", birth_date="19800302"))) == "AA"

    refused = post_er7(client, message(mr(mrn), sex="F", birth_date="19800303"))

    assert ack_code(refused) == "AE"
    assert [e[2] for e in err_segments(refused.text)] == ["PID^1^7^1"]


def test_unknown_or_missing_demographics_are_not_a_contradiction(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    assert ack_code(post_er7(client, message(mr(mrn), sex="F", birth_date="19800302"))) == "AA"
    her = patient_by_mrn(client, mrn)

    assert ack_code(post_er7(client, message(mr(mrn), sex="U", birth_date=""))) == "AA"
    assert ack_code(post_er7(client, message(mr(mrn), sex="", birth_date="19800302"))) == "AA"

    assert len(panels_of(client, her["id"])) == 3
    assert db.count("patient") == 1


def test_a_registered_patient_without_birth_date_matches_any_birth_date(
    client: TestClient,
) -> None:
    mrn = next_id("MRN")
    patient = register(client, [{"system": MRN_SYSTEM, "value": mrn}], sex="unknown")

    assert ack_code(post_er7(client, message(mr(mrn), sex="M", birth_date="20000101"))) == "AA"

    assert len(panels_of(client, patient)) == 1


def test_an_mrn_match_with_the_same_demographics_is_filed_under_that_patient(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    patient = register(
        client, [{"system": MRN_SYSTEM, "value": mrn}], sex="female", birth_date="1980-03-02"
    )

    accepted = post_er7(client, message(mr(mrn), sex="F", birth_date="19800302"))

    assert ack_code(accepted) == "AA"
    assert db.count("patient") == 1
    [panel] = panels_of(client, patient)
    assert panel["patient_id"] == patient


def test_two_identifiers_naming_two_patients_are_refused_and_nothing_is_filed(
    client: TestClient, db: Database
) -> None:
    first, second = next_id("MRN"), next_id("MRN")
    one = register(client, [{"system": MRN_SYSTEM, "value": first}], sex="female")
    other = register(client, [{"system": OTHER_SYSTEM, "value": second}], sex="female")
    before = db.counts()

    refused = post_er7(client, message(f"{mr(first)}~{mr(second, OTHER_AUTHORITY)}"))

    assert ack_code(refused) == "AE"
    [error] = err_segments(refused.text)
    assert error[2] == "PID^1^3^1"
    assert error[3].startswith("205^")
    assert "repetitions 1, 2" in error[8]
    assert db.counts() == before
    assert panels_of(client, one) == panels_of(client, other) == []


def test_a_placeholder_mrn_never_matches(client: TestClient, db: Database) -> None:
    # A patient registered (through the native API) under a placeholder value.
    placeholder = register(
        client,
        [{"system": MRN_SYSTEM, "value": "000000000"}],
        sex="female",
        birth_date="1980-03-02",
    )
    before = db.counts()

    alone = post_er7(client, message(mr("000-00-0000"), birth_date="19800302"))

    assert ack_code(alone) == "AE"
    [error] = err_segments(alone.text)
    assert (error[2], error[3][:4]) == ("PID^1^3^1", "101^")
    assert db.counts() == before

    mrn = next_id("MRN")
    beside_a_real_mrn = message(f"{mr('UNKNOWN')}~{mr('000000000')}~{mr(mrn)}", sex="M")
    assert ack_code(post_er7(client, beside_a_real_mrn)) == "AA"
    assert panels_of(client, placeholder) == []
    new = patient_by_mrn(client, mrn)
    assert stored_identifiers(db, new["id"]) == [(MRN_SYSTEM, mrn, "MR")]


def test_ssn_only_or_untyped_identifiers_are_refused_as_no_matching_key(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    register(client, [{"system": MRN_SYSTEM, "value": mrn}], sex="female")
    register(client, [{"system": SSA_SYSTEM, "value": SHARED_SSN}], sex="female")
    before = db.counts()

    for pid3 in (f"{SHARED_SSN}^^^{SSA_AUTHORITY}^SS", f"{mrn}^^^{MRN_AUTHORITY}"):
        refused = post_er7(client, message(pid3))
        assert ack_code(refused) == "AE", pid3
        [error] = err_segments(refused.text)
        assert error[2] == "PID^1^3^1"
        assert "MR" in error[8]

    assert db.counts() == before


def test_a_patient_internal_identifier_is_a_matching_key(client: TestClient, db: Database) -> None:
    internal = next_id("PI")
    pid3 = f"{internal}^^^{MRN_AUTHORITY}^PI"
    assert ack_code(post_er7(client, message(pid3))) == "AA"
    assert ack_code(post_er7(client, message(pid3))) == "AA"

    patient = patient_by_mrn(client, internal)
    assert stored_identifiers(db, patient["id"]) == [(MRN_SYSTEM, internal, "PI")]
    assert len(panels_of(client, patient["id"])) == 2
