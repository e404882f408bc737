"""Parsing ER7 into dataclasses, mapping to PanelCreate, and building ACKs: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.domain.catalog import default_catalog
from app.interop.hl7.ack import build_ack, escape
from app.interop.hl7.code_maps import CodeMapError, parse_code_maps
from app.interop.hl7.errors import ErrorCode, Issue, Location, MessageError, ParseError
from app.interop.hl7.mapping import identifier_system, panel_drafts
from app.interop.hl7.message import ExtendedId
from app.interop.hl7.parser import (
    parse_oru,
    parse_timestamp,
    read_header,
    split_messages,
)
from tests.interop.hl7.messages import MRN_SYSTEM, magnesium_mmol, obx, oru, segment


def _error(exc: pytest.ExceptionInfo[MessageError]) -> Issue:
    assert len(exc.value.issues) >= 1
    return exc.value.issues[0]


def test_a_message_maps_to_patient_order_and_observations() -> None:
    message = parse_oru(
        oru(
            [magnesium_mmol(flag="L"), obx("ZN", "<^10", "ug/dL", value_type="SN", system="L")],
            accession="ACC-9",
        )
    )
    assert message.header.control_id.startswith("MSG-")
    assert message.header.message_type == "ORU^R01"
    [patient] = message.patients
    assert patient.sex == "female"
    assert patient.birth_date is not None
    assert patient.birth_date.isoformat() == "1981-04-12"
    [order] = patient.orders
    assert order.accession == "ACC-9"
    assert order.collected_at == datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    magnesium, zinc = order.observations
    assert (magnesium.code.code, magnesium.code.system) == ("2601-3", "LN")
    assert (magnesium.value, magnesium.units, magnesium.reference_range) == (
        "0.62",
        "mmol/L",
        "0.70-1.00",
    )
    assert magnesium.abnormal_flags == ["L"]
    assert zinc.value == "<10"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_lf_and_crlf_segment_separators_are_accepted(newline: str) -> None:
    text = oru([magnesium_mmol()]).replace("\r", newline)
    assert len(parse_oru(text).patients[0].orders[0].observations) == 1


def test_escape_sequences_are_decoded() -> None:
    text = oru([magnesium_mmol(range_text=r"0.70-1.00 \T\ a\F\b\S\c\R\d\E\e")])
    [observation] = parse_oru(text).patients[0].orders[0].observations
    assert observation.reference_range == "0.70-1.00 & a|b^c~d\\e"


def test_repetitions_empty_fields_nulls_and_unknown_segments() -> None:
    text = oru(
        [magnesium_mmol(flag="L~A"), obx("2498-4", "40", "ug/dL", range_text='""')],
        extra=["ORC|RE|PL-1", "NTE|1||fasting sample", "ZXY|custom|stuff^here"],
    ).replace(
        "PID|1||MRN-HL7-1^^^&urn:test:hl7-mrn&URI^MR",
        "PID|1||MRN-HL7-1^^^&urn:test:hl7-mrn&URI^MR~123-45^^^SSA^SS~",
    )
    message = parse_oru(text)
    [patient] = message.patients
    assert [(i.value, i.authority_namespace) for i in patient.identifiers] == [
        ("MRN-HL7-1", ""),
        ("123-45", "SSA"),
    ]
    magnesium, iron = patient.orders[0].observations
    assert magnesium.abnormal_flags == ["L", "A"]
    assert iron.reference_range == ""


def test_timestamps_with_offsets_precision_and_without_offset() -> None:
    where = Location("OBR", 1, 7)
    assert parse_timestamp("202611200830-0500", where) == datetime(
        2026, 11, 20, 8, 30, tzinfo=timezone(-timedelta(hours=5))
    )
    assert parse_timestamp("20261120083015.25+0130", where).microsecond == 250000
    assert parse_timestamp("20261120", where) == datetime(2026, 11, 20)
    with pytest.raises(ParseError) as exc:
        parse_timestamp("2026-11-20", where)
    assert _error(exc).code is ErrorCode.DATA_TYPE
    with pytest.raises(ParseError):
        parse_timestamp("20261320", where)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"message_type": "ADT^A01"}, ErrorCode.UNSUPPORTED_MESSAGE_TYPE),
        ({"message_type": "ORU^R30"}, ErrorCode.UNSUPPORTED_EVENT),
        ({"version": "2.6"}, ErrorCode.UNSUPPORTED_VERSION),
        ({"control_id": ""}, ErrorCode.REQUIRED_FIELD_MISSING),
    ],
)
def test_a_message_we_do_not_take_is_rejected_ar(kwargs: dict[str, str], code: ErrorCode) -> None:
    text = oru([magnesium_mmol()], **kwargs)
    with pytest.raises(ParseError) as exc:
        parse_oru(text)
    assert exc.value.ack_code == "AR"
    assert _error(exc).code is code


def test_a_malformed_segment_is_named() -> None:
    text = oru([magnesium_mmol()]).replace("PV1|1|O", "P!|garbage")
    with pytest.raises(ParseError) as exc:
        parse_oru(text)
    assert exc.value.ack_code == "AE"
    assert _error(exc).code is ErrorCode.SEGMENT_SEQUENCE
    assert "malformed segment" in _error(exc).text


def test_a_truncated_message_names_the_missing_field() -> None:
    text = oru([magnesium_mmol(), magnesium_mmol()])
    truncated = text[: text.rindex("mmol/L")]  # cut inside the last OBX
    with pytest.raises(ParseError) as exc:
        parse_oru(truncated)
    issue = _error(exc)
    assert issue.code is ErrorCode.REQUIRED_FIELD_MISSING
    assert issue.location == Location("OBX", 2, 6)


def test_obx_before_obr_is_a_segment_sequence_error() -> None:
    text = "\r".join(
        [
            "MSH|^~\\&|LIS|ACME|||20261120||ORU^R01|1|P|2.4",
            "PID|1||M1^^^HOSP",
            "OBX|1|NM|2601-3^Mg^LN||0.8|mmol/L|||||F",
        ]
    )
    with pytest.raises(ParseError) as exc:
        parse_oru(text)
    assert _error(exc).code is ErrorCode.SEGMENT_SEQUENCE
    assert _error(exc).location == Location("OBX", 1)


def test_structured_numeric_ranges_and_unsupported_value_types_are_refused() -> None:
    with pytest.raises(ParseError) as exc:
        parse_oru(oru([obx("2601-3", "^1^-^2", "mmol/L", value_type="SN")]))
    assert _error(exc).location == Location("OBX", 1, 5)
    with pytest.raises(ParseError) as exc:
        # TX is kept as the lab's comment now; ED (encapsulated data) is still not taken.
        parse_oru(oru([obx("2601-3", "see note", "mmol/L", value_type="ED")]))
    assert _error(exc).location == Location("OBX", 1, 2)


def test_a_result_status_that_carries_no_result_is_refused() -> None:
    # OBX-11 I (results pending) has nothing to store; W / D / X are accepted (withdrawals).
    with pytest.raises(ParseError) as exc:
        parse_oru(oru([magnesium_mmol(status="I")]))
    assert _error(exc).code is ErrorCode.TABLE_VALUE_NOT_FOUND


def test_batches_and_consecutive_messages_are_split() -> None:
    one, two = oru([magnesium_mmol()]), oru([magnesium_mmol()])
    batch = f"FHS|^~\\&|LIS\rBHS|^~\\&|LIS\r{one}{two}BTS|2\rFTS|1\r"
    assert [m[:3] for m in split_messages(batch)] == ["MSH", "MSH"]
    assert len(split_messages(one + "\n" + two)) == 2
    with pytest.raises(ParseError) as exc:
        split_messages("PID|1||X\r" + one)
    assert exc.value.ack_code == "AR"


def test_unmapped_local_code_and_unknown_loinc_are_each_named() -> None:
    message = parse_oru(oru([obx("XYZ", "1", "mg/dL", system="L"), obx("1234-5", "1", "mg/dL")]))
    with pytest.raises(MessageError) as exc:
        panel_drafts(message)
    first, second = exc.value.issues
    assert first.code is ErrorCode.TABLE_VALUE_NOT_FOUND
    assert "'XYZ'" in first.text
    assert first.location == Location("OBX", 1, 3)
    assert "1234-5" in second.text
    assert second.location == Location("OBX", 2, 3)


def test_local_codes_map_per_facility_and_alternate_loinc_is_used() -> None:
    maps = parse_code_maps(
        {
            "default": {"codes": {"MG": "magnesium"}},
            "facilities": {"OTHER": {"codes": {"M1": "zinc"}}},
        },
        catalog=default_catalog(),
    )
    message = parse_oru(
        oru(
            [
                obx("MAG", "1.9", "mg/dL", system="L"),
                "OBX|{n}|NM|CU1^Copper^L^5631-7^Copper^LN||95|ug/dL|||||F",
            ]
        )
    )
    with pytest.raises(MessageError) as exc:
        panel_drafts(message, code_maps=maps)  # MAG is only in the shipped default map
    assert "'MAG'" in exc.value.issues[0].text
    [draft] = panel_drafts(message)
    assert [r.analyte for r in draft.panel.results] == ["magnesium", "5631-7"]
    assert draft.panel.patient.identifier is not None
    assert draft.panel.patient.identifier.system == MRN_SYSTEM
    assert maps.analyte_for("other", "m1") == "zinc"


def test_code_maps_refuse_unknown_analytes() -> None:
    with pytest.raises(CodeMapError):
        parse_code_maps({"default": {"codes": {"MG": "unobtainium"}}}, catalog=default_catalog())


def test_preliminary_and_corrected_results_set_the_panel_status() -> None:
    [draft] = panel_drafts(parse_oru(oru([magnesium_mmol(status="P")])))
    assert draft.panel.status == "preliminary"
    [draft] = panel_drafts(parse_oru(oru([magnesium_mmol(status="C")])))
    assert (draft.panel.status, draft.corrects) == ("corrected", True)


def test_identifier_system_from_assigning_authority() -> None:
    def cx(ns: str = "", uid: str = "", kind: str = "", type_code: str = "") -> ExtendedId:
        return ExtendedId("1", ns, uid, kind, type_code)

    assert identifier_system(cx(uid="2.16.840.1", kind="ISO"), "F") == "urn:oid:2.16.840.1"
    assert identifier_system(cx(ns="HOSP", uid="urn:x", kind="URI"), "F") == "urn:x"
    # A bare namespace becomes a URI (FHIR Identifier.system), in the default URN scheme.
    assert identifier_system(cx(ns="HOSP"), "F") == "urn:mineral-labs:system:HOSP"
    assert identifier_system(cx(type_code="MR"), "ACME") == "urn:hl7v2:ACME:MR"


def test_ack_v25_has_err_location_code_and_escaped_text() -> None:
    header = read_header(oru([magnesium_mmol()], control_id="C-1"))
    issue = Issue(ErrorCode.TABLE_VALUE_NOT_FOUND, "unit 'mg|dL^x' unknown", Location("OBX", 2, 6))
    ack = build_ack(header, "AE", [issue])
    msh, msa, err = ack.rstrip("\r").split("\r")
    assert msh.split("|")[2:6] == ["MINERAL-LABS", "CLINIC", "LIS", "ACME-LAB"]
    assert msh.split("|")[8] == "ACK^R01^ACK"
    assert msh.split("|")[11] == "2.5.1"
    assert msa == "MSA|AE|C-1"
    fields = err.split("|")
    assert fields[2] == "OBX^2^6^1"
    assert fields[3] == "103^Table value not found^HL70357"
    assert fields[4] == "E"
    assert fields[8] == "OBX[2]-6: unit 'mg\\F\\dL\\S\\x' unknown"


def test_ack_v23_puts_the_code_in_err1_and_text_in_msa3() -> None:
    header = read_header(oru([magnesium_mmol()], control_id="C-2", version="2.3"))
    ack = build_ack(header, "AE", [Issue(ErrorCode.DATA_TYPE, "bad", Location("OBX", 1, 5))])
    assert segment(ack, "MSA")[:4] == ["MSA", "AE", "C-2", "OBX-5: bad"]
    assert segment(ack, "ERR") == ["ERR", "OBX^1^5^102&Data type error&HL70357"]
    assert segment(ack, "MSH")[8] == "ACK^R01"


def test_escape_keeps_er7_valid() -> None:
    assert escape("a|b^c&d~e\\f\rg") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f g"
