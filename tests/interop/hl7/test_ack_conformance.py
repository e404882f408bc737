"""Every ACK is valid to the letter of its version, checked by an independent implementation
(hl7apy at STRICT validation: message structure, segment cardinality, data types), plus the
field lengths hl7apy does not know (MSA-3 80 in 2.3 / 2.4, ERR-8 250, MSH-10 20).

Also what the ACKs acknowledge: SPM specimens, NTE comments, TX / FT / CE / CWE values, batches
and MSH-15 / MSH-16."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message, parse_segment, parse_segments

from tests.interop.hl7.messages import MRN_SYSTEM, acks, magnesium_mmol, next_id, obx, oru
from tests.interop.hl7.test_mllp import connect
from tests.interop.hl7.test_mllp_listener import Listener, exchange, start_listener
from tests.interop.hl7.test_oru_route import post_er7

VERSIONS = ("2.3", "2.4", "2.5.1")
STRICT = VALIDATION_LEVEL.STRICT
__all__ = ["start_listener"]  # the MLLP listener fixture, used below


def validate(ack: str, version: str) -> Any:
    """``ack`` parsed and validated by hl7apy STRICT as an ACK of ``version``."""
    assert ack.endswith("\r")
    if version == "2.3":
        # 2.3's MSH-9 has no message-structure component, so hl7apy cannot infer the
        # structure from it: the segments are parsed strictly and put in an ACK by hand.
        segments = parse_segments(ack.strip("\r"), version="2.3", validation_level=STRICT)
        message = Message("ACK", version="2.3", validation_level=STRICT)
        message.msh = segments[0]
        for segment in segments[1:]:
            message.add(segment)
    else:
        message = parse_message(ack, validation_level=STRICT)
        assert message.name == "ACK"
    message.validate()
    fields = {line[:3]: line.split("|") for line in ack.split("\r") if line}
    assert len(fields["MSH"][9]) <= 20  # MSH-10 (ST 20)
    if version in ("2.3", "2.4"):
        msa = fields["MSA"]
        assert len(msa) <= 4 or len(msa[3]) <= 80  # MSA-3 (ST 80)
    for line in ack.split("\r"):
        if line.startswith("ERR|") and version == "2.5.1":
            err = line.split("|")
            assert len(err) < 9 or len(err[8]) <= 250  # ERR-8 (TX 250)
    return message


def validate_segment(text: str, version: str) -> None:
    """One FHS / BHS / BTS / FTS, strictly. hl7apy reads FHS-1 / FHS-2 (BHS-1 / BHS-2), the
    field separator and encoding characters, only for MSH: they are checked here and given to
    hl7apy as placeholders, every other field as sent."""
    fields = text.split("|")
    if fields[0] in ("FHS", "BHS"):
        assert fields[1] == "^~\\&"
        text = "|".join([fields[0], "X", "X", *fields[2:]])
    parse_segment(text, version=version, validation_level=STRICT).validate()


def lines(ack: str, name: str) -> list[list[str]]:
    return [line.split("|") for line in ack.split("\r") if line.startswith(name + "|")]


def panels_for(client: TestClient, mrn: str) -> list[dict[str, Any]]:
    found = client.get("/api/v1/patients", params={"identifier": f"{MRN_SYSTEM}|{mrn}"})
    [patient] = found.json()["items"]
    response = client.get(f"/api/v1/patients/{patient['id']}/panels")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.mark.parametrize("version", VERSIONS)
def test_an_accepted_message_is_acked_aa_valid_for_its_version(
    client: TestClient, version: str
) -> None:
    response = post_er7(client, oru([magnesium_mmol()], version=version, mrn=next_id("MRN")))
    message = validate(response.text, version)
    assert message.msa.msa_1.to_er7() == "AA"
    assert message.msh.msh_12.to_er7() == version


@pytest.mark.parametrize("version", VERSIONS)
def test_a_message_with_two_problems_gets_one_valid_ack_naming_both(
    client: TestClient, version: str
) -> None:
    long_code = "X" * 60  # long texts: MSA-3 must still fit its 80 characters
    message = oru(
        [obx(long_code, "1", "mg/dL", system="L"), obx("NOPE", "2", "mg/dL", system="L")],
        version=version,
        mrn=next_id("MRN"),
    )
    ack = post_er7(client, message).text
    validate(ack, version)
    assert lines(ack, "MSA")[0][1] == "AE"
    errs = lines(ack, "ERR")
    if version in ("2.3", "2.4"):
        # One ERR; ERR-1 repeats once per problem (segment^sequence^field^code&text&table).
        [err] = errs
        assert err[1].split("~") == [
            "OBX^1^3^103&Table value not found&HL70357",
            "OBX^2^3^103&Table value not found&HL70357",
        ]
        text = lines(ack, "MSA")[0][3]
        assert len(text) <= 80
        assert text.endswith("...")
    else:
        assert [e[2] for e in errs] == ["OBX^1^3^1", "OBX^2^3^1"]
        assert all(e[3].startswith("103^") and e[4] == "E" for e in errs)
        assert "'NOPE'" in errs[1][8]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_message_that_is_not_oru_is_rejected_with_its_trigger_event_echoed(
    client: TestClient, version: str
) -> None:
    message = oru([magnesium_mmol()], version=version, message_type="ADT^A01^ADT_A01")
    ack = post_er7(client, message).text
    parsed = validate(ack, version)
    assert parsed.msa.msa_1.to_er7() == "AR"
    expected = "ACK^A01" if version == "2.3" else "ACK^A01^ACK"
    assert lines(ack, "MSH")[0][8] == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_a_batch_is_answered_with_a_batch_of_valid_acks(client: TestClient, version: str) -> None:
    good = oru([magnesium_mmol()], version=version, mrn=next_id("MRN"))
    bad = oru([obx("NOPE", "1", "mg/dL", system="L")], version=version, mrn=next_id("MRN"))
    body = (
        f"FHS|^~\\&|LIS|ACME-LAB|MINERAL-LABS|CLINIC|20261120093000||||F-77\r"
        f"BHS|^~\\&|LIS|ACME-LAB|MINERAL-LABS|CLINIC|20261120093000||||B-77\r"
        f"{good}{bad}BTS|2\rFTS|1\r"
    )
    text = post_er7(client, body).text
    segments = [line for line in text.split("\r") if line]
    assert [s[:3] for s in segments[:2]] == ["FHS", "BHS"]
    assert segments[-2:] == ["BTS|2", "FTS|1"]
    fhs, bhs = segments[0].split("|"), segments[1].split("|")
    assert fhs[11] == "F-77"
    assert bhs[11] == "B-77"
    assert (bhs[2], bhs[4]) == ("MINERAL-LABS", "LIS")
    for envelope in (segments[0], segments[1], "BTS|2", "FTS|1"):
        validate_segment(envelope, version)
    answers = acks(text)
    assert [lines(a, "MSA")[0][1] for a in answers] == ["AA", "AE"]
    for answer in answers:
        validate(answer, version)


def test_messages_one_after_the_other_without_a_batch_header_get_bare_acks(
    client: TestClient,
) -> None:
    one, two = oru([magnesium_mmol()], mrn=next_id("MRN")), oru([magnesium_mmol()])
    text = post_er7(client, one + two).text
    assert text.startswith("MSH|")
    assert "BHS|" not in text
    assert "BTS|" not in text
    assert len(acks(text)) == 2


def _spm(code: str) -> str:
    return f"SPM|1|||{code}"


@pytest.mark.parametrize(
    ("spm4", "obr15", "specimen"),
    [
        ("119364003^Serum specimen^SCT", "", "serum"),
        ("119361006^Plasma specimen^SCT", "SER", "plasma"),  # SPM-4 wins over OBR-15
        ("258580003^Whole blood specimen^SCT", "", "whole-blood"),
        ("PLAS^Plasma^HL70487", "", "plasma"),
    ],
)
def test_spm_4_in_snomed_or_table_0487_is_the_panels_specimen(
    client: TestClient, spm4: str, obr15: str, specimen: str
) -> None:
    mrn = next_id("MRN")
    observations = (
        [obx("1994-3", "1.2", "mmol/L", text="Calcium.ionized")]
        if specimen == "whole-blood"
        else [magnesium_mmol()]
    )
    message = oru(observations, mrn=mrn, specimen=obr15) + _spm(spm4) + "\r"
    ack = post_er7(client, message).text
    validate(ack, "2.5.1")
    assert lines(ack, "MSA")[0][1] == "AA", ack
    [panel] = panels_for(client, mrn)
    assert panel["specimen"] == specimen


def test_an_unknown_spm_4_is_ae_pointing_at_spm_4_not_obr_15(client: TestClient) -> None:
    message = oru([magnesium_mmol()], mrn=next_id("MRN")) + _spm("122575003^Urine^SCT") + "\r"
    ack = post_er7(client, message).text
    validate(ack, "2.5.1")
    [err] = lines(ack, "ERR")
    assert err[2] == "SPM^1^4^1"
    assert "122575003" in err[8]


def test_nte_comments_are_kept_with_their_result(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru(
        [magnesium_mmol(), "NTE|1|L|Hemolyzed sample: interpret with caution"],
        mrn=mrn,
        extra=["NTE|1|L|Order comment"],
    )
    ack = post_er7(client, message).text
    validate(ack, "2.5.1")
    assert lines(ack, "MSA")[0][1] == "AA", ack
    [panel] = panels_for(client, mrn)
    [result] = panel["results"]
    assert result["lab"]["comment"] == "Order comment\nHemolyzed sample: interpret with caution"
    observation = client.get(f"/fhir/R4/Observation/{result['id']}")
    assert observation.status_code == 200, observation.text
    notes = [note["text"] for note in observation.json().get("note", [])]
    assert result["lab"]["comment"] in notes


@pytest.mark.parametrize("version", VERSIONS)
def test_tx_ft_and_coded_values_are_kept_as_the_labs_comment(
    client: TestClient, version: str
) -> None:
    mrn = next_id("MRN")
    message = oru(
        [
            magnesium_mmol(),
            obx("8251-1", "Fasting sample", "", value_type="TX", text="Service comment"),
            obx("8251-1", "Recollect if symptomatic", "", value_type="FT"),
            obx("LOCAL-H", "H^Hemolyzed^99LAB", "", value_type="CWE", system="L"),
        ],
        mrn=mrn,
        version=version,
    )
    ack = post_er7(client, message).text
    validate(ack, version)
    assert lines(ack, "MSA")[0][1] == "AA", ack
    [panel] = panels_for(client, mrn)
    [result] = panel["results"]
    assert result["analyte"] == "magnesium"
    assert result["lab"]["comment"] == (
        "Fasting sample\nRecollect if symptomatic\nHemolyzed (99LAB: H)"
    )


def test_a_numeric_coded_value_is_a_result(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru([obx("2601-3", "0.85^^", "mmol/L", value_type="CE")], mrn=mrn)
    ack = post_er7(client, message).text
    validate(ack, "2.5.1")
    assert lines(ack, "MSA")[0][1] == "AA", ack
    [panel] = panels_for(client, mrn)
    assert panel["results"][0]["reported"]["text"] == "0.85"


def test_an_order_of_narrative_only_is_ae_with_a_valid_ack(client: TestClient) -> None:
    message = oru([obx("8251-1", "see report", "", value_type="TX")], mrn=next_id("MRN"))
    ack = post_er7(client, message).text
    validate(ack, "2.5.1")
    [err] = lines(ack, "ERR")
    assert err[2] == "OBR^1"
    assert "narrative" in err[8]


def _with_ack_types(message: str, accept: str, application: str) -> str:
    first, _, rest = message.partition("\r")
    return f"{first}|||{accept}|{application}\r{rest}"


@pytest.mark.parametrize(
    ("application", "good", "expected"),
    [
        ("AL", True, "AA"),
        ("NE", True, "CA"),  # no application ACK wanted: the accept ACK stands in
        ("ER", True, "CA"),
        ("ER", False, "AE"),
        ("SU", True, "AA"),
        ("SU", False, "CE"),
        ("", False, "AE"),
    ],
)
@pytest.mark.parametrize("version", VERSIONS)
def test_msh_16_chooses_the_application_or_the_accept_acknowledgment(
    client: TestClient, version: str, application: str, good: bool, expected: str
) -> None:
    observation = magnesium_mmol() if good else obx("NOPE", "1", "mg/dL", system="L")
    message = _with_ack_types(
        oru([observation], version=version, mrn=next_id("MRN")), "NE", application
    )
    ack = post_er7(client, message).text
    validate(ack, version)
    assert lines(ack, "MSA")[0][1] == expected
    assert bool(lines(ack, "ERR")) is not good


def test_a_batch_over_mllp_is_answered_with_one_framed_batch_of_valid_acks(
    start_listener: Callable[..., Listener],
) -> None:
    listener = start_listener()
    one = oru([magnesium_mmol()], version="2.4", mrn=next_id("MRN"))
    two = oru([obx("NOPE", "1", "mg/dL", system="L")], version="2.4", mrn=next_id("MRN"))
    batch = f"BHS|^~\\&|LIS|ACME-LAB|||||||B-MLLP\r{one}{two}BTS|2\r"
    with connect(listener.port) as sock:
        answer = exchange(sock, batch)
    segments = [line for line in answer.split("\r") if line]
    assert segments[0].startswith("BHS|")
    assert segments[-1] == "BTS|2"
    assert segments[0].split("|")[11] == "B-MLLP"
    validate_segment(segments[0], "2.4")
    answers = acks(answer)
    assert [lines(a, "MSA")[0][1] for a in answers] == ["AA", "AE"]
    for ack in answers:
        validate(ack, "2.4")
