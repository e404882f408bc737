"""The patient-matching policy (pure): which identifiers are matching keys, and which
demographic differences contradict a registered patient."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from app.domain.patient_matching import (
    MatchingPolicy,
    MatchingPolicyError,
    TypedIdentifier,
    contradictions,
    policy_from_document,
)
from app.patients.matching import DEFAULT_POLICY_PATH, load_policy

MRN = "urn:oid:2.16.840.1.113883.19.5"


@pytest.fixture(scope="module")
def policy() -> MatchingPolicy:
    return load_policy(str(DEFAULT_POLICY_PATH))


def test_the_shipped_policy_matches_on_mr_and_pi_only(policy: MatchingPolicy) -> None:
    assert policy.matching_types == {"MR", "PI"}
    assert "SS" in policy.excluded_types


@pytest.mark.parametrize("kind", ["MR", "mr", " PI "])
def test_a_medical_record_number_or_internal_id_is_a_key(policy: MatchingPolicy, kind: str) -> None:
    assert policy.is_key(TypedIdentifier(MRN, "A-1042", kind), channel="hl7v2")


@pytest.mark.parametrize("kind", ["SS", "AN", "VN", "MRT", "PT", "DL", "U"])
def test_other_identifier_types_are_never_keys(policy: MatchingPolicy, kind: str) -> None:
    identifier = TypedIdentifier(MRN, "A-1042", kind)
    assert not policy.is_key(identifier, channel="hl7v2")
    assert not policy.is_key(identifier, channel="fhir")


@pytest.mark.parametrize(
    "value",
    ["000-00-0000", "999999999", "123-45-6789", "unknown", "N/A", "0", "00000", " 1111 ", ""],
)
def test_placeholder_values_are_never_keys(policy: MatchingPolicy, value: str) -> None:
    assert policy.is_placeholder(value)
    assert not policy.is_key(TypedIdentifier(MRN, value, "MR"), channel="hl7v2")


@pytest.mark.parametrize("value", ["A-1042", "1000042", "MRN-0042", "10"])
def test_real_looking_values_are_not_placeholders(policy: MatchingPolicy, value: str) -> None:
    assert not policy.is_placeholder(value)


@pytest.mark.parametrize(
    "system", ["http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"]
)
def test_ssn_systems_are_never_keys_even_typed_mr(policy: MatchingPolicy, system: str) -> None:
    assert not policy.is_key(TypedIdentifier(system, "A-1042", "MR"), channel="fhir")
    assert policy.never_matches(TypedIdentifier(system, "A-1042")) is not None


def test_an_untyped_identifier_is_a_key_over_fhir_but_not_over_hl7(
    policy: MatchingPolicy,
) -> None:
    untyped = TypedIdentifier(MRN, "A-1042")
    assert policy.is_key(untyped, channel="fhir")
    assert not policy.is_key(untyped, channel="hl7v2")
    assert "no type" in (policy.refusal(untyped, channel="hl7v2") or "")


def test_stored_identifiers_match_only_when_untyped_or_of_a_matching_type(
    policy: MatchingPolicy,
) -> None:
    assert policy.stored_may_match(None)
    assert policy.stored_may_match("MR")
    assert not policy.stored_may_match("SS")
    assert not policy.stored_may_match("AN")


def _document(**overrides: Any) -> dict[str, Any]:
    return {"matching_types": ["MR"], "excluded_types": ["AN"], **overrides}


def test_a_facility_may_be_restricted_to_its_own_assigning_authorities() -> None:
    policy = policy_from_document(_document(facility_authorities={"ACME-LAB": [MRN]}))
    ours, theirs = TypedIdentifier(MRN, "A-1", "MR"), TypedIdentifier("urn:x", "A-1", "MR")
    assert policy.is_key(ours, channel="hl7v2", facility="acme-lab")
    assert not policy.is_key(theirs, channel="hl7v2", facility="ACME-LAB")
    assert policy.is_key(theirs, channel="hl7v2", facility="OTHER-LAB")


@pytest.mark.parametrize(
    "document",
    [
        _document(matching_types=["MR", "SS"]),  # SS can never be a matching type
        _document(matching_types=["MR", "AN"]),
        _document(matching_types=[]),
        _document(placeholder_values=[None]),  # an unquoted YAML `NULL`
        _document(untyped_identifiers_match={"mllp": True}),
        _document(repeated_digit_is_placeholder="yes"),
        ["MR"],
    ],
)
def test_an_invalid_policy_file_is_refused_at_load_time(document: Any) -> None:
    with pytest.raises(MatchingPolicyError):
        policy_from_document(document)


def test_a_deployment_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "matching.yaml"
    path.write_text("matching_types: [MR, MRN]\nplaceholder_values: ['TBD']\n")
    policy = load_policy(str(path))
    assert policy.is_key(TypedIdentifier(MRN, "A-1", "MRN"), channel="hl7v2")
    assert policy.is_placeholder("tbd")
    assert not policy.is_key(TypedIdentifier(MRN, "A-1", "SS"), channel="hl7v2")


D1980, D2000 = date(1980, 3, 2), date(2000, 1, 1)


@pytest.mark.parametrize(
    ("recorded", "sent", "expected"),
    [
        (("female", D1980), ("male", D2000), ("sex", "birth_date")),
        (("female", D1980), ("female", D2000), ("birth_date",)),
        (("female", D1980), ("other", D1980), ("sex",)),
        (("female", D1980), ("female", D1980), ()),
        (("female", D1980), ("unknown", None), ()),
        (("unknown", None), ("male", D2000), ()),
        (("male", None), ("male", D2000), ()),
    ],
)
def test_only_two_known_different_values_contradict(
    recorded: tuple[str, date | None], sent: tuple[str, date | None], expected: tuple[str, ...]
) -> None:
    assert (
        contradictions(
            recorded_sex=recorded[0],
            recorded_birth_date=recorded[1],
            sent_sex=sent[0],
            sent_birth_date=sent[1],
        )
        == expected
    )
